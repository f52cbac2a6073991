"""What an X.509 certificate promises its clients beyond names and dates: EKU, key,
signature algorithm, issuing key, revocation pointers. The reader keeps it with each
certificate; `changes.compare()` sets two of them side by side at a renewal."""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from .observations import Profile

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


def profile_of(certificate: x509.Certificate, extensions: x509.Extensions | None) -> Profile:
    """The profile of one certificate; malformed extensions leave their parts empty."""
    usages: tuple[str, ...] = ()
    issuer_key_id: str | None = None
    crl = False
    ocsp: tuple[str, ...] = ()
    must_staple = False
    for extension in extensions or ():
        value = extension.value
        if isinstance(value, x509.ExtendedKeyUsage):
            usages = tuple(sorted(_EKU_NAMES.get(oid, oid.dotted_string) for oid in value))
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
            must_staple = any(feature.value == _STATUS_REQUEST for feature in value)
    return _profile(
        usages,
        key_description(certificate),
        _signature(certificate),
        issuer_key_id,
        crl,
        ocsp,
        must_staple,
    )


@functools.lru_cache(maxsize=2048)
def _profile(
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


def key_description(certificate: x509.Certificate) -> str:
    """`ECDSA P-256`, `RSA 2048`, `Ed25519`: what the public key is (never the key)."""
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


def _signature(certificate: x509.Certificate) -> str:
    oid = certificate.signature_algorithm_oid
    name = getattr(oid, "_name", "")  # cryptography's own short name, e.g. ecdsa-with-SHA384
    return name if name and name != "Unknown OID" else oid.dotted_string
