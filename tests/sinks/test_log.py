"""The log sink: JSON lines that decode back to the same events, appended, or human text."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lacme_watch.errors import SinkError
from lacme_watch.events import CertificateExpiring, ChallengeFailed
from lacme_watch.events.cloudevents import Envelope, from_json, to_json, wrap
from lacme_watch.sinks.log import LogSink

T = datetime(2026, 11, 22, 12, tzinfo=UTC)
EXPIRING = wrap(
    CertificateExpiring(
        domain="a.example",
        domains=("a.example",),
        expires_at=datetime(2026, 12, 1, tzinfo=UTC),
        days_remaining=8,
        threshold="14d",
    ),
    host="h",
    time=T,
)
FAILED = wrap(
    ChallengeFailed(domain="b.example", challenge_type="dns-01", error="x"), host="h", time=T
)


def test_json_lines_are_appended_and_decode_to_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("earlier line\n")
    sink = LogSink("log", format="json", path=str(path))

    sink.deliver([EXPIRING])
    sink.deliver([FAILED])

    lines = path.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert [from_json(line) for line in lines[1:]] == [EXPIRING, FAILED]


def test_text_lines_are_for_people(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    LogSink("log", format="text", path=str(path)).deliver([EXPIRING])

    assert path.read_text() == (
        "2026-11-22T12:00:00Z certificate_expiring: a.example expires 2026-12-01 (8 days left)\n"
    )


def test_without_a_path_it_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    LogSink("log").deliver([FAILED])

    assert capsys.readouterr().err == "2026-11-22T12:00:00Z challenge_failed: b.example dns-01: x\n"


def test_an_unwritable_path_is_a_sink_error(tmp_path: Path) -> None:
    sink = LogSink("log", format="json", path=str(tmp_path / "no-such-dir" / "x.jsonl"))

    with pytest.raises(SinkError, match="sink 'log': cannot write"):
        sink.deliver([FAILED])


def _big(domain: str) -> Envelope:
    """An event whose JSON line spans a few memory pages (a long SAN list)."""
    names = tuple(f"n{i}.{domain}" for i in range(300))
    event = CertificateExpiring(
        domain=domain,
        domains=names,
        expires_at=datetime(2026, 12, 1, tzinfo=UTC),
        days_remaining=8,
        threshold="14d",
    )
    return wrap(event, host="h", time=T)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_leaves_whole_lines_only_and_the_retry_is_clean(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        log = small / "events.jsonl"
        sink = LogSink("log", format="json", path=str(log))
        sink.deliver([_big("first.example")])
        filler = small / "filler"
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 1024)
        os.truncate(filler, filler.stat().st_size - 4096)  # one page left: half a line fits
        batch = [_big("second.example"), _big("third.example")]
        assert len(to_json(batch[0])) > 4096

        with pytest.raises(SinkError, match="No space left on device") as caught:
            sink.deliver(batch)
        assert caught.value.delivered == frozenset()
        assert [from_json(line).id for line in log.read_text().splitlines()] == [
            _big("first.example").id
        ]

        filler.unlink()
        sink.deliver(batch)
        lines = log.read_text().splitlines()
        assert [from_json(line).event.subject for line in lines] == [
            "first.example",
            "second.example",
            "third.example",
        ]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def _numbered(index: int) -> Envelope:
    return replace(_big(f"host{index}.example"), id=f"event-{index}")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_disk_filling_mid_batch_delivers_whole_writes_and_retries_the_rest_once(
    tmp_path: Path,
) -> None:
    """Many lines share a write(2): what the disk took is delivered, the write it cut
    short is taken back whole, and the retry brings every event exactly once."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        log = small / "events.jsonl"
        filler = small / "filler"
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
        os.truncate(filler, filler.stat().st_size - 100 * 1024)  # room for about 100 KiB
        batch = [_numbered(i) for i in range(40)]  # ~7 KiB each: ~280 KiB
        sink = LogSink("log", format="json", path=str(log))

        with pytest.raises(SinkError, match="No space left on device") as caught:
            sink.deliver(batch)
        written = [from_json(line).id for line in log.read_text().splitlines()]
        assert log.read_bytes().endswith(b"\n")
        assert 0 < len(written) < len(batch)
        assert set(written) == caught.value.delivered
        assert written == [envelope.id for envelope in batch[: len(written)]]

        filler.unlink()
        sink.deliver([e for e in batch if e.id not in caught.value.delivered])
        assert [from_json(line).id for line in log.read_text().splitlines()] == [
            envelope.id for envelope in batch
        ]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_many_events_are_many_lines_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    batch = [_numbered(i) for i in range(30)]  # several writes' worth
    LogSink("log", format="json", path=str(path)).deliver(batch)
    assert [from_json(line) for line in path.read_text().splitlines()] == batch


def test_text_lines_escape_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "evil.example\r\n2026-11-22T12:00:00Z certificate_renewed: forged\x1b]0;owned\x07\x00"
    event = ChallengeFailed(domain=hostile, challenge_type="http-01", error="\x1b[2J")
    envelope = wrap(event, host="h", time=T)
    log = tmp_path / "events.log"

    LogSink("log", format="text", path=str(log)).deliver([envelope])
    LogSink("log", format="text").deliver([envelope])

    for written in (log.read_text(), capsys.readouterr().err):
        assert written.count("\n") == 1
        assert not {"\x1b", "\r", "\x00", "\x07"} & set(written)
        assert "evil.example\\r\\n2026" in written
        assert "\\x1b]0;owned\\x07\\0" in written
