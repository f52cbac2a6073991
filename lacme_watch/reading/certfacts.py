"""What a certificate file's bytes say: certificate blocks found in PEM (never a key
block: its body is not even copied out) or DER, parsed by cryptography, and described
as the facts every source reports. Pure: bytes in, facts out."""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import sys
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..detection.profiles import (
    is_must_staple,
    key_description,
    key_id_text,
    ocsp_urls,
    profile,
    signature_name,
    usage_names,
)
from ..instants import format_time, parse_time
from ..observations import (
    FACTS_FIELDS,
    FACTS_VERSION,
    CertificateFacts,
    Problem,
    Profile,
    facts_values,
)
from .dernames import TbsParts, name_text, tbs_parts

_T = TypeVar("_T")
_K = TypeVar("_K", bound=Hashable)

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


def signers_digest(signers: Sequence[x509.Certificate]) -> str:
    """Names the set of CA certificates that `signed_by` was computed against (and the
    facts version, so a cache from before profiles is not reused)."""
    text = FACTS_VERSION + "".join(sorted(fingerprint(s) for s in signers))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(certificate: x509.Certificate, der: bytes | None = None) -> CertificateFacts:
    """The facts lacme-watch keeps about a certificate (`der`: its own DER, when the
    caller decoded it: then nothing is encoded again to be hashed or walked).

    A CA certificate rides in every bundle its CA issued: its facts are kept, by
    fingerprint, for the next file that holds it. Names and keys go through dernames
    and the caches below; the facts are the same as cryptography's objects give."""
    digest = certificate_digest(certificate, der)
    known = _CA_FACTS.get(digest)
    if known is not None:
        return known
    facts = _describe(certificate, digest.hex(), der)
    if facts.is_ca:
        _remember(_CA_FACTS, digest, facts)
    return facts


def certificate_digest(certificate: x509.Certificate, der: bytes | None = None) -> bytes:
    """SHA-256 of the certificate's DER. cryptography parses strict DER only and hashes
    its own encoding of what it parsed, which is the DER it was given: hashing those
    bytes directly is the same digest, without encoding the certificate again."""
    if der is None:
        return certificate.fingerprint(hashes.SHA256())
    return hashlib.sha256(der).digest()


def _describe(
    certificate: x509.Certificate, fingerprint_hex: str, der: bytes | None
) -> CertificateFacts:
    try:
        extensions: x509.Extensions | None = certificate.extensions
    except ValueError:  # duplicate or malformed extensions: judge the rest of the certificate
        extensions = None
    names: tuple[str, ...] = ()
    is_ca = is_client = False
    usages: tuple[str, ...] = ()
    issuer_key_id: str | None = None
    crl = must_staple = False
    ocsp: tuple[str, ...] = ()
    for extension in extensions or ():  # one walk for the facts and the profile
        value = extension.value
        kind = type(value)  # one comparison each, not a chain of ABC isinstance checks
        if kind is x509.SubjectAlternativeName:
            names = _san_names(value)
        elif kind is x509.BasicConstraints:
            is_ca = value.ca
        elif kind is x509.ExtendedKeyUsage:
            usages, is_client = _usages(value)
        elif kind is x509.AuthorityKeyIdentifier:
            issuer_key_id = key_id_text(value)
        elif kind is x509.CRLDistributionPoints:
            crl = len(value) > 0
        elif kind is x509.AuthorityInformationAccess:
            ocsp = ocsp_urls(value)
        elif kind is x509.TLSFeature:
            must_staple = is_must_staple(value)
    parts = tbs_parts(certificate, der)
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
        is_client=is_client,
        profile=profile(
            usages,
            key_description(certificate, parts.public_key if parts is not None else None),
            signature_name(certificate),
            issuer_key_id,
            crl,
            ocsp,
            must_staple,
        ),
    )


def _san_names(value: x509.SubjectAlternativeName) -> tuple[str, ...]:
    """DNS names then IP addresses, each in extension order (as get_values_for_type)."""
    dns: list[str] = []
    ips: list[str] = []
    for general in value:
        kind = type(general)
        if kind is x509.DNSName:
            dns.append(general.value)
        elif kind is x509.IPAddress:
            ips.append(str(general.value))
    return (*dns, *ips)


def _usages(value: x509.ExtendedKeyUsage) -> tuple[tuple[str, ...], bool]:
    """The profile's EKU names, and whether it is a client's (and not a server's)
    certificate; remembered per EKU (one CA gives most of its leaves the same)."""
    key = tuple(value)
    found = _USAGES.get(key)
    if found is None:
        client = _CLIENT_AUTH in key and _SERVER_AUTH not in key
        found = (usage_names(value), client)
        _remember(_USAGES, key, found)
    return found


_CLIENT_AUTH, _SERVER_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
_USAGES: dict[tuple[x509.ObjectIdentifier, ...], tuple[tuple[str, ...], bool]] = {}


_CACHED = 2048
"""Entries per cache below, each a few hundred bytes: then it starts again."""
_CA_FACTS: dict[bytes, CertificateFacts] = {}
"""SHA-256 -> facts of CA certificates (intermediates repeat in every fullchain.pem)."""
_ISSUERS: dict[bytes, tuple[str, str | None]] = {}
"""Issuer Name DER -> its text and common name: one CA's is the same in all it signs."""


def _remember(cache: dict[_K, _T], key: _K, value: _T, limit: int = _CACHED) -> None:
    if len(cache) >= limit:
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
    parsed = parse_with_der(path, content)
    return parsed if isinstance(parsed, Problem) else [certificate for certificate, _ in parsed]


Parsed = tuple[x509.Certificate, bytes]
"""A certificate and the DER it was loaded from."""


def parse_with_der(path: str, content: bytes) -> list[Parsed] | Problem:
    """parse_pem_or_der(), each certificate with its DER (for describe())."""
    if not content.strip():
        return Problem(path, "no_certificate_found", "empty file")
    if b"-----BEGIN" in content:
        return _parse_pem(path, content)
    return _load_der(path, content, "", not_der="neither PEM nor a DER certificate")


def _load_der(path: str, der: bytes, where: str, *, not_der: str | None) -> list[Parsed] | Problem:
    """One DER certificate. Bytes that start like one (an ASN.1 SEQUENCE) but do not
    parse are a `bad_certificate`; others, when `not_der` says so, no certificate at all."""
    try:
        return [(x509.load_der_x509_certificate(der), der)]
    except Exception as exc:  # ValueError, InvalidVersion, ...: this file's
        if not_der is not None and der[:1] != b"\x30":
            return Problem(path, "no_certificate_found", not_der)
        return bad_certificate(path, exc, where)


def _parse_pem(path: str, content: bytes) -> list[Parsed] | Problem:
    """Certificates from every CERTIFICATE block; text around blocks is ignored (easy-rsa)."""
    labels = _PEM_BEGIN.findall(content)
    begun = [label for label in labels if label in _CERTIFICATE_LABELS]
    complete = [body for _label, body in _CERTIFICATE_BLOCK.findall(content)]
    if len(begun) > len(complete):
        return Problem(path, "bad_pem", "a certificate block has no END line (truncated?)")
    certificates: list[Parsed] = []
    for position, body in enumerate(complete, start=1):
        if position > 1 and (known := _CHAIN_BLOCKS.get(body)) is not None:
            certificates.append(known)  # the intermediate or root of the bundle before
            continue
        try:
            der = binascii.a2b_base64(body, strict_mode=False)
        except (binascii.Error, ValueError) as exc:
            return Problem(path, "bad_pem", f"certificate block {position}: {exc}")
        if not der or _looks_corrupt(body):
            return Problem(path, "bad_pem", f"certificate block {position}: not base64")
        loaded = _load_der(path, der, f"certificate block {position}: ", not_der=None)
        if isinstance(loaded, Problem):
            return loaded
        if position > 1:
            _remember(_CHAIN_BLOCKS, body, loaded[0], _CHAIN_BLOCKS_KEPT)
        certificates += loaded
    if not certificates and not labels:
        return Problem(path, "bad_pem", "no complete PEM block")
    return certificates


_CHAIN_BLOCKS: dict[bytes, Parsed] = {}
"""A bundle's block after its first (base64 as in the file) -> its certificate and DER:
every fullchain.pem of a CA carries the same intermediate and root, decoded and loaded
once (cryptography's certificates are immutable: one object serves every bundle).
Fewer entries than the other caches: each holds a certificate object (a few KiB)."""
_CHAIN_BLOCKS_KEPT = 256

_BASE64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\n\r\f\v"
"""The base64 alphabet, padding and ASCII whitespace."""


def _looks_corrupt(body: bytes) -> bool:
    """A block body with bytes that base64 does not use (a2b_base64 skips them)."""
    return bool(body.translate(None, _BASE64_BYTES))  # what is left once those are deleted


_TEXT = json.JSONEncoder(ensure_ascii=False)
"""json.dumps(..., ensure_ascii=False), its encoder made once, not per call."""
_STRING: Callable[[str], str] = json.encoder.encode_basestring
"""How that encoder writes a string (ensure_ascii=False): `"`, escapes, `"`."""


def encode_one(facts: CertificateFacts) -> str:
    """One certificate's line of a file's payload: `fingerprint TAB signed_by TAB ca TAB
    names TAB json`, the names a JSON list. JSON escapes every control character, so a tab or
    newline only ever separates."""
    names = _names_json(facts.names)
    raw = _facts_json(facts, names)
    ca = "ca" if facts.is_ca else ""
    return f"{facts.fingerprint}\t{facts.signed_by or ''}\t{ca}\t{names}\t{raw}"


def _names_json(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(map(_STRING, names)) + "]"


def _facts_json(facts: CertificateFacts, names: str) -> str:
    """`_TEXT.encode(facts.to_json())`, to the character, written straight from the
    fields: the dictionary and the encoder's walk of it cost more than the rest of
    the line. A CA's issuer and a shared profile are written once, then remembered."""
    return (
        f'{{"fingerprint": {_STRING(facts.fingerprint)}, "serial": {_STRING(facts.serial)},'
        f' "subject": {_STRING(facts.subject)}, "subject_cn": {_optional(facts.subject_cn)},'
        f' {_issuer_json(facts.issuer, facts.issuer_cn)}, "names": {names},'
        f' "not_before": "{format_time(facts.not_before)}",'
        f' "not_after": "{format_time(facts.not_after)}",'
        f' "is_ca": {"true" if facts.is_ca else "false"},'
        f' "is_client": {"true" if facts.is_client else "false"},'
        f' "signed_by": {_optional(facts.signed_by)}, "profile": {_profile_json(facts.profile)}}}'
    )


def _optional(text: str | None) -> str:
    return "null" if text is None else _STRING(text)


def _issuer_json(issuer: str, issuer_cn: str | None) -> str:
    found = _ISSUER_JSON.get((issuer, issuer_cn))
    if found is None:
        found = f'"issuer": {_STRING(issuer)}, "issuer_cn": {_optional(issuer_cn)}'
        _remember(_ISSUER_JSON, (issuer, issuer_cn), found)
    return found


def _profile_json(profile: Profile | None) -> str:
    if profile is None:
        return "null"
    found = _PROFILE_JSON.get(id(profile))
    if found is None or found[0] is not profile:  # an id is only this object's while it lives
        found = (profile, _TEXT.encode(profile.to_json()))
        _remember(_PROFILE_JSON, id(profile), found)
    return found[1]


_ISSUER_JSON: dict[tuple[str, str | None], str] = {}
_PROFILE_JSON: dict[int, tuple[Profile, str]] = {}
"""Profiles are shared (profiles.profile() hands out one per distinct profile): each
is written once, kept with the object itself so a reused id cannot mislead."""


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

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as it was stored (its JSON not decoded for the trip), once decoded
        as the facts it holds."""
        raw = object.__getattribute__(self, "_json")
        try:
            object.__getattribute__(self, "serial")
        except AttributeError:  # not decoded yet
            return (
                StoredFacts.stored,
                (self.fingerprint, self.signed_by, self.is_ca, self.names, raw),
            )
        return super().__reduce__()

    def __getattr__(self, name: str) -> Any:
        """Only reached for a slot not set yet: every field once the JSON is decoded.

        The fields are set straight from the JSON, as CertificateFacts.from_json reads
        them: no whole CertificateFacts made and copied (each certificate that comes
        due a threshold is decoded here, for its event)."""
        if name not in FACTS_FIELDS:
            raise AttributeError(name)
        raw = json.loads(object.__getattribute__(self, "_json"))
        put = object.__setattr__
        put(self, "serial", raw["serial"])
        put(self, "subject", raw["subject"])
        put(self, "subject_cn", raw["subject_cn"])
        put(self, "issuer", sys.intern(raw["issuer"]))  # one CA's certificates share a copy
        put(self, "issuer_cn", raw["issuer_cn"] and sys.intern(raw["issuer_cn"]))
        put(self, "not_before", parse_time(raw["not_before"]))
        put(self, "not_after", parse_time(raw["not_after"]))
        put(self, "is_client", raw["is_client"])
        put(self, "profile", Profile.from_json(raw["profile"]) if raw.get("profile") else None)
        return object.__getattribute__(self, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CertificateFacts):
            return NotImplemented
        return facts_values(self) == facts_values(other)

    def __hash__(self) -> int:
        return hash(facts_values(self))


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
