"""End to end over stores written by the real lacme library: `watch --once` and its JSON lines."""

from __future__ import annotations

import ipaddress
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import trustme
from lacme import CertificateAuthority, FileStore

from lacme_watch.events.cloudevents import from_json, parse_time

from ..conftest import CliRunner, data, kinds, read_events, save_acme_cert, watch

SPEC_FIELDS = {
    "certificate_issued": {"domain", "domains", "expires_at"},
    "certificate_renewed": {"domain", "domains", "expires_at", "previous_expires_at"},
    "certificate_expiring": {"domain", "domains", "expires_at", "days_remaining"},
    "ca_initialized": {"cn", "expires_at"},
    "ca_certificate_issued": {"name", "names", "is_client", "expires_at"},
}


def test_a_lacme_store_through_its_lifecycle(
    cli: CliRunner,
    watched: tuple[Path, Path],
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
    acme_ca: trustme.CA,
    now: datetime,
) -> None:
    config, log = watched
    for name, days_left in (("five.example", 5), ("twenty.example", 20), ("sixty.example", 60)):
        save_acme_cert(
            file_store,
            acme_ca,
            [name, f"www.{name}"],
            not_before=now + timedelta(days=days_left - 90),
            not_after=now + timedelta(days=days_left),
        )
    lacme_ca.issue(["internal.example"], validity_days=30)

    # First pass: a baseline; reports the CA and what is expiring now, no issuance flood.
    code, events = watch(cli, config, log, "--now", now.isoformat())
    assert code == 0
    overdue = [data(e)["domain"] for e in events if e["type"] == "lacme.renewal_overdue"]
    assert overdue == ["five.example", "twenty.example"]  # past lacme's 30 days: see test_renewal
    events = classic(events)
    assert kinds(events) == ["ca_initialized", "certificate_expiring", "certificate_expiring"]
    ca_event, five, twenty = events
    assert data(ca_event)["cn"] == "Test Internal CA"
    assert (data(five)["domain"], data(five)["days_remaining"], data(five)["threshold"]) == (
        "five.example",
        5,
        "7d",
    )
    assert data(five)["domains"] == ["five.example", "www.five.example"]
    assert (data(twenty)["domain"], data(twenty)["threshold"]) == ("twenty.example", "33%")
    for event in events:
        assert SPEC_FIELDS[str(event["type"]).removeprefix("lacme.")] <= set(data(event))
        assert from_json(json.dumps(event)).id == event["id"]

    # Nothing changed: nothing is said.
    code, events = watch(cli, config, log, "--now", now.isoformat())
    assert (code, events) == (0, [])

    # Renew one with lacme's CA, issue a new one, save a newer ACME certificate.
    lacme_ca.issue(["internal.example"], validity_days=90)
    lacme_ca.issue(["client.example"], client=True, validity_days=7)
    save_acme_cert(
        file_store,
        acme_ca,
        ["five.example", "www.five.example"],
        not_before=now,
        not_after=now + timedelta(days=90),
    )
    code, events = watch(cli, config, log)
    assert code == 0
    events = classic(events)
    by_kind = {
        (kind, str(data(e).get("domain", data(e).get("name")))): e
        for kind, e in zip(kinds(events), events, strict=True)
    }
    assert sorted(by_kind) == [
        ("ca_certificate_issued", "client.example"),
        ("ca_certificate_issued", "internal.example"),
        ("certificate_issued", "client.example"),
        ("certificate_renewed", "five.example"),
        ("certificate_renewed", "internal.example"),
    ]
    renewal = data(by_kind[("certificate_renewed", "five.example")])
    assert parse_time(str(renewal["previous_expires_at"])) == now + timedelta(days=5)
    assert parse_time(str(renewal["expires_at"])) == now + timedelta(days=90)
    client = data(by_kind[("ca_certificate_issued", "client.example")])
    assert (client["names"], client["is_client"], client["ca"]) == (
        ["client.example"],
        True,
        "Test Internal CA",
    )
    assert by_kind[("ca_certificate_issued", "client.example")]["subject"] == "Test Internal CA"
    assert data(by_kind[("ca_certificate_issued", "internal.example")])["is_client"] is False

    # Ten days later: only thresholds newly crossed fire, each once.
    later = (now + timedelta(days=10)).isoformat()
    code, events = watch(cli, config, log, "--now", later)
    assert code == 0
    events = classic(events)
    crossed = sorted((str(data(e)["domain"]), str(data(e)["threshold"])) for e in events)
    assert crossed == [("client.example", "expired"), ("twenty.example", "14d")]
    code, events = watch(cli, config, log, "--now", later)
    assert (code, events) == (0, [])


def classic(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """Without the renewal-policy kinds, which tests/test_renewal*.py cover."""
    return [e for e in events if kinds([e])[0] not in ("renewal_overdue", "certificate_changed")]


def test_a_certificate_with_the_cas_name_but_another_key_is_not_the_cas(
    cli: CliRunner,
    watched: tuple[Path, Path],
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
    tmp_path: Path,
) -> None:
    config, log = watched
    watch(cli, config, log)
    impostor_store = FileStore(tmp_path / "impostor")
    impostor = CertificateAuthority(impostor_store, name="root")
    impostor.init(cn="Test Internal CA")  # the same name, another key
    impostor.issue(["forged.example"], validity_days=30)
    shutil.copytree(
        tmp_path / "impostor" / "certs" / "forged.example",
        file_store.base / "certs" / "forged.example",
    )
    lacme_ca.issue(["genuine.example"], validity_days=30)

    _, events = watch(cli, config, log)

    signed = [data(e)["name"] for e in events if e["type"] == "lacme.ca_certificate_issued"]
    issued = sorted(
        str(data(e)["domain"]) for e in events if e["type"] == "lacme.certificate_issued"
    )
    assert signed == ["genuine.example"]
    assert issued == ["forged.example", "genuine.example"]


def test_hashed_directories_tmp_leftovers_and_empty_keys_are_normal(
    cli: CliRunner,
    watched: tuple[Path, Path],
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
) -> None:
    config, log = watched
    watch(cli, config, log)
    lacme_ca.issue(["*.wild.example"], validity_days=30)
    lacme_ca.issue([ipaddress.ip_address("::1")], validity_days=30)
    certs = file_store.base / "certs"
    hashed = sorted(p.name for p in certs.iterdir() if p.name.startswith("lacme-v2-"))
    assert len(hashed) == 2
    (certs / "tmpab12cd34.tmp").write_bytes(b"half a certificate")
    (certs / hashed[0] / "tmp9f8e7d6c.tmp").write_bytes(b"")
    (certs / hashed[0] / "key.pem").write_bytes(b"")  # as issue_from_csr leaves it

    code, events = watch(cli, config, log)

    assert code == 0
    issued = sorted(
        str(data(e)["domain"]) for e in events if e["type"] == "lacme.certificate_issued"
    )
    assert issued == ["*.wild.example", "::1"]


def test_corrupt_metadata_is_reported_and_the_rest_of_the_store_still_watched(
    cli: CliRunner,
    watched: tuple[Path, Path],
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
) -> None:
    config, log = watched
    lacme_ca.issue(["good.example"], validity_days=30)
    lacme_ca.issue(["bad.example"], validity_days=30)
    watch(cli, config, log)
    (file_store.base / "certs" / "bad.example" / "meta.json").write_text("{truncated")
    lacme_ca.issue(["new.example"], validity_days=30)

    result = cli("--config", str(config), "watch", "--once")
    events = read_events(log)

    assert result.code == 1
    assert "bad.example/meta.json: bad_metadata" in result.err
    tail = [(str(e["type"]), data(e).get("domain") or data(e).get("reason")) for e in events[-3:]]
    assert ("lacme.certificate_unreadable", "bad_metadata") in tail
    assert ("lacme.certificate_issued", "new.example") in tail
    assert not any(e["type"] == "lacme.certificate_removed" for e in events)


def test_an_unreadable_store_keeps_its_inventory(
    cli: CliRunner,
    watched: tuple[Path, Path],
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
    store_dir: Path,
    tmp_path: Path,
) -> None:
    config, log = watched
    lacme_ca.issue(["kept.example"], validity_days=30)
    watch(cli, config, log)
    moved = tmp_path / "moved-away"
    store_dir.rename(moved)

    code, events = watch(cli, config, log)
    assert code == 1
    assert kinds(events) == ["certificate_unreadable", "certificate_unreadable"]
    assert all(data(e)["reason"] == "not_found" for e in events)

    moved.rename(store_dir)
    code, events = watch(cli, config, log)
    assert (code, events) == (0, [])


def test_first_pass_over_a_store_added_later_is_also_a_baseline(
    cli: CliRunner,
    watched: tuple[Path, Path],
    lacme_ca: CertificateAuthority,
    tmp_path: Path,
) -> None:
    config, log = watched
    lacme_ca.issue(["a.example"], validity_days=30)
    watch(cli, config, log)
    other = FileStore(tmp_path / "other")
    other_ca = CertificateAuthority(other, name="root")
    other_ca.init(cn="Other CA")
    other_ca.issue(["b.example"], validity_days=30)
    text = config.read_text().replace(
        "authorities:\n",
        f"authorities:\n  - type: lacme\n    path: {tmp_path / 'other'}\n    name: root\n",
    )
    config.write_text(text)

    code, events = watch(cli, config, log)
    assert code == 0

    assert kinds(events) == ["ca_initialized"]
    assert data(events[0])["cn"] == "Other CA"


def test_a_directory_without_meta_json_is_skipped_and_cert_pem_stands_in_for_fullchain(
    cli: CliRunner,
    watched: tuple[Path, Path],
    store_dir: Path,
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
    acme_ca: trustme.CA,
    now: datetime,
) -> None:
    config, log = watched
    for name in ("old.example", "inflight.example"):
        save_acme_cert(
            file_store,
            acme_ca,
            [name],
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=3),
        )
    (store_dir / "certs" / "old.example" / "fullchain.pem").unlink()  # as before lacme 0.x
    (store_dir / "certs" / "inflight.example" / "meta.json").unlink()  # a first write
    code, events = watch(cli, config, log, "--now", now.isoformat())
    assert code == 0
    watched_here = [e for e in events if str(data(e).get("lineage", "")).startswith("certs/")]
    assert {(data(e)["domain"], Path(str(data(e)["path"])).name) for e in watched_here} == {
        ("old.example", "cert.pem")
    }
    assert "certificate_unreadable" not in kinds(events)


def test_meta_json_escapes_are_decoded_and_a_lone_surrogate_is_refused(
    cli: CliRunner,
    watched: tuple[Path, Path],
    file_store: FileStore,
    lacme_ca: CertificateAuthority,
) -> None:
    """meta.json is kept as read when it holds no escape; one with escapes is decoded
    (and kept as dumped again), one whose escape is a lone surrogate is bad_metadata."""
    config, log = watched
    watch(cli, config, log)  # the baseline: what comes next is news
    for name in ("plain.example", "escaped.example", "surrogate.example"):
        lacme_ca.issue([name], validity_days=30)
    certs = file_store.base / "certs"
    (certs / "escaped.example" / "meta.json").write_text(
        '{"domain": "escaped.example", "domains": ["\\u0065scaped.example", "caf\\u00e9.example"]}'
    )
    (certs / "surrogate.example" / "meta.json").write_text(
        '{"domain": "surrogate.example", "domains": ["\\udcff.example"]}'
    )

    result = cli("--config", str(config), "watch", "--once")
    events = read_events(log)

    assert result.code == 1
    assert "surrogate.example/meta.json: bad_metadata" in result.err
    assert "\\udcff" in result.err
    issued = {
        str(data(e)["domain"]): data(e)["domains"]
        for e in events
        if e["type"] == "lacme.certificate_issued"
    }
    assert issued["escaped.example"] == ["escaped.example", "café.example"]
    assert issued["plain.example"] == ["plain.example"]
    assert "surrogate.example" not in issued
    # Its certificate rewritten as it was: meta.json's kept text is read back, the same names.
    fullchain = certs / "escaped.example" / "fullchain.pem"
    fullchain.write_bytes(fullchain.read_bytes())
    assert watch(cli, config, log) == (1, [])
