"""lacme_watch.testing: our own built-in sources pass the contract plugin authors get,
and the checks catch what they promise to catch."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lacme import CertificateAuthority, FileStore

from lacme_watch import CertificateReader, Envelope, Problem, ScanResult, SinkError
from lacme_watch.config import build
from lacme_watch.events import EVENT_TYPES
from lacme_watch.events.cloudevents import from_json, to_json
from lacme_watch.options import parse_yaml
from lacme_watch.plugins import BUILT_IN, GROUPS, Source
from lacme_watch.testing import (
    StaticSource,
    TlsServer,
    check_failing_sink,
    check_sink,
    check_source,
    sample_envelopes,
)

from .authorities.easyrsa_tool import easyrsa
from .conftest import days, save_acme_cert
from .hierarchy import certificate, crl

NOW = datetime.now(UTC).replace(microsecond=0)


def _leaf(ca: trustme.CA, name: str, days_left: int = 60) -> trustme.LeafCert:
    return ca.issue_cert(
        name,
        not_before=NOW - timedelta(days=90 - days_left),
        not_after=NOW + timedelta(days=days_left),
    )


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _certbot(tmp: Path) -> str:
    """certbot's layout: live/<name>/*.pem are links into archive/<name>/*N.pem."""
    leaf = _leaf(trustme.CA(), "cb.example.com")
    archive = tmp / "le" / "archive" / "cb.example.com"
    archive.mkdir(parents=True)
    (archive / "cert1.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (archive / "fullchain1.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    for name in ("cert", "fullchain"):
        _link(archive / f"{name}1.pem", tmp / "le" / "live" / "cb.example.com" / f"{name}.pem")
    (tmp / "le" / "renewal").mkdir()
    (tmp / "le" / "renewal" / "cb.example.com.conf").write_text("version = 2.1.0\n")
    log = tmp / "letsencrypt.log"
    log.write_text("2026-11-30 10:00:00,000:DEBUG:certbot._internal.main:certbot version\n")
    return f"type: certbot\npath: {tmp / 'le'}\nlog: {log}"


def _dehydrated(tmp: Path) -> str:
    """dehydrated's layout: <certs>/<domain>/fullchain.pem links to fullchain-<ts>.pem."""
    leaf = _leaf(trustme.CA(), "dh.example.com")
    directory = tmp / "certs" / "dh.example.com"
    directory.mkdir(parents=True)
    (directory / "fullchain-1764500000.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    _link(directory / "fullchain-1764500000.pem", directory / "fullchain.pem")
    return f"type: dehydrated\npath: {tmp / 'certs'}"


def _pem(tmp: Path) -> str:
    ca = trustme.CA()
    (tmp / "pem").mkdir()
    (tmp / "pem" / "a.pem").write_bytes(_leaf(ca, "a.example").cert_chain_pems[0].bytes())
    (tmp / "pem" / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    return f"type: pem\npaths: ['{tmp / 'pem'}/*.pem']"


def _lacme(tmp: Path) -> str:
    store = FileStore(tmp / "lacme")
    save_acme_cert(
        store, trustme.CA(), ["l.example.com"], not_before=NOW, not_after=NOW + timedelta(days=90)
    )
    return f"type: lacme\npath: {tmp / 'lacme'}"


def _lacme_ca(tmp: Path) -> str:
    ca = CertificateAuthority(FileStore(tmp / "lacme"), name="root")
    ca.init(cn="Contract CA", validity_days=3650)
    return f"type: lacme\npath: {tmp / 'lacme'}\nname: root"


def _easyrsa(tmp: Path) -> str:
    pki = tmp / "pki"
    easyrsa(pki, "init-pki")
    easyrsa(pki, "build-ca", "nopass", EASYRSA_REQ_CN="Contract EasyRSA CA")
    easyrsa(pki, "build-server-full", "e.example.com", "nopass")
    return f"type: easyrsa\npath: {pki}"


def _crl(tmp: Path) -> str:
    """A CRL file, as OpenVPN's crl-verify reads it (PEM)."""
    now = datetime.now(UTC)
    authority = certificate("Contract CRL CA", issuer=None, not_before=now, not_after=now + days(9))
    der = crl(authority, [], this_update=now, next_update=now + days(7))
    (tmp / "crl.pem").write_bytes(x509.load_der_x509_crl(der).public_bytes(Encoding.PEM))
    return f"type: crl\npaths: ['{tmp / 'crl.pem'}']"


@pytest.fixture(scope="module")
def served() -> Iterator[TlsServer]:
    leaf = _leaf(trustme.CA(), "svc.example.com")
    server = TlsServer(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())
    yield server
    server.stop()


Case = Callable[[Path, TlsServer], str]

STORES: dict[str, Case] = {
    "certbot": lambda tmp, _: _certbot(tmp),
    "crl": lambda tmp, _: _crl(tmp),
    "dehydrated": lambda tmp, _: _dehydrated(tmp),
    "lacme": lambda tmp, _: _lacme(tmp),
    "pem": lambda tmp, _: _pem(tmp),
    "tls": lambda _, tls: f"type: tls\nendpoints: ['127.0.0.1:{tls.port}/svc.example.com']",
}
AUTHORITIES: dict[str, Case] = {
    "easyrsa": lambda tmp, _: _easyrsa(tmp),
    "lacme": lambda tmp, _: _lacme_ca(tmp),
}


def _source(group: str, body: str) -> Source:
    item = "".join(f"    {line}\n" for line in body.splitlines()).replace("    ", "  - ", 1)
    config = build(parse_yaml(f"{group}:\n{item}", "c.yaml"), "c.yaml")
    return (*config.authorities, *config.stores)[0]


def test_every_built_in_source_has_a_contract_case() -> None:
    assert set(BUILT_IN[GROUPS["stores"]]) == set(STORES)
    assert set(BUILT_IN[GROUPS["authorities"]]) == set(AUTHORITIES)


@pytest.mark.parametrize("kind", sorted(STORES))
def test_every_built_in_store_keeps_the_source_contract(
    kind: str, tmp_path: Path, served: TlsServer
) -> None:
    scan = check_source(_source("stores", STORES[kind](tmp_path, served)))
    assert not scan.failed
    leaves = [o for o in scan.observations if o.role == "leaf"]
    assert leaves or scan.crls, "the case holds a certificate (or, for `crl`, a CRL)"


@pytest.mark.parametrize(
    "kind", [pytest.param("easyrsa", marks=pytest.mark.acme), pytest.param("lacme")]
)
def test_every_built_in_authority_keeps_the_source_contract(
    kind: str, tmp_path: Path, served: TlsServer
) -> None:
    scan = check_source(_source("authorities", AUTHORITIES[kind](tmp_path, served)))
    assert [o.role for o in scan.observations if o.role == "ca"] == ["ca"]


def test_a_missing_store_is_a_failed_scan_not_a_broken_contract(tmp_path: Path) -> None:
    scan = check_source(_source("stores", f"type: dehydrated\npath: {tmp_path / 'nothing'}"))
    assert scan.failed


def test_sample_envelopes_hold_every_kind_and_survive_the_wire() -> None:
    envelopes = sample_envelopes(NOW)
    assert [e.event.kind for e in envelopes] == list(EVENT_TYPES)
    assert [from_json(to_json(e)) for e in envelopes] == envelopes


# -- the checks catch what they promise -----------------------------------------------


class _RaisingSink:
    def __init__(self, name: str, error: Exception) -> None:
        self.name, self.error = name, error

    @classmethod
    def from_options(cls, name: str, options: object) -> _RaisingSink:
        raise NotImplementedError

    def deliver(self, events: Sequence[Envelope]) -> None:
        if events:
            raise self.error


def test_check_failing_sink_refuses_an_exception_that_escapes_the_outbox() -> None:
    with pytest.raises(AssertionError, match="must raise SinkError, not ValueError"):
        check_failing_sink(_RaisingSink("bad", ValueError("oops")))
    with pytest.raises(AssertionError, match="SinkError names 'other', not 'bad'"):
        check_failing_sink(_RaisingSink("bad", SinkError("other", "down")))


def test_check_sink_counts_what_arrived() -> None:
    with pytest.raises(AssertionError, match=r"delivered 0 of \d+ events"):
        check_sink(_Silent(), lambda: 0)


class _Silent:
    name = "silent"

    @classmethod
    def from_options(cls, name: str, options: object) -> _Silent:
        return cls()

    def deliver(self, events: Sequence[Envelope]) -> None:
        """Accepts everything and delivers nothing."""


def test_check_source_refuses_an_unknown_reason_and_a_stray_exception() -> None:
    bad = StaticSource("static:x", ScanResult(problems=(Problem("/x", "it broke"),)))
    with pytest.raises(AssertionError, match="unknown problem reason 'it broke'"):
        check_source(bad)

    class Crashing(StaticSource):
        def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
            raise KeyError("lineage")

    with pytest.raises(AssertionError, match="may raise SourceError, not KeyError"):
        check_source(Crashing("static:y"))
