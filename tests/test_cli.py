"""The command line: exit codes, quiet success, status, events, emit, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import trustme
from lacme import CertificateAuthority, FileStore

from lacme_watch.cli.arguments import build_parser, parse_arguments
from lacme_watch.events import EVENT_TYPES
from lacme_watch.events.cloudevents import format_time

from .conftest import CliRunner, kinds, read_events, save_acme_cert


def test_watch_once_is_quiet_on_success_when_not_a_terminal(
    cli: CliRunner, watched: tuple[Path, Path], lacme_ca: CertificateAuthority
) -> None:
    config, _ = watched

    result = cli("--config", str(config), "watch", "--once")

    assert (result.code, result.out, result.err) == (0, "", "")


def test_watch_once_exits_1_and_says_why_when_a_file_is_unreadable(
    cli: CliRunner, tmp_path: Path, acme_ca: trustme.CA
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "good.pem").write_bytes(acme_ca.issue_cert("good.example").cert_chain_pems[0].bytes())
    (certs / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nstores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        f"sinks:\n  - type: log\n    format: json\n    path: {tmp_path / 'log.jsonl'}\n"
    )

    first = cli("--config", str(config), "watch", "--once")
    second = cli("--config", str(config), "watch", "--once")

    assert first.code == second.code == 1
    assert f"{certs / 'broken.pem'}: bad_pem" in first.err
    assert kinds(read_events(tmp_path / "log.jsonl")) == ["certificate_unreadable"]


def test_a_configuration_error_exits_2_naming_file_line_and_key(
    cli: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("stores:\n  - type: lacme\n    path: /x\n    colour: blue\n")

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 2
    assert f"{config}:4: stores[0].colour: unknown key" in result.err


def test_a_bad_now_is_a_usage_error(cli: CliRunner) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("--now", "tomorrow", "watch", "--once")
    assert exited.value.code == 2


def test_now_without_offset_is_utc(
    cli: CliRunner,
    watched: tuple[Path, Path],
    lacme_ca: CertificateAuthority,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, _ = watched
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local reading would be a day off
    time.tzset()
    lacme_ca.issue(["a.example"], validity_days=30)
    naive = (now + timedelta(days=20)).replace(tzinfo=None).isoformat()

    result = cli("--config", str(config), "--now", naive, "status", "--json")

    rows = json.loads(result.out)["certificates"]
    leaf = next(row for row in rows if row["name"] == "a.example")
    assert leaf["days_left"] == 10
    monkeypatch.delenv("TZ")
    time.tzset()


def test_status_lists_every_certificate_with_its_state(
    cli: CliRunner,
    watched: tuple[Path, Path],
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
    acme_ca: trustme.CA,
    now: datetime,
) -> None:
    config, _ = watched
    save_acme_cert(
        file_store,
        acme_ca,
        ["soon.example"],
        not_before=now - timedelta(days=80),
        not_after=now + timedelta(days=10),
    )
    save_acme_cert(
        file_store,
        acme_ca,
        ["gone.example"],
        not_before=now - timedelta(days=95),
        not_after=now - timedelta(days=5),
    )
    lacme_ca.issue(["fine.example"], validity_days=300)

    result = cli("--config", str(config), "--now", now.isoformat(), "status", "--json")

    assert result.code == 0
    rows = {row["name"]: row for row in json.loads(result.out)["certificates"]}
    # 10 days left is past lacme's RenewalManager default (30 days before expiry)
    assert (rows["soon.example"]["state"], rows["soon.example"]["days_left"]) == ("overdue", 10)
    assert rows["soon.example"]["renew_after"] == format_time(now - timedelta(days=20))
    assert (rows["gone.example"]["state"], rows["gone.example"]["days_left"]) == ("expired", -5)
    assert rows["fine.example"]["state"] == "ok"
    assert rows["Test Internal CA"]["role"] == "ca"
    assert set(rows["soon.example"]) >= {
        "name",
        "store",
        "names",
        "not_after",
        "days_left",
        "state",
    }

    os.environ["COLUMNS"] = "200"  # rich fits a table to 80 columns when not on a terminal
    try:
        table = cli("--config", str(config), "--now", now.isoformat(), "status")
    finally:
        del os.environ["COLUMNS"]
    assert "soon.example" in table.out
    assert "expired" in table.out
    assert f"overdue (due {(now - timedelta(days=20)):%Y-%m-%d})" in table.out


def test_status_writes_nothing(
    cli: CliRunner, watched: tuple[Path, Path], lacme_ca: CertificateAuthority
) -> None:
    config, log = watched
    cli("--config", str(config), "status")

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 0
    assert kinds(read_events(log)) == ["ca_initialized"]  # the status run was no baseline


def test_emit_records_and_delivers_an_external_event(
    cli: CliRunner, watched: tuple[Path, Path], lacme_ca: CertificateAuthority
) -> None:
    config, log = watched
    error = 'Invalid response from http://a.example/.well-known/acme-challenge/x: 404 "$(id)"'

    result = cli(
        "--config",
        str(config),
        "emit",
        "challenge_failed",
        "--domain",
        "a.example",
        "--challenge-type",
        "http-01",
        f"--error={error}",
    )

    assert result.code == 0, result.err
    (event,) = read_events(log)
    assert event["type"] == "lacme.challenge_failed"
    assert event["data"] == {
        "domain": "a.example",
        "challenge_type": "http-01",
        "error": error,
        "store": "external",
    }
    history = json.loads(cli("--config", str(config), "events", "--json").out)
    assert [entry["deliveries"] for entry in history] == [{"log": "delivered"}]
    assert cli("--config", str(config), "events", "--json", "--pending").out.strip() == "[]"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["--domain", "a.example"], "--challenge-type is required", id="missing"),
        pytest.param(
            [
                "--registered-domain",
                "x",
                "--current-count",
                "many",
                "--limit",
                "5",
                "--window-hours",
                "1",
            ],
            "--current-count: expected an integer",
            id="not-a-number",
        ),
        pytest.param(["--domain"], "--domain needs a value", id="no-value"),
        pytest.param(  # argv bytes b"caf\xe9", as Python hands them over (surrogateescape)
            ["--domain", "caf\udce9.example", "--challenge-type", "http-01", "--error", "e"],
            "--domain: not UTF-8 text (byte 0xe9 at character 4)",
            id="argv-not-utf-8",
        ),
        pytest.param(["domain", "x"], "expected --field value", id="not-a-flag"),
    ],
)
def test_emit_rejects_bad_fields(
    cli: CliRunner, watched: tuple[Path, Path], arguments: list[str], message: str
) -> None:
    config, log = watched
    kind = "rate_limit_warning" if "--limit" in arguments else "challenge_failed"

    result = cli("--config", str(config), "emit", kind, *arguments)

    assert result.code == 2
    assert message in result.err
    assert read_events(log) == []


def test_demo_shows_every_event_kind(cli: CliRunner) -> None:
    result = cli("demo")

    assert result.code == 0, result.err
    for kind in EVENT_TYPES:
        assert kind in result.out, kind
    assert "nothing is repeated" in result.out
    passes = sum(line.startswith("Pass ") for line in result.out.splitlines())
    words = {6: "six", 7: "seven", 8: "eight"}
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"runs {words[passes]}\npasses" in readme  # the README counts them right


def test_demo_can_keep_its_sandbox_for_a_closer_look(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("demo", "--keep", str(tmp_path / "sandbox"))
    assert result.code == 0

    again = cli("--config", str(tmp_path / "sandbox" / "demo.yaml"), "events", "--json")

    history = json.loads(again.out)
    delivered = [e for e in history if e["event"]["type"] != "lacme.renewal_agent_run"]
    assert len(delivered) == len(read_events(tmp_path / "sandbox" / "events.jsonl"))
    # a reported run is bookkeeping: in the history, not sent to a sink that did not ask
    assert len(history) == len(delivered) + 1
    # The demo's CA answers renewalInfo for what it issued during the demo too.
    status = cli("--config", str(tmp_path / "sandbox" / "demo.yaml"), "status")
    assert "blog.example.com" in status.out
    assert "bad_response" not in status.out


def test_no_configuration_and_no_known_store_is_a_clear_error(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.path.exists("/etc/letsencrypt/live") or os.path.exists("/var/lib/dehydrated/certs"):
        pytest.fail("this machine has certbot or dehydrated stores; the test needs a clean one")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LACME_WATCH_CONFIG", raising=False)

    result = cli("watch", "--once")

    assert result.code == 2
    assert "no configuration file found" in result.err


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lacme_watch", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("lacme-watch ")


def test_the_command_collects_cycles_again_once_started(tmp_path: Path) -> None:
    """The `lacme-watch` script's entry point imports with the cyclic collector off,
    and the command runs with it on (a first pass over 100,000 files needs it)."""
    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {tmp_path / 's'}\nstores: [{{type: pem, paths: [/x/*]}}]\n")
    probe = (
        "import gc, sys\n"
        f"sys.argv = ['lacme-watch', '--config', {str(config)!r}, 'config', 'check']\n"
        "from lacme_watch.cli import commands as cli\n"
        "seen = []\n"
        "real = cli._config_check\n"
        "cli._HANDLERS['config check'] = lambda a, io: seen.append(gc.isenabled()) or real(a, io)\n"
        "from lacme_watch.__main__ import run\n"
        "print(run(), seen, gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.stdout.splitlines()[-1] == "0 [True] True", done.stderr


@pytest.mark.parametrize("columns", [40, 200])
def test_help_is_wrapped_to_the_terminal_it_is_printed_on(columns: int) -> None:
    """The parser is built without measuring the terminal (cron never prints help);
    help printed afterwards still fits COLUMNS, as argparse's always has."""
    done = subprocess.run(
        [sys.executable, "-m", "lacme_watch", "systemd", "install", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": str(columns)},
    )
    assert done.returncode == 0
    widest = max(len(line) for line in done.stdout.splitlines())
    assert widest <= columns - 2
    assert (widest > 80) is (columns > 80)  # the long help lines use the room they have


def test_no_command_prints_help_and_exits_2(cli: CliRunner) -> None:
    assert cli().code == 2


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["--expires-at", "0001-01-01T00:00:00+14:00"], id="before-year-1-in-utc"),
        pytest.param(["--expires-at", "99999-01-01"], id="five-digit-year"),
    ],
)
def test_emit_with_an_out_of_range_date_is_an_error_not_a_traceback(
    cli: CliRunner, tmp_path: Path, arguments: list[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nstores: [{{type: pem, paths: ['{tmp_path}/*.pem']}}]\n"
    )

    result = cli(
        "--config", str(config), "emit", "certificate_expiring", "--domain", "a.example",
        "--domains", "a.example", "--days-remaining", "3", "--threshold", "7d", *arguments,
    )  # fmt: skip

    assert result.code == 2
    assert "--expires-at: expected an ISO 8601 time" in result.err
    assert "Traceback" not in result.err


def test_now_far_in_the_future_is_a_usage_error(cli: CliRunner) -> None:
    with pytest.raises(SystemExit) as caught:
        cli("--now", "9999-12-31T23:59:59Z", "status")
    assert caught.value.code == 2


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["watch", "--once"], id="cron"),
        pytest.param(["--config", "c.yaml", "--now", "2026-06-01", "watch"], id="daemon"),
        pytest.param(["--log-level", "debug", "--log-format=json", "watch", "--once"], id="log"),
        pytest.param(["--conf", "watch", "status"], id="abbreviated-option-valued-watch"),
    ],
)
def test_watch_parsed_by_its_own_grammar_reads_as_the_whole_one(arguments: list[str]) -> None:
    """cron's `watch` is parsed without the other commands' grammar; what it accepts
    means what the whole grammar says it means."""
    _, parsed = parse_arguments("0", arguments)

    assert parsed == build_parser("0").parse_args(arguments)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["watch", "--onse"], "unrecognized arguments: --onse", id="typo"),
        pytest.param(["watch", "status"], "unrecognized arguments: status", id="two-commands"),
    ],
)
def test_a_watch_usage_error_is_the_whole_grammars(
    cli: CliRunner, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(*arguments)

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "usage: lacme-watch [-h] [--version]" in err


@pytest.mark.parametrize("asked", ["-h", "--help", "--he"])
def test_help_before_watch_lists_every_command(
    cli: CliRunner, capsys: pytest.CaptureFixture[str], asked: str
) -> None:
    """`lacme-watch -h watch` is the whole grammar's help, not the watch-only one's."""
    with pytest.raises(SystemExit) as exited:
        cli(asked, "watch")

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("watch", "status", "check", "events", "demo"))
