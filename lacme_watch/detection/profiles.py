"""What an X.509 certificate promises its clients beyond names and dates: EKU, key,
signature algorithm, issuing key, revocation pointers. The reader keeps it with each
certificate; `changes.compare()` sets two of them side by side at a renewal. describe()
walks a certificate's extensions once and hands each its part here."""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from ..observations import Profile

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
# NIST names, as operators and `openssl x509 -text` say them
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_STATUS_REQUEST = 5  # RFC 7633 TLS Feature status_request: "must-staple"


def usage_names(value: x509.ExtendedKeyUsage) -> tuple[str, ...]:
    """The EKU as the profile names it: sorted names (dotted OIDs for the unnamed)."""
    return tuple(sorted(_EKU_NAMES.get(oid, oid.dotted_string) for oid in value))


def key_id_text(value: x509.AuthorityKeyIdentifier) -> str | None:
    key_id = value.key_identifier
    return key_id.hex(":").upper() if key_id else None


def ocsp_urls(value: x509.AuthorityInformationAccess) -> tuple[str, ...]:
    return tuple(
        str(access.access_location.value)
        for access in value
        if access.access_method == AuthorityInformationAccessOID.OCSP
    )


def is_must_staple(value: x509.TLSFeature) -> bool:
    return any(feature.value == _STATUS_REQUEST for feature in value)


@functools.lru_cache(maxsize=2048)
def profile(
    usages: tuple[str, ...],
    key: str,
    signature_algorithm: str,
    issuer_key_id: str | None,
    crl: bool,
    ocsp: tuple[str, ...],
    must_staple: bool,
) -> Profile:
    """One shared Profile for certificates that promise the same (most of a store)."""
    return Profile(
        extended_key_usage=usages,
        key=key,
        signature_algorithm=signature_algorithm,
        issuer_key_id=issuer_key_id,
        crl_distribution_points=crl,
        ocsp_urls=ocsp,
        must_staple=must_staple,
    )


def key_description(certificate: x509.Certificate, spki: bytes | None = None) -> str:
    """`ECDSA P-256`, `RSA 2048`, `Ed25519`: what the public key is (never the key).

    An ECDSA key on a NIST curve is read from its SubjectPublicKeyInfo DER when the
    caller has it (`public_key()` costs 5 µs, most of describing a leaf): the same
    text, with the same checks OpenSSL makes before cryptography hands out the key
    (see _curve_of). Any other key, or any doubt, asks cryptography."""
    if spki is not None and (curve := _curve_of(spki)) is not None:
        return f"ECDSA {curve}"
    try:
        key = certificate.public_key()
    except (ValueError, TypeError):  # an algorithm cryptography does not support
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


# SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier { id-ecPublicKey, namedCurve },
# BIT STRING (no unused bits) { 04 || X || Y } } (RFC 5480), as DER, by curve: its
# prefix up to X, then (name, field prime p, b of y^2 = x^3 - 3x + b) from FIPS 186-4.
_EC_PUBLIC_KEY = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"
_P256 = (2**256 - 2**224 + 2**192 + 2**96 - 1, 32)
_P384 = (2**384 - 2**128 - 2**96 + 2**32 - 1, 48)
_P521 = (2**521 - 1, 66)
_NIST_CURVES = {
    b"\x30\x59\x30\x13" + _EC_PUBLIC_KEY + b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"
    b"\x03\x42\x00\x04": (
        "P-256",
        *_P256,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    ),
    b"\x30\x76\x30\x10" + _EC_PUBLIC_KEY + b"\x06\x05\x2b\x81\x04\x00\x22\x03\x62\x00\x04": (
        "P-384",
        *_P384,
        int(
            "B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF",
            16,
        ),
    ),
    b"\x30\x81\x9b\x30\x10" + _EC_PUBLIC_KEY + b"\x06\x05\x2b\x81\x04\x00\x23"
    b"\x03\x81\x86\x00\x04": (
        "P-521",
        *_P521,
        int(
            "0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00",
            16,
        ),
    ),
}


def _curve_of(spki: bytes) -> str | None:
    """The NIST curve of an uncompressed ECDSA key whose point lies on it; None for any
    other key (cryptography is then asked). OpenSSL refuses a point whose coordinates
    are not below p or that is off the curve, and these curves have no other points
    outside the group (cofactor 1): what is accepted here, it accepts."""
    for prefix, (name, p, size, b) in _NIST_CURVES.items():
        if spki.startswith(prefix) and len(spki) == len(prefix) + 2 * size:
            at = len(prefix)
            x = int.from_bytes(spki[at : at + size], "big")
            y = int.from_bytes(spki[at + size :], "big")
            if x < p and y < p and (y * y - x * x * x + 3 * x - b) % p == 0:
                return name
            return None
    return None


def signature_name(certificate: x509.Certificate) -> str:
    oid = certificate.signature_algorithm_oid
    name = getattr(oid, "_name", "")  # cryptography's own short name, e.g. ecdsa-with-SHA384
    return name if name and name != "Unknown OID" else oid.dotted_string
