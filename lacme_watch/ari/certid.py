"""The ARI certificate identifier of RFC 9773 §4.1.

certID = base64url(AKI keyIdentifier) "." base64url(serial number's DER content bytes),
both without padding. The serial's DER bytes keep the leading zero a positive number
needs (0x87654321 is `00 87 65 43 21`), which is the part most APIs get wrong.
"""

from __future__ import annotations

import base64

from cryptography import x509


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def serial_der_bytes(serial: int) -> bytes:
    """The content octets of the DER INTEGER: minimal two's complement, big-endian."""
    if serial < 0:
        raise ValueError("a certificate serial number is positive")
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def make_cert_id(key_identifier: bytes, serial: int) -> str:
    """certID from the issuer's key identifier and the serial number."""
    return f"{_b64url(key_identifier)}.{_b64url(serial_der_bytes(serial))}"


def cert_id(certificate: x509.Certificate) -> str | None:
    """The certificate's ARI identifier, or None without an Authority Key Identifier
    keyIdentifier (RFC 9773 needs it; such a certificate has no renewal information)."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    key_identifier = extension.value.key_identifier
    if not key_identifier or certificate.serial_number < 0:
        return None  # a negative serial breaks RFC 5280; no CA would know it either
    return make_cert_id(key_identifier, certificate.serial_number)
