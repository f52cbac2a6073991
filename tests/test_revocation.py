"""Revocation from CRLs: easy-rsa's and `openssl ca`'s, served by a real HTTP server."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from lacme_watch.observations import Problem
from lacme_watch.sources.crl import CrlFetcher, MemoryCrlCache, RevocationOptions

from .authorities.easyrsa_tool import easyrsa
from .conftest import CliRunner, data, days, kinds, watch, write_config
from .hierarchy import CrlServer, OpenSslServer, certificate, crl, pem

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def crl_server() -> Iterator[CrlServer]:
    server = CrlServer()
    yield server
    server.stop()


def _config(
    tmp_path: Path, trust: Path, paths: str, *, per_store: bool = True
) -> tuple[Path, Path]:
    log = tmp_path / "events.jsonl"
    revocation = "    revocation: {crl: true}\n" if per_store else ""
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{trust}]\n"
        + ("" if per_store else "revocation: {crl: true, refresh: 6h}\n")
        + f"stores:\n  - type: pem\n    paths: ['{paths}']\n{revocation}"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    return config, log


def test_a_certificate_revoked_with_easyrsa_is_reported_once(
    cli: CliRunner, crl_server: CrlServer, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    easyrsa(pki, "init-pki")
    easyrsa(pki, "build-ca", "nopass", EASYRSA_REQ_CN="Test EasyRSA CA")
    crl_server.files["/vpn.crl"] = pki / "crl.pem"
    extension = f"crlDistributionPoints = URI:{crl_server.url('/vpn.crl')}"
    deployed = tmp_path / "deployed"
    deployed.mkdir()
    for name in ("vpn.example.com", "kept.example.com"):
        easyrsa(pki, "build-server-full", name, "nopass", EASYRSA_EXTRA_EXTS=extension)
        # The copy a server uses: `revoke` moves easy-rsa's own out of issued/.
        shutil.copy(pki / "issued" / f"{name}.crt", deployed / f"{name}.crt")
    easyrsa(pki, "gen-crl")
    config, log = _config(tmp_path, pki / "ca.crt", f"{deployed}/*.crt")

    assert watch(cli, config, log, "--now", NOW.isoformat()) == (0, [])
    assert crl_server.requests == [("/vpn.crl", None, 200)]  # one CRL, fetched once per pass

    easyrsa(pki, "revoke", "vpn.example.com", "keyCompromise")
    easyrsa(pki, "gen-crl")
    code, events = watch(cli, config, log, "--now", NOW.isoformat())

    assert (code, kinds(events)) == (0, ["certificate_revoked"])
    revoked = data(events[0])
    assert (revoked["domain"], revoked["reason"]) == ("vpn.example.com", "keyCompromise")
    assert revoked["path"] == str(deployed / "vpn.example.com.crt")
    assert str(revoked["revoked_at"]).startswith(datetime.now(UTC).strftime("%Y-%m-%d"))
    # Conditional (If-None-Match), and the CRL had changed.
    assert crl_server.requests[1][1] is not None
    assert crl_server.requests[1][2] == 200

    # The next pass: a conditional request, the CRL has not changed (304), nothing repeated.
    assert watch(cli, config, log, "--now", NOW.isoformat()) == (0, [])
    path, sent, status = crl_server.requests[2]
    assert (path, sent is not None, status) == ("/vpn.crl", True, 304)
    assert len(crl_server.requests) == 3


def _openssl(*arguments: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_certificate_revoked_with_openssl_ca_from_a_der_crl(
    cli: CliRunner, crl_server: CrlServer, tmp_path: Path
) -> None:
    ca = tmp_path / "ca"
    (ca / "newcerts").mkdir(parents=True)
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("1000\n")
    (ca / "crlnumber").write_text("01\n")
    crl_server.files["/ca.crl"] = ca / "crl.der"
    (ca / "ca.cnf").write_text(
        f"""[ca]
default_ca = own
[own]
dir = {ca}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 90
default_crl_days = 30
policy = any
x509_extensions = leaf
unique_subject = no
[any]
commonName = supplied
[leaf]
basicConstraints = CA:FALSE
subjectAltName = DNS:web.example.com
crlDistributionPoints = URI:{crl_server.url("/ca.crl")}
"""
    )
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "365",
        "-subj", "/CN=Test OpenSSL CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=ca,
    )  # fmt: skip
    _openssl(
        "req",
        "-new",
        *ec,
        "-keyout",
        "web.key",
        "-out",
        "web.csr",
        "-subj",
        "/CN=web.example.com",
        cwd=ca,
    )
    _openssl(
        "ca", "-config", "ca.cnf", "-batch", "-notext", "-in", "web.csr", "-out", "web.pem", cwd=ca
    )
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(ca / "web.pem", served / "web.pem")

    def publish() -> None:
        _openssl("ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem", cwd=ca)
        _openssl("crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der", cwd=ca)

    publish()
    config, log = _config(tmp_path, ca / "ca.pem", f"{served}/*.pem", per_store=False)
    assert watch(cli, config, log, "--now", NOW.isoformat()) == (0, [])

    _openssl(
        "ca",
        "-config",
        "ca.cnf",
        "-revoke",
        "web.pem",
        "-crl_reason",
        "cessationOfOperation",
        cwd=ca,
    )
    publish()
    code, events = watch(cli, config, log, "--now", (NOW + timedelta(hours=7)).isoformat())

    assert (code, kinds(events)) == (0, ["certificate_revoked"])
    assert (data(events[0])["domain"], data(events[0])["reason"]) == (
        "web.example.com",
        "cessationOfOperation",
    )
    assert watch(cli, config, log, "--now", (NOW + timedelta(hours=14)).isoformat()) == (0, [])
    assert [status for _, _, status in crl_server.requests] == [200, 200, 304]
    # With `refresh: 6h`, a pass within 6 hours of the last request asks nothing.
    assert watch(cli, config, log, "--now", (NOW + timedelta(hours=15)).isoformat()) == (0, [])
    assert len(crl_server.requests) == 3


def test_a_crl_signed_by_another_key_is_a_problem_not_a_revocation(
    cli: CliRunner, crl_server: CrlServer, tmp_path: Path
) -> None:
    root = certificate(
        "Test Root", issuer=None, not_before=NOW - days(100), not_after=NOW + days(900)
    )
    impostor = certificate(
        "Test Root", issuer=None, not_before=NOW - days(100), not_after=NOW + days(900)
    )
    leaf = certificate(
        "shop.example.com", issuer=root, ca=False, names=("shop.example.com",),
        not_before=NOW - days(5), not_after=NOW + days(85), crl_url=crl_server.url("/root.crl"),
    )  # fmt: skip
    forged = crl(impostor, [(leaf.certificate, x509.ReasonFlags.key_compromise)],
                 this_update=NOW - days(1), next_update=NOW + days(6))  # fmt: skip
    (tmp_path / "root.crl").write_bytes(forged)
    crl_server.files["/root.crl"] = tmp_path / "root.crl"
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "shop.pem").write_bytes(leaf.pem)
    config, log = _config(tmp_path, tmp_path / "root.pem", f"{tmp_path}/certs/*.pem")

    code, events = watch(cli, config, log, "--now", NOW.isoformat())

    assert (code, kinds(events)) == (1, ["certificate_unreadable"])
    problem = data(events[0])
    assert (problem["path"], problem["reason"]) == (crl_server.url("/root.crl"), "crl_unverified")
    # Still forged later: still a problem (exit 1), reported once.
    assert watch(cli, config, log, "--now", (NOW + timedelta(hours=7)).isoformat()) == (1, [])


def test_a_revoked_intermediate_is_a_chain_problem(
    cli: CliRunner, crl_server: CrlServer, tmp_path: Path
) -> None:
    root = certificate(
        "Test Root", issuer=None, not_before=NOW - days(100), not_after=NOW + days(900)
    )
    inter = certificate(
        "Test Intermediate", issuer=root, not_before=NOW - days(100), not_after=NOW + days(800),
        crl_url=crl_server.url("/root.crl"),
    )  # fmt: skip
    leaf = certificate(
        "shop.example.com", issuer=inter, ca=False, names=("shop.example.com",),
        not_before=NOW - days(5), not_after=NOW + days(85), crl_url=crl_server.url("/inter.crl"),
    )  # fmt: skip
    (tmp_path / "root.crl").write_bytes(
        crl(
            root,
            [(inter.certificate, x509.ReasonFlags.ca_compromise)],
            this_update=NOW - days(1),
            next_update=NOW + days(6),
        )
    )
    (tmp_path / "inter.crl").write_bytes(
        crl(inter, [], this_update=NOW - days(1), next_update=NOW + days(6))
    )
    crl_server.files["/root.crl"] = tmp_path / "root.crl"
    crl_server.files["/inter.crl"] = tmp_path / "inter.crl"
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "fullchain.pem").write_bytes(pem(leaf.certificate, inter.certificate))
    config, log = _config(tmp_path, tmp_path / "root.pem", f"{tmp_path}/live/fullchain.pem")

    code, events = watch(cli, config, log, "--now", NOW.isoformat())

    assert (code, kinds(events)) == (0, ["chain_problem"])
    assert data(events[0])["reason"] == "revoked"
    assert data(events[0])["certificate_subject"] == "CN=Test Intermediate"
    assert sorted(path for path, _, _ in crl_server.requests) == ["/inter.crl", "/root.crl"]


def test_a_revoked_certificate_served_by_an_endpoint(
    cli: CliRunner, crl_server: CrlServer, tmp_path: Path
) -> None:
    root = certificate(
        "Test Root", issuer=None, not_before=NOW - days(100), not_after=NOW + days(900)
    )
    inter = certificate(
        "Test Intermediate", issuer=root, not_before=NOW - days(100), not_after=NOW + days(800)
    )
    leaf = certificate(
        "api.example.com", issuer=inter, ca=False, names=("api.example.com",),
        not_before=NOW - days(5), not_after=NOW + days(85), crl_url=crl_server.url("/shard-7.crl"),
    )  # fmt: skip
    shard = crl(
        inter,
        [(leaf.certificate, x509.ReasonFlags.superseded)],
        this_update=NOW - days(1),
        next_update=NOW + days(6),
    )
    (tmp_path / "shard-7.crl").write_bytes(shard)
    crl_server.files["/shard-7.crl"] = tmp_path / "shard-7.crl"
    (tmp_path / "root.pem").write_bytes(root.pem)
    server = OpenSslServer(tmp_path / "served", leaf, [inter.certificate])
    try:
        log = tmp_path / "events.jsonl"
        config = write_config(
            tmp_path / "c.yaml",
            f"state_dir: {tmp_path / 'state'}\n"
            f"trust: [{tmp_path / 'root.pem'}]\n"
            f"stores:\n  - type: tls\n    endpoints: ['127.0.0.1:{server.port}/api.example.com']\n"
            "    revocation: {crl: true}\n"
            f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
        )
        code, events = watch(cli, config, log, "--now", NOW.isoformat())
    finally:
        server.stop()

    assert (code, kinds(events)) == (0, ["certificate_revoked"])
    revoked = data(events[0])
    assert (revoked["lineage"], revoked["reason"]) == (f"tls:127.0.0.1:{server.port}", "superseded")


def test_a_crl_too_large_missing_or_too_slow_is_unavailable(
    crl_server: CrlServer, tmp_path: Path
) -> None:
    root = certificate(
        "Test Root", issuer=None, not_before=NOW - days(10), not_after=NOW + days(90)
    )
    (tmp_path / "big.crl").write_bytes(
        crl(root, [], this_update=NOW - days(1), next_update=NOW + days(6))
    )
    crl_server.files["/big.crl"] = tmp_path / "big.crl"
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    options = RevocationOptions(crl=True, max_size=64, timeout=timedelta(seconds=1))
    fetcher = CrlFetcher(options, MemoryCrlCache(), NOW)
    try:
        found = {
            url: fetcher.crl(url)
            for url in (
                crl_server.url("/big.crl"),
                crl_server.url("/missing.crl"),
                f"http://127.0.0.1:{silent.getsockname()[1]}/slow.crl",
            )
        }
    finally:
        silent.close()

    details = [(p.reason, p.detail) for p in found.values() if isinstance(p, Problem)]
    assert details[0] == ("crl_unavailable", "larger than 64 bytes")
    assert details[1] == ("crl_unavailable", "HTTP 404")
    assert details[2][0] == "crl_unavailable"
    assert "timed out" in details[2][1]
    # Each URL once per pass, however many certificates name it.
    fetcher.crl(crl_server.url("/big.crl"))
    assert fetcher.requests == 3
