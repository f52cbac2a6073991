"""renewal_overdue and certificate_changed on lacme stores, with real lacme CAs.

Old certificates are issued for real at an earlier clock with libfaketime
(`faketime -f -80d python -c ...`), so the store holds what lacme would have left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from lacme import CertificateAuthority, FileStore

from lacme_watch.detection.thresholds import days_remaining
from lacme_watch.events.cloudevents import format_time, from_json, parse_time
from lacme_watch.sinks.email import EmailSink

from .acme import require
from .conftest import CliRunner, data, kinds, watch, write_config

_ISSUE = """
import sys
from lacme import CertificateAuthority, FileStore
ca = CertificateAuthority(FileStore(sys.argv[1]), name="root")
ca.init()  # loads the CA the test created
ca.issue([sys.argv[2]], validity_days=int(sys.argv[3]), client=sys.argv[4] == "client")
"""


def issue_in_the_past(store: Path, name: str, days_ago: int, validity_days: int) -> None:
    """Run lacme's CA `days_ago` days back in time (libfaketime), as if it ran then."""
    issue_at(store, name, f"-{days_ago}d", validity_days)


def issue_at(
    store: Path, name: str, offset: str, validity_days: int, *, client: bool = False
) -> None:
    """Run lacme's CA with its clock moved by `offset` (`-80d`, `+2h`), as libfaketime does."""
    role = "client" if client else "server"
    arguments = [str(store), name, str(validity_days), role]
    done = subprocess.run(
        [require("faketime"), "-f", offset, sys.executable, "-c", _ISSUE, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def config_for(tmp_path: Path, stores: str) -> tuple[Path, Path]:
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "lacme-watch.yaml",
        f"state_dir: {tmp_path / 'state'}\nstores:\n{stores}"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    return config, log


def overdue(events: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(data(e)["domain"]): data(e) for e in events if e["type"] == "lacme.renewal_overdue"}


@pytest.fixture
def two_stores(tmp_path: Path) -> tuple[Path, Path]:
    """Two lacme stores with the same CA name, each holding a 90-day certificate issued 80
    days ago and a 6-day one issued 4 days ago."""
    paths = []
    for name in ("defaults", "third"):
        base = tmp_path / name
        CertificateAuthority(FileStore(base), name="root").init(cn=f"{name} CA")
        issue_in_the_past(base, f"ninety.{name}.example", 80, 90)
        issue_in_the_past(base, f"six.{name}.example", 4, 6)
        paths.append(base)
    return paths[0], paths[1]


def test_lacme_defaults_and_a_third_of_the_lifetime(
    cli: CliRunner, tmp_path: Path, two_stores: tuple[Path, Path], now: datetime
) -> None:
    defaults, third = two_stores
    config, log = config_for(
        tmp_path,
        f"  - {{type: lacme, path: {defaults}}}\n"
        f"  - {{type: lacme, path: {third}, renew_before: 33%}}\n",
    )

    code, events = watch(cli, config, log, "--now", now.isoformat())

    assert code == 0
    late = overdue(events)
    # lacme's RenewalManager renews 30 days before expiry: the 90-day one 20 days ago, the
    # 6-day one at every sweep since its issuance; `renew_before: 33%` renews the 90-day one
    # at 60.3 days and the 6-day one at 4.02 days, which with 14.4 hours of grace is not yet.
    assert sorted(late) == [
        "ninety.defaults.example",
        "ninety.third.example",
        "six.defaults.example",
    ]
    ninety = late["ninety.defaults.example"]
    expires = parse_time(str(ninety["expires_at"]))
    assert parse_time(str(ninety["renew_after"])) == expires - timedelta(days=30)
    assert ninety["policy"] == "lacme RenewalManager default days_before_expiry = 30"
    assert ninety["days_remaining"] == days_remaining(expires, now) in (9, 10)
    assert ninety["domains"] == ["ninety.defaults.example"]
    six = late["six.defaults.example"]
    assert six["renew_after"] == format_time(parse_time(str(six["not_before"])))
    third_ninety = late["ninety.third.example"]
    lifetime = parse_time(str(third_ninety["expires_at"])) - parse_time(
        str(third_ninety["not_before"])
    )
    assert third_ninety["policy"] == "renew_before = 33% of the lifetime left"
    assert (
        parse_time(str(third_ninety["renew_after"]))
        == parse_time(str(third_ninety["expires_at"])) - lifetime * 0.33
    )
    assert str(third_ninety["store"]).startswith("lacme:")

    # Once per certificate; the 6-day one under 33% is overdue a day later.
    assert watch(cli, config, log, "--now", now.isoformat()) == (0, [])
    code, events = watch(cli, config, log, "--now", (now + timedelta(days=1)).isoformat())
    assert sorted(overdue(events)) == ["six.third.example"]

    # Renewed (a fresh 90-day certificate): re-armed, nothing overdue for the new one.
    ca = CertificateAuthority(FileStore(defaults), name="root")
    ca.init()
    ca.issue(["ninety.defaults.example"], validity_days=90)
    code, events = watch(cli, config, log, "--now", (now + timedelta(days=1)).isoformat())
    assert "certificate_renewed" in kinds(events)
    assert overdue(events) == {}
    status = cli(
        "--config", str(config), "--now", (now + timedelta(days=1)).isoformat(), "status", "--json"
    )
    states = {row["name"]: row["state"] for row in status.json()["certificates"]}  # type: ignore[index]
    assert states["ninety.defaults.example"] == "ok"
    assert states["ninety.third.example"] == "overdue"
    # 70 days on, the renewed one is past lacme's point again: a new event for it.
    code, events = watch(cli, config, log, "--now", (now + timedelta(days=62)).isoformat())
    assert "ninety.defaults.example" in overdue(events)


def test_with_overdue_events_day_thresholds_can_go(
    cli: CliRunner, tmp_path: Path, two_stores: tuple[Path, Path], now: datetime
) -> None:
    defaults, _ = two_stores
    config, log = config_for(tmp_path, f"  - {{type: lacme, path: {defaults}}}\n")
    text = config.read_text() + "expiry:\n  thresholds_days: []\n  thresholds_percent: []\n"
    config.write_text(text)

    code, events = watch(cli, config, log, "--now", now.isoformat())

    assert code == 0
    assert sorted(kinds(events)) == [
        "renewal_overdue",
        "renewal_overdue",
    ]


def test_overdue_can_be_turned_off(
    cli: CliRunner, tmp_path: Path, two_stores: tuple[Path, Path], now: datetime
) -> None:
    defaults, third = two_stores
    config, log = config_for(
        tmp_path,
        f"  - {{type: lacme, path: {defaults}}}\n  - {{type: lacme, path: {third}}}\n",
    )
    config.write_text(config.read_text() + "expiry:\n  overdue: false\n")

    _, events = watch(cli, config, log, "--now", now.isoformat())

    assert "renewal_overdue" not in kinds(events)


def test_a_store_nobody_renews_automatically_says_renew_before_off(
    cli: CliRunner, tmp_path: Path, two_stores: tuple[Path, Path], now: datetime
) -> None:
    defaults, third = two_stores
    config, log = config_for(
        tmp_path,
        f"  - {{type: lacme, path: {defaults}, renew_before: off}}\n"
        f"  - {{type: lacme, path: {third}}}\n",
    )

    _, events = watch(cli, config, log, "--now", now.isoformat())

    assert sorted(overdue(events)) == ["ninety.third.example", "six.third.example"]


def test_a_client_only_then_server_only_certificate_is_an_urgent_change(
    cli: CliRunner, tmp_path: Path, now: datetime
) -> None:
    base = tmp_path / "ca-store"
    ca = CertificateAuthority(FileStore(base), name="root")
    ca.init(cn="Change CA")
    issue_at(base, "svc.example", "-2h", 30, client=True)
    config, log = config_for(tmp_path, f"  - {{type: lacme, path: {base}}}\n")
    watch(cli, config, log)

    issue_at(base, "svc.example", "-1h", 30)  # the same name, now server-only
    code, events = watch(cli, config, log)

    assert code == 0
    changed = [data(e) for e in events if e["type"] == "lacme.certificate_changed"]
    assert len(changed) == 1
    assert changed[0]["domain"] == "svc.example"
    # lacme's server certificates carry both usages: serverAuth was added
    assert changed[0]["changes"] == [
        {
            "field": "extended_key_usage",
            "before": ["clientAuth"],
            "after": ["clientAuth", "serverAuth"],
        }
    ]
    assert "certificate_renewed" in kinds(events)
    email = EmailSink("mail", sender="w@example.test", recipients=["ops@example.test"])
    envelopes = [from_json(json.dumps(e)) for e in events]
    assert "Changed by a renewal (1)" in str(email.compose(envelopes))

    # The same profile again: renewed, nothing changed.
    issue_at(base, "svc.example", "-45m", 30)
    code, events = watch(cli, config, log)
    assert "certificate_renewed" in kinds(events)
    assert "certificate_changed" not in kinds(events)

    # And back to client-only: serverAuth dropped, which breaks a TLS server: urgent.
    issue_at(base, "svc.example", "-30m", 30, client=True)
    _, events = watch(cli, config, log)
    changed = [data(e) for e in events if e["type"] == "lacme.certificate_changed"]
    assert changed[0]["changes"] == [
        {
            "field": "extended_key_usage",
            "before": ["clientAuth", "serverAuth"],
            "after": ["clientAuth"],
        }
    ]
    digest = email.compose([from_json(json.dumps(e)) for e in events])
    plain, html_body = digest.get_body(("plain",)), digest.get_body(("html",))
    assert plain is not None
    assert html_body is not None
    text = plain.get_content()
    assert text.splitlines()[2] == "A renewal dropped a name or key usage (1)"  # heads the digest
    assert "extended_key_usage  clientAuth, serverAuth  clientAuth" in text
    assert "<td style" in html_body.get_content()
    assert "<td" in html_body.get_content()

    # A different lifetime is a change too, unless ignored.
    issue_at(base, "svc.example", "+24d", 7, client=True)
    _, events = watch(cli, config, log)
    changed = [data(e) for e in events if e["type"] == "lacme.certificate_changed"]
    assert changed[0]["changes"] == [{"field": "lifetime", "before": "30d", "after": "7d"}]
    config.write_text(config.read_text() + "changes:\n  ignore: [lifetime]\n")
    issue_at(base, "svc.example", "+2d", 30, client=True)
    _, events = watch(cli, config, log)
    assert "certificate_renewed" in kinds(events)
    assert "certificate_changed" not in kinds(events)


def test_metrics_show_the_renewal_point_and_overdue(
    cli: CliRunner, tmp_path: Path, two_stores: tuple[Path, Path], now: datetime
) -> None:
    defaults, _ = two_stores
    textfile = tmp_path / "lacme_watch.prom"
    config, log = config_for(tmp_path, f"  - {{type: lacme, path: {defaults}}}\n")
    config.write_text(config.read_text() + f"metrics:\n  textfile: {textfile}\n")

    watch(cli, config, log, "--now", now.isoformat())

    lines = textfile.read_text().splitlines()
    overdue_lines = [x for x in lines if x.startswith("lacme_watch_certificate_renewal_overdue{")]
    assert len(overdue_lines) == 2
    assert all(line.endswith(" 1.0") for line in overdue_lines)
    assert (
        sum(x.startswith("lacme_watch_certificate_renew_after_timestamp_seconds{") for x in lines)
        == 2
    )
