"""Renewal policies read from the owners' files, and the wire form of the new kinds."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from lacme_watch.bridge import report_run
from lacme_watch.config import load
from lacme_watch.detection.renewal import (
    BeforeExpiry,
    LifetimeLeft,
    RenewAt,
    certbot_interval,
    certbot_policy,
    dehydrated_renew_days,
    parse_renew_before,
    policy_from_json,
    policy_to_json,
    renew_after,
)
from lacme_watch.events import CertificateChanged, Change
from lacme_watch.events.cloudevents import from_json, to_json, wrap
from lacme_watch.reading.certfacts import describe
from lacme_watch.run.passes import run_pass
from lacme_watch.sinks.shell import event_environment
from lacme_watch.statedb import StateStore

from .conftest import CliRunner, write_config

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def facts(days: float, ca: trustme.CA | None = None) -> x509.Certificate:
    leaf = (ca or trustme.CA()).issue_cert(
        "p.example", not_before=NOW, not_after=NOW + timedelta(days=days)
    )
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())


@pytest.mark.parametrize(
    ("conf", "lifetime_days", "renew_at_day"),
    [
        pytest.param("version = 2.1.0\n", 90, 60, id="certbot-2-default-30-days"),
        pytest.param("version = 3.3.0\n", 47, 17, id="certbot-3-default-30-days"),
        pytest.param("version = 4.0.0\n", 90, 60, id="certbot-4-two-thirds"),
        pytest.param("version = 4.2.0\n", 45, 30, id="certbot-4-two-thirds-of-45"),
        pytest.param("version = 5.0.0\n", 6, 3, id="certbot-4-half-under-10-days"),
        pytest.param(
            "renew_before_expiry = 10 days\nversion = 4.0.0\n", 90, 80, id="configured-wins"
        ),
        pytest.param("renew_before_expiry = 2 weeks\n", 90, 76, id="weeks"),
        pytest.param("renew_before_expiry = 7\n", 90, 83, id="a-bare-number-is-days"),
        pytest.param(
            "# renew_before_expiry = 30 days\nversion = 1.21.0\n[renewalparams]\n"
            "renew_before_expiry = 1 days\n",
            90,
            60,
            id="commented-default-and-renewalparams-ignored",
        ),
    ],
)
def test_certbot_policies(conf: str, lifetime_days: int, renew_at_day: int) -> None:
    policy = certbot_policy(conf)
    assert policy is not None
    certificate = describe(facts(lifetime_days))
    assert renew_after(policy, certificate) == NOW + timedelta(days=renew_at_day)


def test_certbot_interval_spellings() -> None:
    assert certbot_interval("3 days 12 hours") == timedelta(days=3, hours=12)
    assert certbot_interval("6 months 1 week") == timedelta(days=187)
    assert certbot_interval("soon") is None
    assert certbot_policy("renew_before_expiry = whenever\n") is None
    assert certbot_policy("version = 2.1.0\n[renewalparams]\nautorenew = False\n") is None


def test_descriptions_name_the_owner() -> None:
    assert certbot_policy("version = 4.1.0\n").describe() == (  # type: ignore[union-attr]
        "certbot 4.1.0 default = 33.33% of the lifetime left (50% under 10d)"
    )
    assert parse_renew_before("33%") == LifetimeLeft(fraction=0.33, origin="renew_before")
    assert parse_renew_before("30d") == BeforeExpiry(
        before=timedelta(days=30), origin="renew_before", spelled="30d"
    )
    assert parse_renew_before("0%") is None
    assert dehydrated_renew_days('RENEW_DAYS="30"\n# RENEW_DAYS=5\nRENEW_DAYS=12\n') == 12
    assert dehydrated_renew_days("KEYSIZE=4096\n") is None


def test_an_ari_window_plugs_in_as_a_policy() -> None:
    window_end = NOW + timedelta(days=50)
    policy = RenewAt(at=window_end, origin="ari")
    assert renew_after(policy, describe(facts(90))) == window_end
    for each in (
        policy,
        LifetimeLeft(fraction=0.5, origin="x", short_fraction=0.25, short_below=timedelta(days=3)),
    ):
        assert policy_from_json(json.loads(json.dumps(policy_to_json(each)))) == each


def test_certificate_changed_round_trips_on_the_wire() -> None:
    event = CertificateChanged(
        domain="a.example",
        domains=("a.example",),
        expires_at=NOW,
        changes=(
            Change(field="names", before=("a.example", "b.example"), after=("a.example",)),
            Change(field="chain_length", before=2, after=3),
            Change(field="must_staple", before=False, after=True),
        ),
        store="s",
    )
    envelope = wrap(event, host="h", time=NOW)
    decoded = from_json(to_json(envelope)).event
    assert decoded == event
    assert isinstance(decoded, CertificateChanged)
    assert decoded.urgent  # a name was dropped
    assert "names: a.example, b.example -> a.example" in decoded.summary()
    variables = event_environment(envelope, "/tmp/event.json")  # a name only
    assert json.loads(variables["LACME_WATCH_CHANGES"])[1] == {
        "field": "chain_length",
        "before": 2,
        "after": 3,
    }


def test_the_bridge_reports_a_lacme_sweep(cli: CliRunner, tmp_path: Path) -> None:
    base = tmp_path / "lacme"
    (base / "certs").mkdir(parents=True)
    spool = tmp_path / "spool"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\nspool: {spool}\n"
        f"stores:\n  - {{type: lacme, path: {base}, agent_stale_after: 1d}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {tmp_path / 'e.jsonl'}}}\n",
    )
    swept = datetime.now(UTC) - timedelta(days=2)
    report_run(spool, store=f"lacme:{base}", when=swept)

    assert cli("--config", str(config), "watch", "--once").code == 0

    lines = (tmp_path / "e.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["lacme.renewal_agent_stale"]
    assert json.loads(lines[0])["data"]["expected_every"] == "1d"
    with StateStore(tmp_path / "state") as state:  # once: not even to in-process subscribers
        assert run_pass(load(config), state, datetime.now(UTC)).envelopes == []

    report_run(spool, store=f"lacme:{base}")  # the next sweep: re-armed, nothing stale
    assert cli("--config", str(config), "watch", "--once").code == 0
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert cli("--config", str(config), "--now", later, "watch", "--once").code == 0
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 2


def test_emit_a_run_needs_a_configured_store(cli: CliRunner, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\nstores:\n  - {{type: lacme, path: {tmp_path}}}\n",
    )
    result = cli("--config", str(config), "emit", "renewal_agent_run", "--store", "lacme:/nope")
    assert result.code == 2
    assert f"--store 'lacme:/nope' is not a configured source; one of: lacme:{tmp_path}" in (
        result.err.replace("\n", "")
    )
    ok = cli("--config", str(config), "emit", "renewal_agent_run", "--store", f"lacme:{tmp_path}")
    assert ok.code == 0


def test_renew_before_supplies_a_policy_to_plain_files(cli: CliRunner, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    leaf = trustme.CA().issue_cert(
        "file.example", not_before=now - timedelta(days=70), not_after=now + timedelta(days=20)
    )
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "file.pem"))
    log = tmp_path / "e.jsonl"
    stores = f"  - {{type: pem, paths: ['{tmp_path}/file.pem']}}\n"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\nstores:\n{stores}"
        "expiry: {thresholds_days: [], thresholds_percent: []}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    assert cli("--config", str(config), "watch", "--once").code == 0
    assert not log.exists()  # no policy of its own: never overdue

    config.write_text(config.read_text().replace(".pem']}", ".pem'], renew_before: 30d}"))
    assert cli("--config", str(config), "watch", "--once").code == 0

    (event,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert event["type"] == "lacme.renewal_overdue"
    assert event["data"]["policy"] == "renew_before = 30d"
    assert event["data"]["renew_after"] == (now - timedelta(days=10)).isoformat().replace(
        "+00:00", "Z"
    )


def test_status_reads_a_database_from_before_agent_runs(cli: CliRunner, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\nstores:\n  - {{type: lacme, path: {tmp_path}}}\n",
    )
    assert cli("--config", str(config), "watch", "--once").code == 0
    with sqlite3.connect(tmp_path / "state" / "state.sqlite3") as db:
        db.execute("DROP TABLE agent_runs")  # as an older lacme-watch left it

    status = cli("--config", str(config), "status", "--json")

    assert status.code == 0
    assert status.json()["agents"] == []  # type: ignore[index]
