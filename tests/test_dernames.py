"""describe() reads names and keys from the DER and caches them by issuer, key and CA
fingerprint: its facts must be exactly what cryptography's own objects say."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lacme import CertificateAuthority, FileStore

from lacme_watch.detection.profiles import key_description
from lacme_watch.reading import certfacts, dernames
from lacme_watch.reading.certfacts import describe
from lacme_watch.reading.dernames import name_text, tbs_parts

from .acme import require

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KEY = ec.derive_private_key(0xBEEF, ec.SECP256R1())


def _clear_caches() -> None:
    for cache in (certfacts._CA_FACTS, certfacts._ISSUERS):
        cache.clear()


def _common_name(name: x509.Name) -> str | None:
    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else None


def assert_as_cryptography_says(certificate: x509.Certificate) -> None:
    """Every fact describe() reads its own way, against cryptography's objects; and
    the same facts again from the caches."""
    _clear_caches()
    fresh = describe(certificate)
    assert fresh.subject == certificate.subject.rfc4514_string()
    assert fresh.subject_cn == _common_name(certificate.subject)
    assert fresh.issuer == certificate.issuer.rfc4514_string()
    assert fresh.issuer_cn == _common_name(certificate.issuer)
    assert fresh.fingerprint == certificate.fingerprint(hashes.SHA256()).hex()
    assert fresh.profile is not None
    assert fresh.profile.key == key_description(certificate)
    assert describe(certificate) == fresh  # from the caches this time
    parts = tbs_parts(certificate)
    assert parts is not None
    assert parts.issuer == certificate.issuer.public_bytes()
    assert parts.subject == certificate.subject.public_bytes()


def _openssl(tmp_path: Path, name: str, *args: str) -> x509.Certificate:
    out = tmp_path / f"{name}.pem"
    subprocess.run(
        [require("openssl"), *args, "-out", str(out)], check=True, capture_output=True, cwd=tmp_path
    )
    return x509.load_pem_x509_certificate(out.read_bytes())


def _real_certificates(tmp_path: Path) -> list[x509.Certificate]:
    """trustme's, lacme's CA's, and openssl's: RSA, Ed25519, v1, multi-RDN, UTF-8, email."""
    ca = trustme.CA()
    leaf = ca.issue_cert("www.example.test", "203.0.113.9")
    found = [
        x509.load_pem_x509_certificate(ca.cert_pem.bytes()),
        *(x509.load_pem_x509_certificate(b.bytes()) for b in leaf.cert_chain_pems),
    ]
    lacme = CertificateAuthority(FileStore(tmp_path / "lacme"), name="root")
    lacme.init(cn="Test Internal CA", validity_days=3650)
    bundle = lacme.issue(["device-7.internal.test"], client=True)
    found += [x509.load_pem_x509_certificate(bundle.cert_pem)]
    found += [x509.load_pem_x509_certificate(lacme.root_cert_pem)]
    req = ["req", "-x509", "-utf8", "-nodes", "-keyout", "/dev/null", "-days", "30"]
    found.append(
        _openssl(
            tmp_path,
            "rsa",
            *req,
            "-newkey",
            "rsa:2048",
            "-subj",
            "/C=FR/ST=Île-de-France/O=Acme, Inc./OU=R\\+D/CN=#weird; name <x>"
            "/emailAddress=a@b.test",
        )
    )
    found.append(_openssl(tmp_path, "ed25519", *req, "-newkey", "ed25519", "-subj", "/CN=ed"))
    found.append(
        _openssl(
            tmp_path,
            "multivalued",
            *req,
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-multivalue-rdn",
            "-subj",
            "/DC=test/DC=example/O=Ops+OU=Certs/CN= spaced +CN=second ",
        )
    )
    subprocess.run(
        [
            *(require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:P-256", "-nodes", "-keyout", "v1.key", "-subj", "/CN=v1.test"),
            *("-out", "v1.csr"),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    found.append(
        _openssl(tmp_path, "v1", "x509", "-req", "-in", "v1.csr", "-key", "v1.key", "-days", "5")
    )
    return found


def test_real_certificates_are_described_as_cryptography_says(tmp_path: Path) -> None:
    certificates = _real_certificates(tmp_path)
    assert len(certificates) == 8
    for certificate in certificates:
        assert_as_cryptography_says(certificate)
    rsa = describe(certificates[-4])
    assert rsa.subject.startswith(
        "1.2.840.113549.1.9.1=a@b.test,CN=\\#weird\\; name \\<x\\>,OU=R\\+D,"
    )
    assert "ST=Île-de-France" in rsa.subject
    v1 = certificates[-1]
    assert v1.version == x509.Version.v1
    multivalued = describe(certificates[-2])
    assert multivalued.subject_cn == "second "  # the SET's first in DER order, as cryptography
    assert multivalued.subject.startswith("CN=second\\ +CN=\\ spaced\\ ,")


def test_one_issuer_is_read_once_for_all_it_signs() -> None:
    ca = trustme.CA()
    _clear_caches()
    leaves = [
        x509.load_pem_x509_certificate(
            ca.issue_cert(f"h{i}.example.test").cert_chain_pems[0].bytes()
        )
        for i in range(3)
    ]
    described = [describe(leaf) for leaf in leaves]
    assert len(certfacts._ISSUERS) == 1
    assert {facts.issuer for facts in described} == {leaves[0].issuer.rfc4514_string()}
    root = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    assert describe(root) is describe(root)  # a CA's facts are kept by fingerprint
    assert described[0].profile is described[2].profile  # one profile, shared
    assert described[0].profile is not None
    assert "serverAuth" in described[0].profile.extended_key_usage
    assert described[0].profile != describe(root).profile


def test_names_cryptography_must_print_itself_are_left_to_it() -> None:
    email = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.test")])
    bmp = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bmp", _ASN1Type.BMPString)])
    assert name_text(email.public_bytes()) is None
    assert name_text(bmp.public_bytes()) is None
    assert name_text(b"\x30\x05\x31\x03") is None  # cut short
    assert name_text(b"") is None
    # CN=a+CN=a, a repeated attribute in one RDN: cryptography raises for it (the file
    # is then bad_certificate), so it is left to cryptography, never printed here.
    cn_a = b"\x30\x08\x06\x03\x55\x04\x03\x0c\x01a"
    repeated = b"\x30\x16\x31\x14" + cn_a + cn_a
    assert name_text(repeated) is None
    assert name_text(b"\x30\x0c\x31\x0a" + cn_a) == ("CN=a", "a")


_SHORT = [
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.STREET_ADDRESS,
    NameOID.DOMAIN_COMPONENT,
    NameOID.USER_ID,
    NameOID.COUNTRY_NAME,
    NameOID.EMAIL_ADDRESS,  # no short name: cryptography prints it
    NameOID.SERIAL_NUMBER,
]
_TYPES = [
    _ASN1Type.UTF8String,
    _ASN1Type.PrintableString,
    _ASN1Type.IA5String,
    _ASN1Type.BMPString,
    _ASN1Type.UniversalString,
]
_PRINTABLE = "ABCxyz019 '()+,-./:=?"


@st.composite
def _attribute(draw: st.DrawFn) -> x509.NameAttribute[str]:
    oid = draw(st.sampled_from(_SHORT))
    kind = draw(st.sampled_from(_TYPES))
    if oid == NameOID.COUNTRY_NAME:
        value = draw(st.text(alphabet="ABFRUS", min_size=2, max_size=2))
    elif kind == _ASN1Type.PrintableString:
        value = draw(st.text(alphabet=_PRINTABLE, min_size=1, max_size=20))
    elif kind == _ASN1Type.IA5String:
        value = draw(st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=20))
    else:
        value = draw(st.text(min_size=1, max_size=20))
    assume(len(value.encode()) <= 64)
    return x509.NameAttribute(oid, value, kind)


_NAMES = st.lists(
    st.lists(_attribute(), min_size=1, max_size=3, unique=True).map(x509.RelativeDistinguishedName),
    max_size=4,
).map(x509.Name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=_NAMES, issuer=_NAMES)
def test_any_name_reads_as_cryptography_prints_it(subject: x509.Name, issuer: x509.Name) -> None:
    try:
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(KEY.public_key())
            .serial_number(7)
            .not_valid_before(NOW)
            .not_valid_after(NOW + timedelta(days=90))
            .sign(KEY, hashes.SHA256())
        )
    except ValueError:  # a string the encoder refuses for its type
        assume(False)
        return
    assert_as_cryptography_says(certificate)
    for name in (subject, issuer):  # plain names take the DER path, not cryptography's
        plain = all(a.oid in _SHORT[:-2] and a._type in _TYPES[:3] for a in name)
        assert (name_text(name.public_bytes()) is not None) == plain


def test_plain_values_are_the_ones_escaping_leaves_alone() -> None:
    """The quick look for values needing no escape admits exactly the characters it was
    checked for against cryptography's escaping, and no other (any code point)."""
    assert dernames._PLAIN is not None
    for code in range(0x110000):
        character = chr(code)
        if dernames._PLAIN.fullmatch(character):
            assert dernames._ESCAPE is not None
            assert dernames._ESCAPE(f"a{character}a") == f"a{character}a"
            assert dernames._ESCAPE(character) == character
