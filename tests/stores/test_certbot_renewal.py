"""renewal_overdue, renewal_agent_stale and certificate_changed with real certbot runs
against pebble. pebble signs for five years from now, so `--now` moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from lacme_watch.events.cloudevents import parse_time

from ..acme import Certbot, Pebble
from ..conftest import CliRunner, data, kinds, watch
from .test_certbot import config_for

pytestmark = pytest.mark.acme  # real certbot against pebble
HOUR = timedelta(hours=1)


@pytest.fixture
def certbot(pebble: Pebble, tmp_path: Path) -> Certbot:
    return Certbot(pebble, tmp_path / "certbot")


def expiry(certbot: Certbot, name: str) -> datetime:
    pem = (certbot.config_dir / "live" / name / "cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def of_kind(events: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [data(e) for e in events if e["type"] == f"lacme.{kind}"]


def certonly(certbot: Certbot, *arguments: str) -> None:
    done = certbot.run(
        "certonly",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        str(certbot.pebble.http_port),
        *arguments,
    )
    assert done.returncode == 0, done.stderr


def test_overdue_by_renew_before_expiry_and_by_certbots_default(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    assert certbot.issue("keep.example.com").returncode == 0
    assert certbot.issue("set.example.com").returncode == 0
    conf = certbot.config_dir / "renewal" / "set.example.com.conf"
    text = conf.read_text()
    assert "# renew_before_expiry = 30 days" in text  # what certbot writes: the default
    conf.write_text(
        text.replace("# renew_before_expiry = 30 days", "renew_before_expiry = 10 days")
    )
    config, log = config_for(tmp_path, certbot)
    # Overdue events only: no day or percent thresholds, no renewal-agent watch.
    config.write_text(
        config.read_text().replace(f"    log: {certbot.log}\n", "")
        + "expiry: {thresholds_days: [], thresholds_percent: []}\n"
    )
    assert watch(cli, config, log) == (0, [])

    # certbot 2.1.0 wrote keep's conf: its default is 30 days before expiry; a day of grace.
    keep_point = expiry(certbot, "keep.example.com") - timedelta(days=30)
    early = (keep_point + timedelta(days=1) - HOUR).isoformat()
    assert watch(cli, config, log, "--now", early) == (0, [])
    code, events = watch(
        cli, config, log, "--now", (keep_point + timedelta(days=1, hours=1)).isoformat()
    )
    assert code == 0
    assert kinds(events) == ["renewal_overdue"]
    keep = data(events[0])
    assert keep["domain"] == "keep.example.com"
    assert parse_time(str(keep["renew_after"])) == keep_point
    assert keep["policy"] == "certbot 2.1.0 default renew_before_expiry = 30 days"
    assert keep["days_remaining"] == 28

    set_point = expiry(certbot, "set.example.com") - timedelta(days=10)
    later = (set_point + timedelta(days=1) + HOUR).isoformat()
    code, events = watch(cli, config, log, "--now", later)
    assert kinds(events) == ["renewal_overdue"]  # keep is not told again
    told = data(events[0])
    assert told["domain"] == "set.example.com"
    assert parse_time(str(told["renew_after"])) == set_point
    assert told["policy"] == "certbot renew_before_expiry = 10 days"
    status = cli("--config", str(config), "--now", later, "status", "--json").json()
    leaves = [r for r in status["certificates"] if r["role"] == "leaf"]  # type: ignore[index]
    assert {r["name"]: r["state"] for r in leaves} == {
        "keep.example.com": "overdue",
        "set.example.com": "overdue",
    }

    # A renewal re-arms it: the new certificate gets its own event when it is overdue too.
    renewed = certbot.renew("keep.example.com")
    assert renewed.returncode == 0, renewed.stderr
    code, events = watch(cli, config, log, "--now", later)
    assert sorted(kinds(events)) == ["certificate_renewed", "renewal_overdue"]
    again = of_kind(events, "renewal_overdue")[0]
    assert (again["domain"], again["fingerprint"]) == (
        "keep.example.com",
        of_kind(events, "certificate_renewed")[0]["fingerprint"],
    )
    assert again["fingerprint"] != keep["fingerprint"]
    assert watch(cli, config, log, "--now", later) == (0, [])


def test_a_gap_in_certbots_runs_is_told_once_and_a_new_run_rearms_it(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    assert certbot.issue("runs.example.com").returncode == 0
    config, log = config_for(tmp_path, certbot)
    assert watch(cli, config, log) == (0, [])
    before = datetime.now(UTC)
    assert certbot.run("certificates").returncode == 0  # a run with nothing to renew
    after = datetime.now(UTC)
    assert watch(cli, config, log) == (0, [])  # the run is seen; nothing stale

    three_days = (after + timedelta(days=3)).isoformat()
    code, events = watch(cli, config, log, "--now", three_days)

    assert code == 0
    assert kinds(events) == ["renewal_agent_stale"]
    stale = data(events[0])
    assert stale["store"] == f"certbot:{certbot.config_dir}"
    assert before - timedelta(seconds=1) <= parse_time(str(stale["last_run"])) <= after
    assert stale["expected_every"] == "2d"
    assert events[0]["subject"] == stale["store"]
    status = cli("--config", str(config), "--now", three_days, "status", "--json").json()
    assert status["agents"][0]["stale"] is True  # type: ignore[index]
    assert watch(cli, config, log, "--now", three_days) == (0, [])  # once

    assert certbot.run("certificates").returncode == 0
    assert watch(cli, config, log, "--now", (after + timedelta(days=1)).isoformat()) == (0, [])
    code, events = watch(cli, config, log, "--now", (after + timedelta(days=4)).isoformat())
    assert kinds(events) == ["renewal_agent_stale"]
    assert parse_time(str(data(events[0])["last_run"])) > parse_time(str(stale["last_run"]))


def test_what_a_renewal_changed_names_and_key_type(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    assert certbot.issue("change.example.com").returncode == 0
    config, log = config_for(tmp_path, certbot)
    assert watch(cli, config, log) == (0, [])

    certonly(certbot, "--expand", "-d", "change.example.com", "-d", "www.change.example.com")
    code, events = watch(cli, config, log)
    assert code == 0
    assert kinds(events) == ["certificate_renewed", "certificate_changed"]
    assert of_kind(events, "certificate_changed")[0]["changes"] == [
        {
            "field": "names",
            "before": ["change.example.com"],
            "after": ["change.example.com", "www.change.example.com"],
        }
    ]

    certonly(
        certbot,
        "--cert-name",
        "change.example.com",
        "--key-type",
        "rsa",
        "--force-renewal",
        "-d",
        "change.example.com",
        "-d",
        "www.change.example.com",
    )
    _, events = watch(cli, config, log)
    changed = of_kind(events, "certificate_changed")
    assert changed[0]["changes"] == [{"field": "key", "before": "ECDSA P-256", "after": "RSA 2048"}]
    assert changed[0]["domains"] == ["change.example.com", "www.change.example.com"]

    certonly(certbot, "--cert-name", "change.example.com", "-d", "www.change.example.com")
    _, events = watch(cli, config, log)
    assert of_kind(events, "certificate_changed")[0]["changes"] == [
        {
            "field": "names",
            "before": ["change.example.com", "www.change.example.com"],
            "after": ["www.change.example.com"],
        }
    ]

    renewed = certbot.renew("change.example.com")  # the same profile: nothing to say
    assert renewed.returncode == 0, renewed.stderr
    _, events = watch(cli, config, log)
    assert kinds(events) == ["certificate_renewed"]
