"""Poison in the spool, and in the JSON files of a store: each one is set aside (or
reported) once, with its reason, and every other event still gets through."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lacme import FileStore

from lacme_watch import boundedjson
from lacme_watch.dispatch import spool
from lacme_watch.events import ChallengeFailed
from lacme_watch.events.cloudevents import to_json, wrap
from lacme_watch.statedb import StateStore

from .conftest import CliRunner, data, kinds, read_events, save_acme_cert

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
DEEP = b"[" * 200_000 + b"]" * 200_000


def _event(domain: str) -> bytes:
    envelope = wrap(
        ChallengeFailed(domain=domain, challenge_type="http-01", error="404"),
        host="web1",
        time=NOW,
        id=f"id-{domain}",
    )
    return to_json(envelope).encode()


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    directory, log, config = tmp_path / "spool", tmp_path / "events.jsonl", tmp_path / "c.yaml"
    directory.mkdir(mode=0o700)
    (tmp_path / "certs").mkdir()
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nspool: {directory}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/certs/*.pem']}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    return directory, log, config


def _time_out_of_range(path: Path) -> None:
    document = json.loads(_event("x.example"))
    document["time"] = "9999-12-31T23:59:59-23:59"
    path.write_text(json.dumps(document))


def _lone_surrogate(path: Path) -> None:
    path.write_bytes(_event("x.example").replace(b"x.example", b"\\udcff.example"))


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()


POISON: dict[str, tuple[Callable[[Path], object], str]] = {
    "200,000-deep array": (lambda path: path.write_bytes(DEEP), "nested deeper than 64"),
    "time out of range": (_time_out_of_range, "time is not ISO 8601"),
    "symlink to /dev/zero": (lambda path: path.symlink_to("/dev/zero"), "a symlink"),
    "FIFO": (lambda path: os.mkfifo(path), "not a regular file"),
    "socket": (_socket, "not a regular file"),
    "directory": (lambda path: path.mkdir(), "not a regular file"),
    "lone surrogate": (_lone_surrogate, "a string holds '\\udcff'"),
    "over the size cap": (
        lambda path: path.write_bytes(b" " * (spool.MAX_EVENT_SIZE + 1)),
        "larger than",
    ),
}


@pytest.mark.parametrize("kind", POISON)
def test_a_poison_entry_is_set_aside_once_and_blocks_nothing(
    tmp_path: Path, cli: CliRunner, kind: str
) -> None:
    directory, log, config = _setup(tmp_path)
    make, reason = POISON[kind]
    (directory / "1-before.json").write_bytes(_event("before.example"))
    make(directory / "2-poison.json")
    (directory / "3-after.json").write_bytes(_event("after.example"))

    first = cli("--config", str(config), "watch", "--once")
    second = cli("--config", str(config), "watch", "--once")

    assert first.code == 1, first.err
    assert f"spool: {directory / 'rejected' / '2-poison.json'}: not a valid event" in first.err
    assert reason in first.err
    assert second.code == 0, second.err  # reported once: nothing left to fail on
    assert [data(e)["domain"] for e in read_events(log)] == ["before.example", "after.example"]
    assert sorted(os.listdir(directory)) == ["rejected"]
    assert reason in (directory / "rejected" / "2-poison.json.reason").read_text()


def test_a_fifo_is_never_opened_so_the_pass_cannot_hang(tmp_path: Path) -> None:
    """In a real process with a deadline: the old reader blocked in open() for ever."""
    directory, log, config = _setup(tmp_path)
    os.mkfifo(directory / "wedge.json")
    (directory / "ok.json").write_bytes(_event("ok.example"))

    done = subprocess.run(
        [sys.executable, "-m", "lacme_watch", "--config", str(config), "watch", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1, done.stderr
    assert "wedge.json: not a valid event" in done.stderr
    assert kinds(read_events(log)) == ["challenge_failed"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_owned_by_another_user_is_not_read(tmp_path: Path, cli: CliRunner) -> None:
    directory, log, config = _setup(tmp_path)
    planted = directory / "planted.json"
    planted.write_bytes(_event("planted.example"))
    os.chown(planted, 65534, 65534)
    (directory / "mine.json").write_bytes(_event("mine.example"))

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1
    assert "owned by uid 65534, neither the spool's owner (uid 0) nor root" in result.err
    assert [data(e)["domain"] for e in read_events(log)] == ["mine.example"]


def test_rejected_being_a_plain_file_does_not_stop_the_spool(
    tmp_path: Path, cli: CliRunner
) -> None:
    directory, log, config = _setup(tmp_path)
    (directory / "rejected").write_text("not a directory\n")
    (directory / "bad.json").write_text("{")
    (directory / "good.json").write_bytes(_event("good.example"))

    first = cli("--config", str(config), "watch", "--once")
    second = cli("--config", str(config), "watch", "--once")

    assert first.code == 1, first.err
    assert "left beside it as bad.json.rejected" in first.err
    assert second.code == 0, second.err
    assert [data(e)["domain"] for e in read_events(log)] == ["good.example"]
    assert sorted(os.listdir(directory)) == [
        "bad.json.rejected",
        "bad.json.rejected.reason",
        "rejected",
    ]


def test_rejected_as_a_symlink_never_moves_a_file_out_of_the_spool(
    tmp_path: Path, cli: CliRunner
) -> None:
    """A spool writer must not make lacme-watch (often root) drop files elsewhere."""
    directory, _log, config = _setup(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (directory / "rejected").symlink_to(elsewhere)
    (directory / "bad.json").write_text("{")

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1
    assert os.listdir(elsewhere) == []
    assert (directory / "bad.json.rejected").exists()


def test_a_reason_file_is_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    (directory / "rejected").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (directory / "rejected" / "bad.json.reason").symlink_to(victim)
    (directory / "bad.json").write_text("{")

    found = spool.collect(directory)

    assert [path.name for path, _ in found.rejected] == ["bad.json"]
    assert victim.read_text() == "untouched\n"


@pytest.mark.parametrize(
    "text",
    [DEEP, b'{"a": ' * 100 + b"1" + b"}" * 100, b'"\\ud800"', b"\xff", b"1" * 5000],
    ids=["deep array", "deep object", "lone surrogate", "not UTF-8", "5000-digit integer"],
)
def test_the_bounded_loader_refuses_what_would_break_later(text: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # every refusal is one ValueError
        boundedjson.loads(text)


def test_the_bounded_loader_reads_what_is_fine() -> None:
    assert boundedjson.loads('{"a": [[["x", "[[[["]]], "b": "\\ud83d\\ude00"}') == {
        "a": [[["x", "[[[["]]],
        "b": "\U0001f600",
    }


def test_poison_meta_and_rate_limits_of_a_lacme_store_blind_nothing_else(
    tmp_path: Path, cli: CliRunner
) -> None:
    """The same limits for lacme's own JSON files: the bad entry is `bad_metadata`,
    a bad rate_limits.json is ignored as lacme ignores it, the rest is still watched."""
    ca = trustme.CA()
    now = datetime.now(UTC)
    store_dir = tmp_path / "lacme"
    store = FileStore(store_dir)
    for name in ("soon.example", "deep.example"):
        save_acme_cert(
            store,
            ca,
            [name],
            not_before=now - timedelta(days=85),
            not_after=now + timedelta(days=5),
        )
    (store_dir / "certs" / "deep.example" / "meta.json").write_bytes(DEEP)
    (store_dir / "rate_limits.json").write_bytes(DEEP)
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: lacme, path: {store_dir}}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1, result.err
    assert "meta.json: bad_metadata (not JSON: nested deeper than 64 levels)" in result.err
    watched = {"lacme.certificate_expiring", "lacme.certificate_unreadable"}
    events = [e for e in read_events(log) if e["type"] in watched]  # trustme chains are short
    assert [(e["type"], data(e).get("domain") or data(e)["reason"]) for e in events] == [
        ("lacme.certificate_expiring", "soon.example"),
        ("lacme.certificate_unreadable", "bad_metadata"),
    ]
    assert str(events[1]["subject"]).endswith("deep.example/meta.json")


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _mutated_event(draw: st.DrawFn) -> bytes:
    """A real spooled CloudEvent, its structure or its bytes damaged."""
    document = json.loads(_event("fuzz.example"))
    if draw(st.booleans()):
        where = draw(st.sampled_from([document, document["data"]]))
        key = draw(st.sampled_from(sorted(where)))
        where[key] = draw(_VALUES)
    raw = bytearray(json.dumps(document, ensure_ascii=draw(st.booleans())).encode())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(raw) - 1))
        raw[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=4))
    return bytes(raw)


@settings(
    max_examples=int(os.environ.get("LACME_WATCH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=_mutated_event())
def test_a_mutated_spool_entry_is_accepted_whole_or_set_aside(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    """Whatever the bytes: collect() does not raise, and what it accepts can be
    recorded in a real state database (the failure that once stopped every pass)."""
    root = tmp_path_factory.mktemp("spool-fuzz")
    directory = root / "spool"
    directory.mkdir()
    (directory / "entry.json").write_bytes(raw)

    found = spool.collect(directory)

    assert len(found.envelopes) + len(found.rejected) == 1
    with StateStore(root / "state") as store:
        store.record_events([(envelope, ("log",)) for envelope in found.envelopes], NOW)
    shutil.rmtree(root)
