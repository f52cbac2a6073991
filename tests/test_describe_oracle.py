"""describe() and its payload line take short cuts (the DER decoded from the PEM is hashed
and walked in place, an ECDSA key is read from its SubjectPublicKeyInfo, extensions are
walked once, the JSON is written field by field): every fact, and every character of
the stored line, must be what the plain way with cryptography's objects gives. The plain
way is written out here, as it was before the short cuts, and is the oracle."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lacme_watch.detection.profiles import key_description
from lacme_watch.observations import CertificateFacts, Problem, Profile
from lacme_watch.reading import certfacts
from lacme_watch.reading.certfacts import describe, encode_one, parse_with_der
from lacme_watch.reading.dernames import tbs_parts

from .test_dernames import _real_certificates
from .test_reader_fuzz import corpus, mutated_der

NOW = datetime(2026, 6, 1, tzinfo=UTC)
_EKU = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _common_name(name: x509.Name) -> str | None:
    for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        return value if isinstance(value, str) else value.decode(errors="replace")
    return None


def _key(certificate: x509.Certificate) -> str:
    try:
        key = certificate.public_key()
    except (ValueError, TypeError):
        return "unknown"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def _profile(certificate: x509.Certificate, extensions: x509.Extensions | None) -> Profile:
    usages: tuple[str, ...] = ()
    issuer_key_id: str | None = None
    crl = must_staple = False
    ocsp: tuple[str, ...] = ()
    for extension in extensions or ():
        value = extension.value
        if isinstance(value, x509.ExtendedKeyUsage):
            usages = tuple(sorted(_EKU.get(oid, oid.dotted_string) for oid in value))
        elif isinstance(value, x509.AuthorityKeyIdentifier) and value.key_identifier:
            issuer_key_id = value.key_identifier.hex(":").upper()
        elif isinstance(value, x509.CRLDistributionPoints):
            crl = len(value) > 0
        elif isinstance(value, x509.AuthorityInformationAccess):
            ocsp = tuple(
                str(access.access_location.value)
                for access in value
                if access.access_method == AuthorityInformationAccessOID.OCSP
            )
        elif isinstance(value, x509.TLSFeature):
            must_staple = any(feature.value == 5 for feature in value)
    oid = certificate.signature_algorithm_oid
    name = getattr(oid, "_name", "")
    return Profile(
        extended_key_usage=usages,
        key=_key(certificate),
        signature_algorithm=name if name and name != "Unknown OID" else oid.dotted_string,
        issuer_key_id=issuer_key_id,
        crl_distribution_points=crl,
        ocsp_urls=ocsp,
        must_staple=must_staple,
    )


def oracle(certificate: x509.Certificate) -> CertificateFacts:
    """The facts, every one asked of cryptography's own objects."""
    try:
        extensions: x509.Extensions | None = certificate.extensions
    except ValueError:
        extensions = None
    names: tuple[str, ...] = ()
    is_ca = False
    usages: set[x509.ObjectIdentifier] = set()
    for extension in extensions or ():
        value = extension.value
        if isinstance(value, x509.SubjectAlternativeName):
            dns = value.get_values_for_type(x509.DNSName)
            ips = [str(ip) for ip in value.get_values_for_type(x509.IPAddress)]
            names = (*dns, *ips)
        elif isinstance(value, x509.BasicConstraints):
            is_ca = value.ca
        elif isinstance(value, x509.ExtendedKeyUsage):
            usages = set(value)
    subject, issuer = certificate.subject, certificate.issuer
    subject_cn = _common_name(subject)
    if not names and subject_cn:
        names = (subject_cn,)
    serial = certificate.serial_number
    text = f"{abs(serial):X}"
    text = text if len(text) % 2 == 0 else "0" + text
    return CertificateFacts(
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        serial=text if serial >= 0 else "-" + text,
        subject=subject.rfc4514_string(),
        subject_cn=subject_cn,
        issuer=issuer.rfc4514_string(),
        issuer_cn=_common_name(issuer),
        names=names,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        is_ca=is_ca,
        is_client=(
            ExtendedKeyUsageOID.CLIENT_AUTH in usages
            and ExtendedKeyUsageOID.SERVER_AUTH not in usages
        ),
        profile=_profile(certificate, extensions),
    )


def oracle_line(facts: CertificateFacts) -> str:
    """The payload line as json.dumps writes it."""
    names = json.dumps(facts.names, ensure_ascii=False)
    raw = json.dumps(facts.to_json(), ensure_ascii=False)
    ca = "ca" if facts.is_ca else ""
    return f"{facts.fingerprint}\t{facts.signed_by or ''}\t{ca}\t{names}\t{raw}"


def _outcome(call: object) -> object:
    try:
        return call() if callable(call) else call
    except Exception as exc:  # the reader reports type and message: both must agree
        return (type(exc).__name__, str(exc))


def assert_as_oracle_says(certificate: x509.Certificate, der: bytes) -> None:
    for cache in (certfacts._CA_FACTS, certfacts._ISSUERS):
        cache.clear()
    expected = _outcome(lambda: oracle(certificate))
    assert _outcome(lambda: describe(certificate, der)) == expected
    assert _outcome(lambda: describe(certificate)) == expected
    if isinstance(expected, CertificateFacts):
        assert encode_one(expected) == oracle_line(expected)
        signed = dataclasses.replace(expected, signed_by="ab" * 32)
        assert encode_one(signed) == oracle_line(signed)


def test_real_certificates_read_as_the_oracle_says(tmp_path: Path) -> None:
    """trustme's, lacme's, openssl's (RSA, Ed25519, P-384, v1, UTF-8 names), as their DER."""
    for certificate in _real_certificates(tmp_path):
        assert_as_oracle_says(certificate, certificate.public_bytes(serialization.Encoding.DER))


def test_pem_gives_each_certificate_with_its_own_der() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("www.example.test")
    pem = b"".join(block.bytes() for block in leaf.cert_chain_pems) + ca.cert_pem.bytes()
    parsed = parse_with_der("fullchain.pem", pem)
    assert not isinstance(parsed, Problem)
    assert len(parsed) == 2
    for certificate, der in parsed:
        assert der == certificate.public_bytes(serialization.Encoding.DER)
        assert_as_oracle_says(certificate, der)


def test_a_bundles_chain_is_decoded_once_for_every_bundle() -> None:
    """The intermediate every fullchain.pem of a CA carries: one certificate object for
    all of them; its leaf, and a damaged copy of it, each read for themselves."""
    ca = trustme.CA()
    intermediate = ca.create_child_ca()
    pems = [
        b"".join(block.bytes() for block in intermediate.issue_cert(f"h{i}.test").cert_chain_pems)
        for i in range(2)
    ]
    first, second = _parsed(pems[0]), _parsed(pems[1])
    assert first[1][0] is second[1][0]
    assert first[0][0] != second[0][0]
    assert [der for _, der in second] == [
        c.public_bytes(serialization.Encoding.DER) for c, _ in second
    ]
    damaged = pems[1].replace(b"\n", b"\n!", 40)  # in the leaf and the intermediate's block
    found = parse_with_der("fullchain.pem", damaged)
    assert isinstance(found, Problem)
    assert found.reason == "bad_pem"
    leaf_only = pems[1].split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    chain_block = pems[1][len(leaf_only) :]
    broken = leaf_only + chain_block.replace(b"\n", b"\n!", 3)
    found = parse_with_der("fullchain.pem", broken)
    assert isinstance(found, Problem)
    assert found.detail.startswith("certificate block 2")


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(der=mutated_der())
def test_mutated_certificates_read_as_the_oracle_says(der: bytes) -> None:
    """Byte flips, tag changes, cuts and odd strings in real certificates: whatever
    cryptography still loads is described as the oracle says, or fails the same way."""
    try:
        certificate = x509.load_der_x509_certificate(der)
    except Exception:  # ValueError, InvalidVersion: not loaded, the reader's bad_certificate
        return
    assert_as_oracle_says(certificate, der)


_PRIMES = {
    "secp256r1": 2**256 - 2**224 + 2**192 + 2**96 - 1,
    "secp384r1": 2**384 - 2**128 - 2**96 + 2**32 - 1,
    "secp521r1": 2**521 - 1,
}
_CURVE_CHOICES = [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()]


@FUZZ
@given(
    curve=st.sampled_from(_CURVE_CHOICES),
    seed=st.integers(1, 2**128),
    flip=st.one_of(st.none(), st.tuples(st.integers(0, 200), st.integers(1, 255))),
    compressed=st.booleans(),
    overflow=st.booleans(),
)
def test_ec_keys_are_named_as_cryptography_loads_them(
    curve: ec.EllipticCurve,
    seed: int,
    flip: tuple[int, int] | None,
    compressed: bool,
    overflow: bool,
) -> None:
    """The key read from the SubjectPublicKeyInfo is cryptography's, point by point: a
    point off the curve, a coordinate not below p, a compressed or cut point."""
    signer = ec.derive_private_key(0xC0FFEE, ec.SECP256R1())
    key = ec.derive_private_key(seed, curve).public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "key.test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key)
        .serial_number(seed)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
        .sign(signer, hashes.SHA256())
    )
    der = bytearray(certificate.public_bytes(serialization.Encoding.DER))
    point = key.public_bytes(
        serialization.Encoding.X962,
        serialization.PublicFormat.UncompressedPoint,
    )
    at = der.find(point)
    if compressed:
        short = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        der[at : at + len(point)] = short + bytes(len(point) - len(short))
    if flip is not None:
        offset, mask = flip
        der[at + offset % len(point)] ^= mask
    size = (len(point) - 1) // 2
    prime = _PRIMES.get(curve.name)
    if overflow and prime is not None:  # x + p: the same point modulo p, but not below p
        x = int.from_bytes(point[1 : 1 + size], "big") + prime
        if x < 256**size:  # always on P-521 (p = 2^521 - 1 in 66 bytes)
            der[at + 1 : at + 1 + size] = x.to_bytes(size, "big")
    try:
        mutated = x509.load_der_x509_certificate(bytes(der))
    except ValueError:
        return
    parts = tbs_parts(mutated, bytes(der))
    assert parts is not None
    assert key_description(mutated, parts.public_key) == _key(mutated)
    assert_as_oracle_says(mutated, bytes(der))


def test_every_corpus_certificate_reads_as_the_oracle_says() -> None:
    for der in corpus():
        assert_as_oracle_says(x509.load_der_x509_certificate(der), der)


def test_facts_come_back_from_the_child_as_they_left() -> None:
    """forked.py's child pickles what it read: equal facts, and a cached file's
    StoredFacts still undecoded (its JSON is decoded where it is used, if ever)."""
    ca = trustme.CA()
    pem = ca.issue_cert("www.example.test").cert_chain_pems[0].bytes()
    ((certificate, der),) = _parsed(pem)
    facts = describe(certificate, der)
    back = _round_trip(facts)
    assert back == facts
    assert type(back) is CertificateFacts
    (stored,) = certfacts.decode_facts(encode_one(facts))
    lazy = _round_trip(stored)
    assert type(lazy) is certfacts.StoredFacts
    with pytest.raises(AttributeError):
        object.__getattribute__(lazy, "serial")  # not decoded on the way
    assert lazy == facts
    assert _round_trip(lazy) == facts  # decoded now


def _round_trip(facts: CertificateFacts) -> CertificateFacts:
    found: CertificateFacts = pickle.loads(pickle.dumps(facts, pickle.HIGHEST_PROTOCOL))  # noqa: S301  # our own bytes
    return found


def _parsed(pem: bytes) -> list[tuple[x509.Certificate, bytes]]:
    parsed = parse_with_der("cert.pem", pem)
    assert not isinstance(parsed, Problem)
    return parsed


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=40) | st.text("AZaz09+/= \t\n\r\f\v-#~é", max_size=40).map(str.encode)
)
def test_a_pem_body_looks_corrupt_as_the_pattern_says(body: bytes) -> None:
    """Deleting the base64 bytes and whitespace leaves something exactly when the old
    pattern (base64 alphabet and \\s) did not match the whole body."""
    assert certfacts._looks_corrupt(body) is (re.fullmatch(rb"[A-Za-z0-9+/=\s]*", body) is None)
