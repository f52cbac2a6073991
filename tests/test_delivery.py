"""At least once: a kill -9 between commit and delivery loses nothing; min_interval folds."""

from __future__ import annotations

import gc
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.config import Config
from lacme_watch.dispatch.delivery import RetryPolicy, SinkRoute, drain
from lacme_watch.dispatch.ingest import record
from lacme_watch.events import ChallengeFailed, Heartbeat
from lacme_watch.events.cloudevents import Envelope, wrap
from lacme_watch.statedb import StateStore
from lacme_watch.testing import RecordingSink

from .conftest import CliRunner, read_events

BLOCKING_HOOK = """
import os, pathlib, sys, time
calls, block = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(calls / ("%03d.json" % len(list(calls.iterdir())))).write_text(sys.stdin.read())
if block.exists():
    (block.parent / "hook-started").write_text(str(os.getpid()))
    time.sleep(60)
"""


def test_a_kill_between_commit_and_delivery_loses_nothing(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = trustme.CA()
    certs = tmp_path / "certs"
    certs.mkdir()
    for name, days in (("a.example", 3), ("b.example", 20)):
        leaf = ca.issue_cert(
            name, not_before=now - timedelta(days=90 - days), not_after=now + timedelta(days=days)
        )
        (certs / f"{name}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    hook = tmp_path / "hook.py"
    hook.write_text(BLOCKING_HOOK)
    calls = tmp_path / "calls"
    calls.mkdir()
    block = tmp_path / "block"
    block.touch()
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        "sinks:\n  - type: shell\n"
        f"    command: ['{sys.executable}', '{hook}', '{calls}', '{block}']\n"
    )
    command = [sys.executable, "-m", "lacme_watch", "--config", str(config), "watch", "--once"]

    with subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE) as first:
        deadline = time.monotonic() + 60
        while not (tmp_path / "hook-started").exists():
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the hook never started"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # lacme-watch and its hook, mid-delivery
        first.wait()
    assert first.returncode == -signal.SIGKILL

    db = sqlite3.connect(tmp_path / "state" / "state.sqlite3")
    pending = db.execute(
        "SELECT e.id FROM outbox o JOIN events e ON e.seq = o.event WHERE o.state = 'pending'"
    ).fetchall()
    db.close()
    assert len(pending) == 2  # committed with the state, not yet delivered
    interrupted = json.loads((calls / "000.json").read_text())["id"]

    block.unlink()
    second = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    assert second.returncode == 0, second.stderr
    delivered = [json.loads(p.read_text()) for p in sorted(calls.iterdir())][1:]
    assert sorted(e["id"] for e in delivered) == sorted(row[0] for row in pending)
    assert interrupted in {e["id"] for e in delivered}  # the same id, resent
    assert sorted(e["data"]["domain"] for e in delivered) == ["a.example", "b.example"]
    third = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert third.returncode == 0
    assert len(list(calls.iterdir())) == 3  # nothing detected twice, nothing sent twice


def test_min_interval_folds_a_burst_into_the_next_batch(tmp_path: Path) -> None:
    sink = RecordingSink("mail")
    config = Config(
        path=None,
        state_dir=tmp_path,
        host="h",
        stores=(),
        authorities=(),
        sinks=(SinkRoute(sink=sink, min_interval=timedelta(hours=6)),),
    )
    start = datetime(2026, 11, 22, tzinfo=UTC)

    def fail(domain: str, hours: float) -> None:
        event = ChallengeFailed(domain=domain, challenge_type="http-01", error="x")
        _, report = record(config, store, [event], start + timedelta(hours=hours))
        reports.append(report.held)

    reports: list[dict[str, int]] = []
    with StateStore(tmp_path) as store:
        fail("a.example", 0)
        fail("b.example", 1)
        fail("c.example", 2)
        fail("d.example", 6.5)

    assert [[e.event.subject for e in batch] for batch in sink.batches] == [
        ["a.example"],
        ["b.example", "c.example", "d.example"],
    ]
    assert reports == [{}, {"mail": 1}, {"mail": 2}, {}]


def test_sinks_test_sends_a_marked_event_through_one_sink(cli: CliRunner, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/*.pem']}}\n"
        "sinks:\n"
        f"  - {{type: log, name: ops, format: json, path: {log}, events: [challenge_failed]}}\n"
        "  - {type: webhook, name: collector, url: 'http://127.0.0.1:9/', timeout: 2s}\n"
    )

    worked = cli("--config", str(config), "sinks", "test", "ops")
    failed = cli("--config", str(config), "sinks", "test", "collector")
    unknown = cli("--config", str(config), "sinks", "test", "pager")

    assert worked.code == 0
    assert "sink ops: delivered test event" in worked.out
    (event,) = read_events(log)
    data = event["data"]
    assert isinstance(data, dict)
    assert data["test"] is True
    assert event["subject"] == "test.lacme-watch.invalid"
    assert failed.code == 1
    assert "sink collector: FAILED" in failed.err
    assert unknown.code == 2
    assert "no sink named 'pager'; configured: ops, collector" in unknown.err
    history = cli("--config", str(config), "events", "--json")
    assert json.loads(history.out) == []  # a drill is not history


def test_status_shows_deliveries_that_are_stuck(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/*.pem']}}\n"
        "sinks:\n  - {type: webhook, name: collector, url: 'http://127.0.0.1:9/', timeout: 2s}\n"
    )
    cli(
        "--config",
        str(config),
        "emit",
        "challenge_failed",
        "--domain",
        "a.example",
        "--challenge-type",
        "dns-01",
        "--error",
        "no TXT",
    )

    result = cli("--config", str(config), "status", "--json")

    assert json.loads(result.out)["deliveries"] == {"collector": {"retrying": 1}}
    table = cli("--config", str(config), "status")
    assert "sink collector: 1 retrying (see `lacme-watch events --undelivered`)" in table.out


class _CrashingSink(RecordingSink):
    """Notes whether the cyclic collector runs while it delivers, then crashes."""

    collecting: list[bool]

    def deliver(self, events: Sequence[Envelope]) -> None:
        self.collecting = [*getattr(self, "collecting", []), gc.isenabled()]
        raise RuntimeError("a bug in a plugin")


def _failing_transaction(store: StateStore, inside: list[bool]) -> None:
    with store.transaction():
        inside.append(gc.isenabled())
        raise RuntimeError("the writer fails")


def test_the_collector_waits_out_a_drain_and_a_commit_and_runs_again_after(
    tmp_path: Path,
) -> None:
    """Paused while thousands of rows are made (statedb.collector_paused), never left
    paused: not by a sink that crashes, not by a transaction that fails; and one the
    caller paused stays paused."""
    now = datetime.now(UTC)
    beat = Heartbeat(
        host="h", pass_at=now, certificates=1, sources=1, sources_failed=0, events=0, problems=0
    )
    sink = _CrashingSink("crashing")
    with StateStore(tmp_path) as store:
        store.record_events([(wrap(beat, host="h", time=now, id="e1"), ["crashing"])], now)
        report = drain(store, [SinkRoute(sink=sink)], now, RetryPolicy())
        assert report.failures == {"crashing": "sink crashed; see the log"}
        assert sink.collecting == [False]
        assert gc.isenabled()
        inside: list[bool] = []
        with pytest.raises(RuntimeError, match="the writer fails"):
            _failing_transaction(store, inside)
        assert inside == [False]
        assert gc.isenabled()
        gc.disable()
        try:
            drain(store, [SinkRoute(sink=sink)], now + timedelta(days=1), RetryPolicy())
            assert not gc.isenabled()
        finally:
            gc.enable()
