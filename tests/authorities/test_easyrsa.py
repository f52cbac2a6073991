"""An easy-rsa PKI built, renewed and revoked with the real easy-rsa 3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lacme_watch.sources.authorities.easyrsa import parse_index, parse_time

from ..conftest import CliRunner, data, kinds, read_events
from .easyrsa_tool import easyrsa


@pytest.mark.acme
def test_a_pki_through_issue_renew_and_revoke(cli: CliRunner, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    easyrsa(pki, "init-pki")
    easyrsa(pki, "build-ca", "nopass", EASYRSA_REQ_CN="Test EasyRSA CA")
    easyrsa(pki, "build-server-full", "srv1.example.com", "nopass")
    easyrsa(pki, "build-client-full", "client1", "nopass")
    easyrsa(pki, "build-server-full", "short.example.com", "nopass", EASYRSA_CERT_EXPIRE="20")
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"authorities:\n  - type: easyrsa\n    path: {pki}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )

    def watch(*extra: str) -> list[dict[str, object]]:
        before = len(read_events(log))
        result = cli("--config", str(config), *extra, "watch", "--once")
        assert result.code == 0, result.err
        return read_events(log)[before:]

    first = watch()
    assert kinds(first) == ["ca_initialized"]
    assert first[0]["subject"] == "Test EasyRSA CA"

    easyrsa(pki, "build-server-full", "srv2.example.com", "nopass")
    easyrsa(pki, "renew", "srv1.example.com", "nopass", EASYRSA_CERT_RENEW="3650")
    easyrsa(pki, "revoke", "client1", "keyCompromise")
    second = watch()

    summary = sorted((str(e["type"]).removeprefix("lacme."), str(e["subject"])) for e in second)
    assert summary == [
        ("ca_certificate_issued", "Test EasyRSA CA"),
        ("ca_certificate_issued", "Test EasyRSA CA"),
        ("certificate_issued", "srv2.example.com"),
        ("certificate_renewed", "srv1.example.com"),
        ("certificate_revoked", "client1"),
    ]
    revoked = next(data(e) for e in second if e["type"] == "lacme.certificate_revoked")
    assert revoked["reason"] == "keyCompromise"
    assert "certificate_removed" not in kinds(second)

    assert watch() == []

    # index.txt still says V for an expired certificate: expiry is computed.
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    expiring = watch("--now", later)
    assert [(e["subject"], data(e)["threshold"]) for e in expiring] == [
        ("short.example.com", "expired")
    ]


def test_index_times_and_rows() -> None:
    assert parse_time("290224185209Z") == datetime(2029, 2, 24, 18, 52, 9, tzinfo=UTC)
    assert parse_time("500101000000Z").year == 1950
    assert parse_time("20510101000000Z").year == 2051
    rows = parse_index(
        "V\t290224185209Z\t\t05597BD312510DF9F9E2B64B82AF0099\tunknown\t/CN=srv1.example.com\n"
        "R\t261123185210Z\t261122185220Z,superseded\t99776561E8A60E39E09C7AF491A51736\tunknown"
        "\t/CN=short.example.com\n"
        "garbage line\n"
    )
    assert [(r.status, r.reason, r.common_name) for r in rows] == [
        ("V", "unspecified", "srv1.example.com"),
        ("R", "superseded", "short.example.com"),
    ]
