"""CRL freshness: easy-rsa's crl.pem nearing nextUpdate, copies never deployed, the crl store."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .authorities.easyrsa_tool import easyrsa
from .conftest import CliRunner, data, days, kinds, watch, write_config
from .hierarchy import certificate, crl


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _next_second() -> None:
    """A CRL's thisUpdate has one-second resolution: a new CRL must be a later one."""
    started = datetime.now(UTC).second
    while datetime.now(UTC).second == started:
        time.sleep(0.05)


def test_a_two_day_easyrsa_crl_warns_once_per_threshold_and_rearms(
    cli: CliRunner, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    easyrsa(pki, "init-pki")
    easyrsa(pki, "build-ca", "nopass", EASYRSA_REQ_CN="Test VPN CA")
    easyrsa(pki, "gen-crl", EASYRSA_CRL_DAYS="2")
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"authorities:\n  - type: easyrsa\n    path: {pki}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    code, events = watch(cli, config, log, "--now", _at(0))
    assert (code, kinds(events)) == (0, ["ca_initialized"])

    # 2 days of validity: 33% left after 32 hours, 1 day left after 24 hours.
    code, events = watch(cli, config, log, "--now", _at(25))
    assert (code, kinds(events)) == (0, ["crl_expiring"])
    warning = data(events[0])
    assert (warning["authority"], warning["path"]) == ("Test VPN CA", str(pki / "crl.pem"))
    assert (warning["threshold"], warning["days_remaining"]) == ("1d", 0)
    assert events[0]["subject"] == "Test VPN CA"
    assert watch(cli, config, log, "--now", _at(26)) == (0, [])
    code, events = watch(cli, config, log, "--now", _at(44))
    assert [data(e)["threshold"] for e in events] == ["10%"]
    code, events = watch(cli, config, log, "--now", _at(49))
    assert [(data(e)["threshold"], data(e)["days_remaining"]) for e in events] == [("expired", -1)]

    # A new CRL re-arms every threshold.
    _next_second()
    easyrsa(pki, "gen-crl", EASYRSA_CRL_DAYS="2")
    assert watch(cli, config, log, "--now", _at(1)) == (0, [])
    code, events = watch(cli, config, log, "--now", _at(25))
    assert [data(e)["threshold"] for e in events] == ["1d"]


def test_a_deployed_copy_older_than_the_authoritys_crl_is_stale_once(
    cli: CliRunner, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    easyrsa(pki, "init-pki")
    easyrsa(pki, "build-ca", "nopass", EASYRSA_REQ_CN="Test VPN CA")
    easyrsa(pki, "build-client-full", "alice", "nopass")
    easyrsa(pki, "gen-crl")
    deployed = tmp_path / "openvpn" / "crl.pem"
    deployed.parent.mkdir()
    shutil.copy(pki / "crl.pem", deployed)
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"authorities:\n  - type: easyrsa\n    path: {pki}\n    deployed: [{deployed}]\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    assert kinds(watch(cli, config, log)[1]) == ["ca_initialized"]

    # alice is revoked and a new CRL generated, but nobody copies it to OpenVPN.
    easyrsa(pki, "revoke", "alice", "keyCompromise", EASYRSA_BATCH="1")
    _next_second()
    easyrsa(pki, "gen-crl")
    code, events = watch(cli, config, log)
    assert (code, sorted(kinds(events))) == (0, ["certificate_revoked", "crl_deployment_stale"])
    stale = data(next(e for e in events if e["type"] == "lacme.crl_deployment_stale"))
    assert (stale["deployed_path"], stale["current_path"]) == (str(deployed), str(pki / "crl.pem"))
    assert stale["authority"] == "Test VPN CA"
    assert watch(cli, config, log) == (0, [])

    shutil.copy(pki / "crl.pem", deployed)
    assert watch(cli, config, log) == (0, [])


def test_the_crl_store_watches_pem_and_der_files_by_glob(cli: CliRunner, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    authority = certificate(
        "Proxy CA", issuer=None, not_before=now - days(10), not_after=now + days(900)
    )
    crls = tmp_path / "crls"
    crls.mkdir()
    fresh = crl(authority, [], this_update=now - days(1), next_update=now + days(29), number=7)
    lapsing = crl(authority, [], this_update=now - days(38), next_update=now + days(2), number=6)
    (crls / "fresh.der").write_bytes(fresh)
    (crls / "lapsing.pem").write_bytes(x509.load_der_x509_crl(lapsing).public_bytes(Encoding.PEM))
    (crls / "broken.pem").write_bytes(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: crl\n    paths: ['{crls}/*']\n"
        f"metrics: {{textfile: {tmp_path / 'crl.prom'}}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    code, events = watch(cli, config, log, "--now", now.isoformat())

    assert (code, sorted(kinds(events))) == (1, ["certificate_unreadable", "crl_expiring"])
    expiring = data(next(e for e in events if e["type"] == "lacme.crl_expiring"))
    assert (expiring["path"], expiring["crl_number"]) == (str(crls / "lapsing.pem"), 6)
    assert (expiring["threshold"], expiring["days_remaining"]) == ("3d", 2)
    unreadable = data(next(e for e in events if e["type"] == "lacme.certificate_unreadable"))
    assert (unreadable["path"], unreadable["reason"]) == (str(crls / "broken.pem"), "bad_crl")
    assert watch(cli, config, log, "--now", now.isoformat()) == (1, [])

    status = cli("--config", str(config), "--now", now.isoformat(), "status", "--json")
    rows = {row["path"]: row for row in status.json()["crls"]}  # type: ignore[index]
    assert rows[str(crls / "fresh.der")]["number"] == 7
    assert rows[str(crls / "lapsing.pem")]["state"] == "expiring"

    metrics = (tmp_path / "crl.prom").read_text().splitlines()
    fresh_number = [m for m in metrics if m.startswith("x509_crl_number{") and "fresh.der" in m]
    assert len(fresh_number) == 1
    assert fresh_number[0].endswith(" 7.0")
    assert 'issuer_CN="Proxy CA"' in fresh_number[0]
    stale = [m for m in metrics if m.startswith("x509_crl_stale{")]
    assert sorted(m.rsplit(" ", 1)[1] for m in stale) == ["0.0", "0.0"]
    later = (now + days(3)).isoformat()
    cli("--config", str(config), "--now", later, "watch", "--once")
    stale = [m for m in (tmp_path / "crl.prom").read_text().splitlines() if "x509_crl_stale{" in m]
    assert any("lapsing.pem" in m and m.endswith(" 1.0") for m in stale)
