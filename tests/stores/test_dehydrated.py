"""dehydrated's store, produced by real dehydrated runs against pebble on loopback."""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from lacme_watch.events.cloudevents import parse_time

from ..acme import Dehydrated, Pebble
from ..conftest import CliRunner, kinds, read_events

# dehydrated passes the challenge as `jsonsh` lines; this keeps the ACME error detail.
DETAIL = r's/^\["error","detail"\]\t"\(.*\)"$/\1/p'


@pytest.mark.acme
def test_issue_renew_a_failed_run_and_the_invalid_challenge_hook(
    cli: CliRunner, pebble: Pebble, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    dehydrated = Dehydrated(pebble, tmp_path / "dehydrated")
    root = pebble.write_root(tmp_path / "pebble-root.pem")
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{root}]\n"
        f"stores:\n  - type: dehydrated\n    path: {dehydrated.certs}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    # The one-line wiring the README documents for dehydrated's invalid_challenge hook.
    emit = shlex.join([sys.executable, "-m", "lacme_watch", "--config", str(config), "emit"])
    dehydrated.hook_cases = (
        f'  invalid_challenge) {emit} challenge_failed --domain "$2" --challenge-type http-01'
        f' --error "$(printf %s "$3" | sed -n \'{DETAIL}\')" ;;\n'
    )
    dehydrated.setup()
    issued = dehydrated.issue("ok-dh.example.com", "www.ok-dh.example.com")
    assert issued.returncode == 0, issued.stdout + issued.stderr

    assert cli("--config", str(config), "watch", "--once").code == 0
    assert read_events(log) == []  # baseline

    renewed = dehydrated.issue("ok-dh.example.com", "www.ok-dh.example.com", extra=("--force",))
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    failed = dehydrated.issue("fail-dh.example.com", extra=("-t", "http-01"))
    assert failed.returncode != 0
    leftovers = [
        p for p in (dehydrated.certs / "fail-dh.example.com").iterdir() if p.stat().st_size == 0
    ]

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 0, result.err  # a failed run's leftovers are not errors
    events = read_events(log)
    assert kinds(events) == ["challenge_failed", "certificate_renewed"]
    failure = events[0]["data"]
    assert isinstance(failure, dict)
    assert (failure["domain"], failure["challenge_type"]) == ("fail-dh.example.com", "http-01")
    assert "connection refused" in str(failure["error"])
    renewal = events[1]["data"]
    assert isinstance(renewal, dict)
    assert renewal["domains"] == ["ok-dh.example.com", "www.ok-dh.example.com"]
    # dehydrated leaves an empty cert-<timestamp>.pem behind when a first run fails.
    assert [p.name.split("-")[0] for p in leftovers] == ["cert"]


@pytest.mark.acme
def test_renew_days_from_its_config_and_runs_reported_by_its_exit_hook(
    cli: CliRunner, pebble: Pebble, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    dehydrated = Dehydrated(pebble, tmp_path / "dehydrated")
    store = f"dehydrated:{dehydrated.certs}"
    root = pebble.write_root(tmp_path / "pebble-root.pem")
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{root}]\n"
        f"stores:\n  - type: dehydrated\n    path: {dehydrated.certs}\n"
        f"    config: {dehydrated.root / 'config'}\n"
        "expiry: {thresholds_days: [], thresholds_percent: []}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    # The one-line exit_hook the README documents: each run of dehydrated reports itself.
    emit = shlex.join([sys.executable, "-m", "lacme_watch", "--config", str(config), "emit"])
    dehydrated.hook_cases = (
        f"  exit_hook) {emit} renewal_agent_run --store {shlex.quote(store)} ;;\n"
    )
    dehydrated.setup()
    with (dehydrated.root / "config").open("a") as conf:
        conf.write('RENEW_DAYS="20"\n')
    issued = dehydrated.issue("days-dh.example.com")
    assert issued.returncode == 0, issued.stdout + issued.stderr
    assert cli("--config", str(config), "watch", "--once").code == 0
    assert read_events(log) == []  # the run is recorded, not sent: no sink asked for it

    status = cli("--config", str(config), "status", "--json").json()
    assert isinstance(status, dict)
    leaf = next(r for r in status["certificates"] if r["role"] == "leaf")
    expires = parse_time(leaf["not_after"])
    assert parse_time(leaf["renew_after"]) == expires - timedelta(days=20)
    assert leaf["renewal_policy"] == f"dehydrated RENEW_DAYS ({dehydrated.root / 'config'}) = 20"
    assert [a["store"] for a in status["agents"]] == [store]

    overdue_at = expires - timedelta(days=19) + timedelta(hours=1)
    result = cli("--config", str(config), "--now", overdue_at.isoformat(), "watch", "--once")
    assert result.code == 0
    events = read_events(log)
    assert kinds(events) == ["renewal_overdue", "renewal_agent_stale"]
    assert events[0]["data"]["policy"] == leaf["renewal_policy"]  # type: ignore[index]
    assert events[1]["data"]["store"] == store  # type: ignore[index]
