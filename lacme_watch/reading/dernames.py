"""A certificate's issuer and subject as RFC 4514 text, and its public key's DER, read
from the to-be-signed bytes with a few tag-length steps: for describe(), the costly
part of describing a certificate otherwise.

cryptography builds a Name of Python objects at every `.issuer` or `.subject` (about
3 µs) and prints it in Python (about 4 µs more); one CA's issuer is the same bytes in
thousands of certificates, and most subjects are a few plain strings. Here a Name of
string attributes with short names (CN, O, OU, ...) is printed straight from its DER
with cryptography's own escaping; anything else (another attribute type, a BMPString,
a structure not seen before) returns None and the caller asks cryptography, so the
text is always what `Name.rfc4514_string()` says. The same steps find what a
signature check reads (chains.py). Pure: bytes in, text out.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509 import name as _cryptography_name

_ESCAPE: Callable[[str], str] | None = getattr(_cryptography_name, "_escape_dn_value", None)
"""The very function rfc4514_string() escapes with: the same text, version for version
(None if a later cryptography moves it: then every name goes the slow way)."""


def _plain_pattern(escape: Callable[[str], str] | None) -> re.Pattern[str] | None:
    """Values that escaping leaves as they are (host names, most words), so that
    escaping can be skipped for them: checked against cryptography's escaping itself,
    character by character and as a whole (None, and every value is escaped, if a
    later version escapes any of them)."""
    if escape is None:
        return None
    characters = string.ascii_letters + string.digits + ".-_*@:/"
    samples = [*characters, *(f"a{c}a" for c in characters), characters]
    if any(escape(sample) != sample for sample in samples):
        return None
    return re.compile(r"[A-Za-z0-9.\-_*@:/]+")  # the characters above, as ranges


_PLAIN = _plain_pattern(_ESCAPE)

_SEQUENCE, _SET, _OID, _VERSION = 0x30, 0x31, 0x06, 0xA0
# cryptography decodes these as UTF-8 (only BMPString and UniversalString differ)
_UTF8_STRINGS = frozenset({0x0C, 0x13, 0x16})  # UTF8String, PrintableString, IA5String
# RFC 4514's short names, as cryptography's _NAMEOID_TO_NAME has them, by OID DER
_SHORT_NAMES = {
    b"\x55\x04\x03": "CN",
    b"\x55\x04\x07": "L",
    b"\x55\x04\x08": "ST",
    b"\x55\x04\x0a": "O",
    b"\x55\x04\x0b": "OU",
    b"\x55\x04\x06": "C",
    b"\x55\x04\x09": "STREET",
    b"\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x19": "DC",
    b"\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x01": "UID",
}


@dataclass(frozen=True, slots=True)
class TbsParts:
    """The DER of three fields of a certificate's TBSCertificate (RFC 5280 4.1)."""

    issuer: bytes
    subject: bytes
    public_key: bytes
    """SubjectPublicKeyInfo."""


def tbs_parts(certificate: x509.Certificate, der: bytes | None = None) -> TbsParts | None:
    """Issuer, subject and key DER; None for a layout this walk does not expect.

    `der`, the certificate's own DER when the caller has it (decoded from its PEM), is
    walked in place: `tbs_certificate_bytes` encodes the TBSCertificate again (2 µs).
    cryptography parses strict DER only, so its encoding is those very bytes."""
    try:
        if der is None:
            tbs, at = certificate.tbs_certificate_bytes, 0
        else:  # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
            tbs = der
            tag, at, _ = _tlv(der, 0)
            if tag != _SEQUENCE:
                return None
        at = _past_serial(tbs, at)
        _, _, at = _tlv(tbs, at)  # signature AlgorithmIdentifier
        issuer, at = _element(tbs, at)
        _, _, at = _tlv(tbs, at)  # validity
        subject, at = _element(tbs, at)
        public_key, at = _element(tbs, at)
    except IndexError:
        return None
    if issuer[0] != _SEQUENCE or subject[0] != _SEQUENCE or public_key[0] != _SEQUENCE:
        return None
    return TbsParts(issuer, subject, public_key)


@dataclass(frozen=True, slots=True)
class SignedParts:
    """What checking a certificate's signature reads of its DER (RFC 5280 4.1)."""

    tbs: bytes
    """The TBSCertificate, as signed."""
    inner_algorithm: bytes
    """The TBSCertificate's `signature` AlgorithmIdentifier."""
    algorithm: bytes
    """The outer signatureAlgorithm: cryptography refuses a certificate whose two differ."""
    issuer: bytes


def signed_parts(der: bytes) -> SignedParts | None:
    """The signed bytes, both algorithm identifiers and the issuer Name of a
    certificate's DER; None for a layout this walk does not expect (the caller asks
    cryptography). A certificate cryptography loaded is strict DER: these are the very
    bytes it would encode again and verify."""
    try:
        tag, at, end = _tlv(der, 0)  # Certificate ::= SEQUENCE {
        if tag != _SEQUENCE or end != len(der):
            return None
        tbs, after = _element(der, at)  # tbsCertificate
        algorithm, after = _element(der, after)  # signatureAlgorithm
        inner_algorithm, inner = _element(tbs, _past_serial(tbs, 0))
        issuer, _ = _element(tbs, inner)
    except IndexError:
        return None
    if tbs[0] != _SEQUENCE or algorithm[0] != _SEQUENCE or issuer[0] != _SEQUENCE:
        return None
    return SignedParts(tbs, inner_algorithm, algorithm, issuer)


def _past_serial(tbs: bytes, at: int) -> int:
    """Where the TBSCertificate at `at` holds its signature AlgorithmIdentifier: past
    its header, its version ([0], absent for v1) and its serialNumber."""
    _, at, _ = _tlv(tbs, at)  # TBSCertificate ::= SEQUENCE {
    tag, _, at = _tlv(tbs, at)
    if tag == _VERSION:
        _, _, at = _tlv(tbs, at)  # serialNumber
    return at


def name_text(der: bytes) -> tuple[str, str | None] | None:
    """(RFC 4514 text, first common name) of a Name's DER, as cryptography prints it;
    None when cryptography must be asked (or the bytes are not a plain Name)."""
    if _ESCAPE is None:
        return None
    try:
        return _name_text(der, _ESCAPE)
    except (IndexError, UnicodeDecodeError):
        return None


def _name_text(der: bytes, escape: Callable[[str], str]) -> tuple[str, str | None] | None:
    tag, at, end = _tlv(der, 0)
    if tag != _SEQUENCE or end != len(der):
        return None
    relative: list[str] = []
    common_name: str | None = None
    while at < end:  # RDNSequence ::= SEQUENCE OF RelativeDistinguishedName
        tag, inner, at = _tlv(der, at)
        if tag != _SET or inner == at or at > end:
            return None
        attributes: list[str] = []
        while inner < at:  # SET OF AttributeTypeAndValue ::= SEQUENCE { type, value }
            tag, field, inner = _tlv(der, inner)
            if tag != _SEQUENCE or inner > at:
                return None
            tag, start, stop = _tlv(der, field)
            short = _SHORT_NAMES.get(der[start:stop]) if tag == _OID else None
            if short is None:
                return None
            tag, start, stop = _tlv(der, stop)
            if tag not in _UTF8_STRINGS or stop != inner:
                return None
            value = der[start:stop].decode("utf-8")
            if common_name is None and short == "CN":
                common_name = value
            plain = _PLAIN is not None and _PLAIN.fullmatch(value) is not None
            attributes.append(f"{short}={value if plain else escape(value)}")
        if len(set(attributes)) != len(attributes):
            return None  # a repeated attribute: cryptography refuses it, and so must we
        relative.append("+".join(attributes))
    relative.reverse()  # RFC 4514 2.1: the last RDN first
    return ",".join(relative), common_name


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, where the content starts, where it ends) of the element at `at`;
    IndexError when the bytes end first."""
    tag = der[at]
    length = der[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or at + count > len(der):
            raise IndexError("unsupported DER length")
        length = int.from_bytes(der[at : at + count], "big")
        at += count
    if at + length > len(der):
        raise IndexError("DER element runs past its container")
    return tag, at, at + length


def _element(der: bytes, at: int) -> tuple[bytes, int]:
    """The whole element at `at` (tag and length included), and where the next starts."""
    _, _, end = _tlv(der, at)
    return der[at:end], end
