"""What a certificate file's bytes say: certificate blocks found in PEM (never a key
block: its body is not even copied out) or DER, parsed by cryptography, and described
as the facts every source reports. Pure: bytes in, facts out."""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .dernames import TbsParts, name_text, tbs_parts
from .observations import CertificateFacts, Problem
from .profiles import profile_of

_T = TypeVar("_T")

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
# Only certificate blocks are captured: a key block's body is never copied out of the
# file's bytes, decoded or kept. A body holds no '-', so a block cannot swallow another.
_CERTIFICATE_BLOCK = re.compile(
    rb"-----BEGIN (CERTIFICATE|X509 CERTIFICATE)-----([^-]*)-----END \1-----"
)
_CERTIFICATE_LABELS = frozenset({b"CERTIFICATE", b"X509 CERTIFICATE"})
# privkey.pem, key.pem, privkey-1700000000.pem, server.key, tls-key.pem, private_key.json,


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


FACTS_VERSION = "3"
"""Bumped when describe() learns more, or the payload's layout changes: files cached by
an older version are parsed again."""


def signers_digest(signers: Sequence[x509.Certificate]) -> str:
    """Names the set of CA certificates that `signed_by` was computed against (and the
    facts version, so a cache from before profiles is not reused)."""
    text = FACTS_VERSION + "".join(sorted(fingerprint(s) for s in signers))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(certificate: x509.Certificate) -> CertificateFacts:
    """The facts lacme-watch keeps about a certificate.

    A CA certificate rides in every bundle its CA issued: its facts are kept, by
    fingerprint, for the next file that holds it. Names and keys go through dernames
    and the caches below; the facts are the same as cryptography's objects give."""
    digest = certificate.fingerprint(hashes.SHA256())
    known = _CA_FACTS.get(digest)
    if known is not None:
        return known
    facts = _describe(certificate, digest.hex())
    if facts.is_ca:
        _remember(_CA_FACTS, digest, facts)
    return facts


def _describe(certificate: x509.Certificate, fingerprint_hex: str) -> CertificateFacts:
    try:
        extensions: x509.Extensions | None = certificate.extensions
    except ValueError:  # duplicate or malformed extensions: judge the rest of the certificate
        extensions = None
    names: tuple[str, ...] = ()
    is_ca = False
    usages: set[x509.ObjectIdentifier] = set()
    if extensions is not None:
        for extension in extensions:
            value = extension.value
            if isinstance(value, x509.SubjectAlternativeName):
                dns = value.get_values_for_type(x509.DNSName)
                ips = [str(ip) for ip in value.get_values_for_type(x509.IPAddress)]
                names = (*dns, *ips)
            elif isinstance(value, x509.BasicConstraints):
                is_ca = value.ca
            elif isinstance(value, x509.ExtendedKeyUsage):
                usages = set(value)
    parts = tbs_parts(certificate)
    subject, subject_cn = _subject(certificate, parts)
    issuer, issuer_cn = _issuer(certificate, parts)
    if not names and subject_cn:
        names = (subject_cn,)
    return CertificateFacts(
        fingerprint=fingerprint_hex,
        serial=_serial_hex(certificate.serial_number),
        subject=subject,
        subject_cn=subject_cn,
        issuer=issuer,
        issuer_cn=issuer_cn,
        names=names,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        is_ca=is_ca,
        is_client=(
            ExtendedKeyUsageOID.CLIENT_AUTH in usages
            and ExtendedKeyUsageOID.SERVER_AUTH not in usages
        ),
        profile=profile_of(certificate, extensions),
    )


_CACHED = 2048
"""Entries per cache below, each a few hundred bytes: then it starts again."""
_CA_FACTS: dict[bytes, CertificateFacts] = {}
"""SHA-256 -> facts of CA certificates (intermediates repeat in every fullchain.pem)."""
_ISSUERS: dict[bytes, tuple[str, str | None]] = {}
"""Issuer Name DER -> its text and common name: one CA's is the same in all it signs."""


def _remember(cache: dict[bytes, _T], key: bytes, value: _T) -> None:
    if len(cache) >= _CACHED:
        cache.clear()  # bounded: a store of many issuers costs a few misses, never memory
    cache[key] = value


def _subject(certificate: x509.Certificate, parts: TbsParts | None) -> tuple[str, str | None]:
    found = name_text(parts.subject) if parts is not None else None
    if found is None:
        subject = certificate.subject  # each access builds the Name again: once
        found = subject.rfc4514_string(), _common_name(subject)
    return found


def _issuer(certificate: x509.Certificate, parts: TbsParts | None) -> tuple[str, str | None]:
    if parts is None:
        issuer = certificate.issuer
        return issuer.rfc4514_string(), _common_name(issuer)
    found = _ISSUERS.get(parts.issuer)
    if found is None:
        found = name_text(parts.issuer)
        if found is None:
            issuer = certificate.issuer
            found = issuer.rfc4514_string(), _common_name(issuer)
        _remember(_ISSUERS, parts.issuer, found)
    return found


def verifies(certificate: x509.Certificate, signer: x509.Certificate) -> bool:
    """Issuer name and signature both check out against the CA's public key."""
    try:
        certificate.verify_directly_issued_by(signer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    except Exception:  # an odd algorithm or encoding: simply not this CA's
        return False
    return True


def bad_certificate(path: str, exc: BaseException, where: str = "") -> Problem:
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return Problem(path, "bad_certificate", f"{where}{type(exc).__name__}: {detail}".rstrip(": "))


def parse_pem_or_der(path: str, content: bytes) -> list[x509.Certificate] | Problem:
    if not content.strip():
        return Problem(path, "no_certificate_found", "empty file")
    if b"-----BEGIN" in content:
        return _parse_pem(path, content)
    return _load_der(path, content, "", not_der="neither PEM nor a DER certificate")


def _load_der(
    path: str, der: bytes, where: str, *, not_der: str | None
) -> list[x509.Certificate] | Problem:
    """One DER certificate. Bytes that start like one (an ASN.1 SEQUENCE) but do not
    parse are a `bad_certificate`; others, when `not_der` says so, no certificate at all."""
    try:
        return [x509.load_der_x509_certificate(der)]
    except Exception as exc:  # ValueError, InvalidVersion, ...: this file's
        if not_der is not None and der[:1] != b"\x30":
            return Problem(path, "no_certificate_found", not_der)
        return bad_certificate(path, exc, where)


def _parse_pem(path: str, content: bytes) -> list[x509.Certificate] | Problem:
    """Certificates from every CERTIFICATE block; text around blocks is ignored (easy-rsa)."""
    labels = _PEM_BEGIN.findall(content)
    begun = [label for label in labels if label in _CERTIFICATE_LABELS]
    complete = [body for _label, body in _CERTIFICATE_BLOCK.findall(content)]
    if len(begun) > len(complete):
        return Problem(path, "bad_pem", "a certificate block has no END line (truncated?)")
    certificates = []
    for position, body in enumerate(complete, start=1):
        try:
            der = binascii.a2b_base64(body, strict_mode=False)
        except (binascii.Error, ValueError) as exc:
            return Problem(path, "bad_pem", f"certificate block {position}: {exc}")
        if not der or _looks_corrupt(body):
            return Problem(path, "bad_pem", f"certificate block {position}: not base64")
        loaded = _load_der(path, der, f"certificate block {position}: ", not_der=None)
        if isinstance(loaded, Problem):
            return loaded
        certificates += loaded
    if not certificates and not labels:
        return Problem(path, "bad_pem", "no complete PEM block")
    return certificates


_BASE64_BODY = re.compile(rb"[A-Za-z0-9+/=\s]*")


def _looks_corrupt(body: bytes) -> bool:
    """A block body with bytes that base64 does not use (a2b_base64 skips them)."""
    return _BASE64_BODY.fullmatch(body) is None


_TEXT = json.JSONEncoder(ensure_ascii=False)
"""json.dumps(..., ensure_ascii=False), its encoder made once, not per call."""


def encode_one(facts: CertificateFacts) -> str:
    """One certificate's line of a file's payload: `fingerprint TAB signed_by TAB ca TAB
    names TAB json`, the names a JSON list. JSON escapes every control character, so a tab or
    newline only ever separates."""
    names = _TEXT.encode(facts.names)
    raw = _TEXT.encode(facts.to_json())
    ca = "ca" if facts.is_ca else ""
    return f"{facts.fingerprint}\t{facts.signed_by or ''}\t{ca}\t{names}\t{raw}"


def encode_facts(lines: Sequence[str]) -> str:
    """A file's payload: one `encode_one` line per certificate, in file order."""
    return "\n".join(lines)


def decode_facts(payload: str) -> tuple[CertificateFacts, ...]:
    """The facts of an unchanged file, each decoded only when first read beyond its
    fingerprint, signer and names (see StoredFacts)."""
    found = []
    for line in payload.split("\n") if payload else ():
        fingerprint_text, signed_by, ca, names, raw = line.split("\t", 4)
        found.append(
            StoredFacts.stored(
                fingerprint_text, signed_by or None, ca == "ca", tuple(json.loads(names)), raw
            )
        )
    return tuple(found)


class StoredFacts(CertificateFacts):
    """Facts from last pass's file cache, JSON-decoded on first use.

    A rescan of a large unchanged store compares each certificate by its fingerprint
    and signer (what `identity()` and the index need), names its observation by the
    certificate's names and asks whether it is a CA's; decoding every payload would be
    most of its cost. The other fields are filled in from the cached JSON the first
    time one is read; equality and hashing are those of CertificateFacts."""

    __slots__ = ("_json",)

    @classmethod
    def stored(
        cls, fingerprint: str, signed_by: str | None, is_ca: bool, names: tuple[str, ...], raw: str
    ) -> StoredFacts:
        facts = object.__new__(cls)
        object.__setattr__(facts, "fingerprint", fingerprint)
        object.__setattr__(facts, "signed_by", signed_by)
        object.__setattr__(facts, "is_ca", is_ca)
        object.__setattr__(facts, "names", names)
        object.__setattr__(facts, "_json", raw)
        return facts

    def __getattr__(self, name: str) -> Any:
        """Only reached for a slot not set yet: every field once the JSON is decoded."""
        if name not in _FIELDS:
            raise AttributeError(name)
        decoded = CertificateFacts.from_json(json.loads(object.__getattribute__(self, "_json")))
        for field_name in _FIELDS:
            if field_name not in _EAGER:
                object.__setattr__(self, field_name, getattr(decoded, field_name))
        return getattr(self, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CertificateFacts):
            return NotImplemented
        return _values(self) == _values(other)

    def __hash__(self) -> int:
        return hash(_values(self))


_FIELDS = tuple(field.name for field in dataclasses.fields(CertificateFacts))
_EAGER = ("fingerprint", "signed_by", "is_ca", "names")


def _values(facts: CertificateFacts) -> tuple[object, ...]:
    return tuple(getattr(facts, name) for name in _FIELDS)


def _common_name(name: x509.Name) -> str | None:
    for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        return value if isinstance(value, str) else value.decode(errors="replace")
    return None


def _serial_hex(serial: int) -> str:
    """Upper-case hex with an even number of digits, as OpenSSL and easy-rsa print it."""
    text = f"{abs(serial):X}"
    text = text if len(text) % 2 == 0 else "0" + text
    return text if serial >= 0 else "-" + text  # RFC 5280 forbids it; old roots have it
