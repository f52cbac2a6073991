"""One malformed certificate is that file's `bad_certificate`, never the pass's exception.

The fuzz tests mutate real certificates (trustme's, lacme's, openssl's, as PEM and as
DER): byte flips, truncation, ASN.1 tag changes, insertions, and bytes that are not
UTF-8 in a name, so that the mutations reach cryptography's parser and `describe()`
rather than stopping at the base64 layer. Random bytes alone never get that far.
Each test runs a bounded number of examples; LACME_WATCH_FUZZ_EXAMPLES raises it for
a long hunt (the figures of the last one are in the README).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lacme import CertificateAuthority, FileStore

from lacme_watch.detection.chains import signs
from lacme_watch.observations import Problem
from lacme_watch.reading.reader import CertificateReader
from lacme_watch.testing import TlsServer

from .conftest import CliRunner
from .malformed import bad_subject_tag, bad_version, leaf_der, non_utf8_cn, openssl_der, to_pem

EXAMPLES = int(os.environ.get("LACME_WATCH_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Bytes at which DER has a tag worth changing: strings, integers, times, sequences, sets,
# explicit tags [0]..[3] (version, extensions), OIDs, BIT and OCTET STRINGs, BOOLEAN.
_TAGS = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x16, 0x17, 0x18, 0x1E, 0x30, 0x31]
_TAGS += [0x80, 0x81, 0x82, 0x87, 0xA0, 0xA1, 0xA2, 0xA3, 0x1F, 0xFF, 0x00, 0x14, 0x1C]


@cache
def corpus() -> tuple[bytes, ...]:
    """DER certificates from three real producers, each with its own odd corners."""
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"lacme-watch-fuzz-{os.getpid()}"
    work.mkdir(exist_ok=True)
    ca = trustme.CA()
    found = [
        leaf_der(ca, "www.example.test"),
        ca.cert_pem.bytes(),
        openssl_der(work),
    ]
    authority = CertificateAuthority(FileStore(work / "lacme"), name="root")
    authority.init(cn="Fuzz CA", validity_days=365)
    issued = authority.issue(["lacme.example", "*.lacme.example", "192.0.2.7"], validity_days=30)
    found.append(issued.cert_pem)
    ders = []
    for item in found:
        if item.startswith(b"-----BEGIN"):
            certificate = x509.load_pem_x509_certificate(item)
            item = certificate.public_bytes(serialization.Encoding.DER)
        ders.append(item)
    return tuple(ders)


@st.composite
def mutated_der(draw: st.DrawFn) -> bytes:
    der = bytearray(draw(st.sampled_from(corpus())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "tag", "truncate", "insert", "delete", "utf8"]))
        if not der:
            break
        at = draw(st.integers(0, len(der) - 1))
        if kind == "flip":
            der[at] ^= draw(st.integers(1, 255))
        elif kind == "tag":
            tagged = [i for i, byte in enumerate(der) if byte in _TAGS] or [at]
            der[draw(st.sampled_from(tagged))] = draw(st.sampled_from(_TAGS))
        elif kind == "truncate":
            del der[at:]
        elif kind == "insert":
            der[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del der[at : at + draw(st.integers(1, 8))]
        else:
            printable = [i for i, byte in enumerate(der) if 0x61 <= byte <= 0x7A] or [at]
            start = draw(st.sampled_from(printable))
            der[start : start + 2] = draw(st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xb3\xbf"]))
    return bytes(der)


def _assert_survives(path: Path) -> None:
    """Whatever the file holds: a tuple of facts or a Problem, and both storable as UTF-8."""
    reader = CertificateReader()
    found = reader.read_certificates(str(path))
    if isinstance(found, Problem):
        assert found.reason in {"bad_certificate", "bad_pem", "no_certificate_found"}, found
        return
    for facts in found:
        json.dumps(facts.to_json(), ensure_ascii=False).encode("utf-8")
    loaded = reader.load_certificates(str(path))
    assert isinstance(loaded, (list, Problem))
    bundle = reader.bundle(lineage="x", path=str(path))
    assert isinstance(bundle, (list, Problem))


@FUZZ
@given(der=mutated_der())
def test_mutated_der_never_escapes_the_reader(tmp_path: Path, der: bytes) -> None:
    path = tmp_path / "cert.der"
    path.write_bytes(der)
    _assert_survives(path)


@FUZZ
@given(der=mutated_der())
def test_a_mutated_certificate_is_verified_as_cryptography_verifies_it(der: bytes) -> None:
    """chains.signs() checks an ECDSA link from the DER itself: whatever a mutation left
    that cryptography still loads, its verdict against trustme's CA is cryptography's."""
    try:
        certificate = x509.load_der_x509_certificate(der)
    except Exception:  # not a certificate: nothing to verify
        return
    issuer = x509.load_der_x509_certificate(corpus()[1])
    try:
        certificate.verify_directly_issued_by(issuer)
        expected = True
    except Exception:
        expected = False
    assert signs(issuer, certificate, remember=False, der=der) is expected
    assert signs(issuer, certificate, remember=False) is expected


@FUZZ
@given(der=mutated_der(), extra=st.sampled_from([b"", b"text before\n"]), healthy=st.booleans())
def test_mutated_pem_never_escapes_the_reader(
    tmp_path: Path, der: bytes, extra: bytes, healthy: bool
) -> None:
    """The mutation sits inside valid base64, as a tool that wrote a bad certificate
    would leave it, alone or in a bundle after a healthy certificate."""
    good = to_pem(corpus()[0]) if healthy else b""
    path = tmp_path / "fullchain.pem"
    path.write_bytes(extra + good + to_pem(der))
    _assert_survives(path)


@FUZZ
@given(
    pem=st.sampled_from(range(4)).map(lambda index: to_pem(corpus()[index])),
    cut=st.integers(0, 2000),
    junk=st.binary(max_size=16),
)
def test_mutated_pem_text_never_escapes_the_reader(
    tmp_path: Path, pem: bytes, cut: int, junk: bytes
) -> None:
    """Damage to the PEM text itself: junk spliced in, a cut, a lost END line."""
    cut %= len(pem)
    path = tmp_path / "cert.pem"
    path.write_bytes(pem[:cut] + junk + pem[cut:])
    _assert_survives(path)


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (lambda der: bad_subject_tag(der, "bad.example"), "ValueError"),
        (lambda der: bad_version(der), "InvalidVersion"),
        (lambda der: non_utf8_cn(der, "bad.example"), "ValueError"),
    ],
    ids=["bad ASN.1 tag in the subject", "version 8", "non-UTF-8 CN"],
)
@pytest.mark.parametrize("encoding", ["pem", "der"])
def test_each_known_bad_certificate_is_a_bad_certificate(
    tmp_path: Path, damage: object, detail: str, encoding: str
) -> None:
    der = damage(leaf_der(trustme.CA(), "bad.example"))  # type: ignore[operator]
    path = tmp_path / f"cert.{encoding}"
    path.write_bytes(to_pem(der) if encoding == "pem" else der)

    found = CertificateReader().read_certificates(str(path))

    assert isinstance(found, Problem)
    assert found.reason == "bad_certificate"
    assert detail in found.detail


def test_one_bad_certificate_beside_a_healthy_store_blinds_nothing(
    tmp_path: Path, cli: CliRunner
) -> None:
    """The defect as found: one malformed certificate stopped every pass before it
    committed, so the certificate expiring in 5 days was never reported."""
    ca = trustme.CA()
    now = datetime.now(UTC)
    certs = tmp_path / "lacme" / "certs"
    soon = leaf_der(ca, "soon.example", not_after=now + timedelta(days=5))
    for key, der in [
        ("soon.example", soon),
        ("tag.example", bad_subject_tag(leaf_der(ca, "tag.example"), "tag.example")),
        ("version.example", bad_version(leaf_der(ca, "version.example"))),
        ("cn.example", non_utf8_cn(leaf_der(ca, "cn.example"), "cn.example")),
    ]:
        (certs / key).mkdir(parents=True)
        (certs / key / "cert.pem").write_bytes(to_pem(der))
        (certs / key / "fullchain.pem").write_bytes(to_pem(der) + ca.cert_pem.bytes())
        (certs / key / "meta.json").write_text(json.dumps({"domain": key, "domains": [key]}))
    events = tmp_path / "events.jsonl"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: lacme\n    path: {tmp_path / 'lacme'}\n"
        f"sinks:\n  - type: log\n    path: {events}\n    format: json\n"
    )

    watched = cli("--config", str(config), "watch", "--once")
    status = cli("--config", str(config), "status", "--json")
    check = cli("--config", str(config), "check")

    assert watched.code == 1, watched.err
    recorded = [json.loads(line) for line in events.read_text().splitlines()]
    expiring = [e["data"]["domain"] for e in recorded if e["type"] == "lacme.certificate_expiring"]
    unreadable = sorted(
        (e["data"]["path"].split("/")[-2], e["data"]["reason"])
        for e in recorded
        if e["type"] == "lacme.certificate_unreadable"
    )
    assert expiring == ["soon.example"]
    assert unreadable == [
        ("cn.example", "bad_certificate"),
        ("tag.example", "bad_certificate"),
        ("version.example", "bad_certificate"),
    ]
    assert status.code == 1
    shown = status.json()
    assert isinstance(shown, dict)
    assert [row["name"] for row in shown["certificates"] if row["role"] == "leaf"] == [
        "soon.example"
    ]
    assert {p["reason"] for p in shown["problems"]} == {"bad_certificate"}
    assert check.code == 2, check.out  # CRITICAL for the 5-day one, not UNKNOWN (3)
    assert check.out.startswith("LACME-WATCH CRITICAL")


def test_a_tls_endpoint_serving_a_malformed_intermediate_is_that_endpoints_problem(
    tmp_path: Path, cli: CliRunner
) -> None:
    """A real TLS server (OpenSSL serves it) whose chain holds a version-4 certificate."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("svc.example.com")
    der = x509.load_pem_x509_certificate(intermediate.cert_pem.bytes()).public_bytes(
        serialization.Encoding.DER
    )
    chain = leaf.cert_chain_pems[0].bytes() + to_pem(bad_version(der, 3))
    server = TlsServer(chain, leaf.private_key_pem.bytes())
    certs = tmp_path / "certs"
    certs.mkdir()
    soon = datetime.now(UTC) + timedelta(days=5)
    (certs / "soon.pem").write_bytes(
        root.issue_cert("soon.example", not_after=soon).cert_chain_pems[0].bytes()
    )
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: tls\n    endpoints: ['127.0.0.1:{server.port}/svc.example.com']\n"
        f"  - type: pem\n    paths: ['{certs}/*.pem']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    try:
        result = cli("--config", str(config), "watch", "--once")
    finally:
        server.stop()

    assert result.code == 1
    assert "not a valid X509 version" in result.err
    assert "source_error" not in result.err
    expiring = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["data"]["domain"] for e in expiring if e["type"].endswith("_expiring")] == [
        "soon.example"
    ]
