"""What compare() sees between two real certificates that differ in one promise each."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from lacme_watch.detection.changes import compare
from lacme_watch.observations import Observation
from lacme_watch.reading.certfacts import describe

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CA_KEY = ec.generate_private_key(ec.SECP384R1())
OTHER_CA_KEY = ec.generate_private_key(ec.SECP384R1())


def certificate(
    *,
    crl: bool = False,
    ocsp: str | None = None,
    must_staple: bool = False,
    digest: hashes.SHA256 | hashes.SHA384 | None = None,
    ca_key: ec.EllipticCurvePrivateKey = CA_KEY,
    leaf_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> x509.Certificate:
    key = leaf_key or ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Changes CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "c.example")]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("c.example")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if crl:
        point = x509.DistributionPoint(
            [x509.UniformResourceIdentifier("http://crl.example/ca.crl")], None, None, None
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    if must_staple:
        builder = builder.add_extension(
            x509.TLSFeature([x509.TLSFeatureType.status_request]), critical=False
        )
    return builder.sign(ca_key, digest or hashes.SHA256())


def observe(cert: x509.Certificate, chain_length: int = 2) -> Observation:
    facts = describe(cert)
    return Observation(
        lineage="c",
        role="leaf",
        path="/x/fullchain.pem",
        domain="c.example",
        domains=facts.names,
        certificate=facts,
        chain_length=chain_length,
    )


def fields(before: Observation, after: Observation) -> dict[str, tuple[object, object]]:
    return {c.field: (c.before, c.after) for c in compare(before, after)}


def test_an_identical_profile_is_no_change() -> None:
    assert compare(observe(certificate()), observe(certificate())) == []


def test_revocation_pointers_and_must_staple() -> None:
    plain = observe(certificate())
    pointed = observe(certificate(crl=True, ocsp="http://ocsp.example", must_staple=True))
    assert fields(plain, pointed) == {
        "crl_distribution_points": (False, True),
        "ocsp_url": ((), ("http://ocsp.example",)),
        "must_staple": (False, True),
    }


def test_signature_issuing_key_key_and_chain_length() -> None:
    before = observe(certificate())
    after = observe(
        certificate(
            digest=hashes.SHA384(),
            ca_key=OTHER_CA_KEY,
            leaf_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ),
        chain_length=3,
    )
    changed = fields(before, after)
    assert changed["signature_algorithm"] == ("ecdsa-with-SHA256", "ecdsa-with-SHA384")
    assert changed["key"] == ("ECDSA P-256", "RSA 2048")
    assert changed["chain_length"] == (2, 3)
    assert changed["issuer_key_id"][0] != changed["issuer_key_id"][1]
    assert set(changed) == {"signature_algorithm", "key", "chain_length", "issuer_key_id"}
    assert compare(before, after, ignore={"key", "chain_length"})[0].field == "signature_algorithm"


def test_facts_an_older_version_did_not_record_are_not_changes() -> None:
    old = observe(certificate())
    old = replace(old, certificate=replace(old.certificate, profile=None), chain_length=None)
    assert compare(old, observe(certificate(crl=True), chain_length=4)) == []
