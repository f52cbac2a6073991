"""The spool, `emit --json` and the lacme bridge (with the real lacme client and pebble)."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lacme import Client, FileStore
from lacme.challenges.http01 import HTTP01Handler
from lacme.errors import ACMEValidationError
from lacme.events import EventDispatcher
from lacme.ratelimit import RateLimitTracker

from lacme_watch.bridge import attach
from lacme_watch.config import Config
from lacme_watch.config.routes import SinkRoute, route
from lacme_watch.dispatch import spool
from lacme_watch.events import ChallengeFailed
from lacme_watch.events.cloudevents import Envelope, to_json, wrap
from lacme_watch.statedb import StateStore
from lacme_watch.testing import RecordingSink

from .acme import Pebble
from .conftest import CliRunner, kinds, read_events

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def envelope(domain: str = "a.example") -> Envelope:
    return wrap(
        ChallengeFailed(domain=domain, challenge_type="dns-01", error="no TXT"),
        host="web1",
        time=NOW,
        id=f"id-{domain}",
    )


def spool_config(tmp_path: Path) -> tuple[Path, Path, Path]:
    directory, log, config = tmp_path / "spool", tmp_path / "events.jsonl", tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nspool: {directory}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/certs/*.pem']}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    (tmp_path / "certs").mkdir()
    return directory, log, config


def test_spooled_events_are_delivered_once_and_removed(cli: CliRunner, tmp_path: Path) -> None:
    directory, log, config = spool_config(tmp_path)
    spool.write(directory, envelope())

    first = cli("--config", str(config), "watch", "--once")
    second = cli("--config", str(config), "watch", "--once")

    assert (first.code, second.code) == (0, 0)
    assert [e["id"] for e in read_events(log)] == ["id-a.example"]
    assert [p.name for p in directory.iterdir()] == []


def test_an_invalid_file_is_set_aside_with_its_reason(cli: CliRunner, tmp_path: Path) -> None:
    directory, log, config = spool_config(tmp_path)
    directory.mkdir()
    (directory / "broken.json").write_text('{"specversion": "1.0", "type": "lacme.nope"}')
    spool.write(directory, envelope("b.example"))

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1
    assert "broken.json: not a valid event" in result.err
    assert kinds(read_events(log)) == ["challenge_failed"]  # the good one still went out
    rejected = directory / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == ["broken.json", "broken.json.reason"]
    assert "unknown event type 'lacme.nope'" in (rejected / "broken.json.reason").read_text()
    assert cli("--config", str(config), "watch", "--once").code == 0  # never retried in a loop


def test_a_crash_between_commit_and_removal_records_nothing_twice(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool.write(directory, envelope())
    sink = RecordingSink("rec")
    config = Config(
        path=None,
        state_dir=tmp_path,
        host="h",
        stores=(),
        authorities=(),
        sinks=(SinkRoute(sink=sink),),
    )
    with StateStore(tmp_path) as store:
        found = spool.collect(directory)
        store.record_events(
            route(config.sinks, found.envelopes), NOW
        )  # ...and the process dies here
        again = spool.collect(directory)
        store.record_events(route(config.sinks, again.envelopes), NOW)
        again.remove_ingested()

        assert len(store.history()) == 1
        assert len(store.pending()) == 1


def test_emit_json_keeps_the_event_id(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, log, config = spool_config(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(to_json(envelope())))

    result = cli("--config", str(config), "emit", "--json", "-")

    assert result.code == 0, result.err
    assert [e["id"] for e in read_events(log)] == ["id-a.example"]
    assert cli("--config", str(config), "emit", "--json", str(tmp_path / "none.json")).code == 2


@pytest.mark.acme
def test_the_bridge_carries_lacmes_own_events_from_a_real_client(
    cli: CliRunner, pebble: Pebble, tmp_path: Path
) -> None:
    directory, log, config = spool_config(tmp_path)
    dispatcher = EventDispatcher()
    attach(dispatcher, directory, host="app1")
    store = FileStore(tmp_path / "lacme")
    tracker = RateLimitTracker.from_file_store(
        store, limit=2, warn_threshold=0.5, block=False, event_dispatcher=dispatcher
    )

    async def issue_then_fail() -> None:
        handler = HTTP01Handler()
        async with Client(
            directory_url=pebble.directory,
            ca_bundle=str(pebble.ca_file),
            challenge_handler=handler,
            store=store,
            poll_timeout=30,
            poll_interval=0.5,
            event_dispatcher=dispatcher,
            rate_limit_tracker=tracker,
        ) as client:
            server = await handler.start_server("127.0.0.1", pebble.http_port)
            await client.issue(["ok.bridge.example.com"])
            server.close()
            await server.wait_closed()  # nobody answers http-01 now: a real failure
            with pytest.raises(ACMEValidationError):
                await client.issue(["fail.bridge.example.com"])

    asyncio.run(issue_then_fail())
    assert len(list(directory.glob("*.json"))) >= 3

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 0, result.err
    events = read_events(log)
    assert sorted(set(kinds(events))) == [
        "certificate_issued",
        "challenge_failed",
        "rate_limit_warning",
    ]
    failure = next(e for e in events if e["type"] == "lacme.challenge_failed")
    data = failure["data"]
    assert isinstance(data, dict)
    assert (data["domain"], data["challenge_type"], data["store"]) == (
        "fail.bridge.example.com",
        "http-01",
        "lacme",
    )
    assert str(failure["source"]).startswith("lacme-watch://app1/")
    warning = next(e for e in events if e["type"] == "lacme.rate_limit_warning")
    assert json.dumps(warning["data"]).count('"limit": 2') == 1


def test_the_bridge_can_spool_only_some_kinds(tmp_path: Path) -> None:
    from lacme.events import CertificateAuthorityInitialized as LacmeCAInitialized
    from lacme.events import ChallengeFailed as LacmeChallengeFailed

    dispatcher = EventDispatcher()
    attach(dispatcher, tmp_path, kinds={"challenge_failed"})

    dispatcher.emit_sync(LacmeCAInitialized(cn="App CA", expires_at=NOW))  # every app start
    dispatcher.emit_sync(
        LacmeChallengeFailed(domain="a.example", challenge_type="dns-01", error="x")
    )

    (only,) = spool.collect(tmp_path).envelopes
    assert only.event.kind == "challenge_failed"
