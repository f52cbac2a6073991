"""The shell sink runs real programs; event data reaches them as inert data, never as code."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lacme_watch.config import build
from lacme_watch.errors import ConfigError, SinkError
from lacme_watch.options import parse_yaml
from lacme_watch.run.passes import run_pass
from lacme_watch.sinks.shell import ShellSink
from lacme_watch.statedb import StateStore

from .conftest import sample_envelopes

HOOK = """
import json, os, sys
out = sys.argv[1]
record = {"argv": sys.argv[2:], "env": dict(os.environ), "stdin": sys.stdin.read()}
path = os.environ.get("LACME_WATCH_EVENT_FILE")
if path:
    with open(path) as f:
        record["file"] = f.read()
    record["file_mode"] = oct(os.stat(path).st_mode & 0o777)
name = os.path.join(out, "%04d.json" % len(os.listdir(out)))
with open(name, "w") as f:
    json.dump(record, f)
if os.environ.get("LACME_WATCH_DOMAIN") == os.environ.get("HOOK_FAIL_FOR"):
    print("refusing " + os.environ["LACME_WATCH_DOMAIN"], file=sys.stderr)
    sys.exit(3)
"""

SLEEPER = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
time.sleep(60)
"""


@pytest.fixture
def hook(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    calls = tmp_path / "calls"
    calls.mkdir()
    return script, calls


def calls_of(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(directory.iterdir())]


def sink(hook: tuple[Path, Path], **environment: str) -> ShellSink:
    script, calls = hook
    return ShellSink("hook", [sys.executable, str(script), str(calls)], environment=environment)


def test_each_event_arrives_on_stdin_in_the_environment_and_in_a_private_file(
    hook: tuple[Path, Path],
) -> None:
    envelopes = sample_envelopes()

    sink(hook).deliver(envelopes)

    calls = calls_of(hook[1])
    assert len(calls) == 3
    expiring = calls[1]
    env = expiring["env"]
    assert env["LACME_WATCH_EVENT"] == "certificate_expiring"
    assert env["LACME_WATCH_DOMAIN"] == "api.example.com"
    assert env["LACME_WATCH_DOMAINS"] == "api.example.com www.api.example.com"
    assert env["LACME_WATCH_EXPIRES_AT"] == "2026-12-01T12:00:00Z"
    assert env["LACME_WATCH_DAYS_REMAINING"] == "9"
    assert env["LACME_WATCH_ID"] == envelopes[1].id
    assert env["LACME_WATCH_SUMMARY"] == (
        "certificate_expiring: api.example.com expires 2026-12-01 (9 days left)"
    )
    assert json.loads(expiring["stdin"])["id"] == envelopes[1].id
    assert expiring["file"] == expiring["stdin"]
    assert expiring["file_mode"] == "0o600"
    assert not os.path.exists(env["LACME_WATCH_EVENT_FILE"])  # cleaned up afterwards


def test_the_daemons_own_environment_does_not_reach_the_hook(
    hook: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("SMTP_PASSWORD", "do-not-leak")

    sink(hook, EXTRA="configured").deliver(sample_envelopes()[:1])

    env = calls_of(hook[1])[0]["env"]
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "SMTP_PASSWORD" not in env
    assert env["EXTRA"] == "configured"
    assert env["PATH"] == os.environ["PATH"]
    assert all(
        key.startswith("LACME_WATCH_")
        or key in {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "EXTRA"}
        for key in env
    ), sorted(env)


HOSTILE = ["$(touch pwned)", "`touch pwned2`", "a;touch pwned3", "x\ntouch pwned4", "'\"$HOME\"'"]


def _certificate_with_names(path: Path, names: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=85))
        .not_valid_after(now + timedelta(days=5))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _pass_with_hook(tmp_path: Path, hook: tuple[Path, Path], names: list[str]) -> dict[str, Any]:
    certs = tmp_path / "certs"
    certs.mkdir()
    _certificate_with_names(certs / "hostile.pem", names)
    script, calls = hook
    text = (
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        f"sinks:\n  - type: shell\n    command: ['{sys.executable}', '{script}', '{calls}']\n"
    )
    config = build(parse_yaml(text, "c.yaml"), "c.yaml")
    with StateStore(config.state_dir) as store:
        report = run_pass(config, store, datetime.now(UTC))
    assert report.exit_code == 0, report
    (call,) = calls_of(calls)
    return call


def test_hostile_names_in_a_certificate_reach_the_hook_as_inert_data(
    tmp_path: Path, hook: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    call = _pass_with_hook(tmp_path, hook, HOSTILE)

    assert call["env"]["LACME_WATCH_DOMAIN"] == HOSTILE[0]
    assert call["env"]["LACME_WATCH_DOMAINS"] == " ".join(HOSTILE)
    assert json.loads(call["stdin"])["data"]["domains"] == HOSTILE
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")] == []


def test_a_200kb_san_list_reaches_the_hook_whole_through_the_event_file(
    tmp_path: Path, hook: tuple[Path, Path]
) -> None:
    names = [f"host-{index:05d}-{'x' * 38}.example.com" for index in range(3500)]
    assert len(" ".join(names)) > 200_000

    call = _pass_with_hook(tmp_path, hook, names)

    assert "DOMAINS" in call["env"]["LACME_WATCH_TRUNCATED"].split()
    assert len(call["env"]["LACME_WATCH_DOMAINS"]) <= 64 * 1024
    assert json.loads(call["file"])["data"]["domains"] == names
    assert json.loads(call["stdin"])["data"]["domains"] == names


def test_a_non_zero_exit_is_a_failed_delivery_and_earlier_events_are_not_rerun(
    hook: tuple[Path, Path],
) -> None:
    envelopes = sample_envelopes()

    with pytest.raises(SinkError) as caught:
        sink(hook, HOOK_FAIL_FOR="api.example.com").deliver(envelopes)

    assert "exited 3: refusing api.example.com" in caught.value.reason
    assert caught.value.delivered == {envelopes[0].id}
    assert [c["env"]["LACME_WATCH_DOMAIN"] for c in calls_of(hook[1])] == [
        "shop.example.com",
        "api.example.com",
    ]


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    pid_file = tmp_path / "child.pid"
    slow = ShellSink(
        "slow", [sys.executable, str(script), str(pid_file)], timeout=timedelta(seconds=1)
    )

    started = time.monotonic()
    with pytest.raises(SinkError, match="timed out"):
        slow.deliver(sample_envelopes()[:1])

    assert time.monotonic() - started < 30
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the hook's own child survived the timeout"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie is dead, waiting for init to reap it


def test_a_missing_program_is_a_failed_delivery(tmp_path: Path) -> None:
    missing = ShellSink("hook", [str(tmp_path / "nope")])
    with pytest.raises(SinkError, match="cannot run"):
        missing.deliver(sample_envelopes()[:1])


def test_a_shell_string_is_refused() -> None:
    text = (
        "stores:\n  - {type: pem, paths: [/x/*.pem]}\n"
        "sinks:\n  - type: shell\n    command: 'reload nginx'\n"
    )
    with pytest.raises(ConfigError, match=re.escape("c.yaml:5: sinks[0].command: must be a list")):
        build(parse_yaml(text, "c.yaml"), "c.yaml")
