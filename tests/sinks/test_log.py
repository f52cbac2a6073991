"""The log sink: JSON lines that decode back to the same events, appended, or human text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lacme_watch.cloudevents import from_json, wrap
from lacme_watch.errors import SinkError
from lacme_watch.events import CertificateExpiring, ChallengeFailed
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
