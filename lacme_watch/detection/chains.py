"""Chain analysis: what is wrong with a chain of certificates, leaf first. Pure.

A client builds a path from the leaf to a root it trusts. What a server sends (or a
fullchain.pem holds) can break that in ways the leaf's expiry never shows: an
intermediate missing, in the wrong place, not the one that signed the certificate
before it, expired, expiring, or outliving nothing because it expires before the leaf.
Links are checked by signature (`verify_directly_issued_by`), never by name alone.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ..observations import CertificateFacts
from ..reading.dernames import SignedParts, signed_parts, tbs_parts
from .thresholds import EXPIRED, Policy

REASONS = (
    "incomplete",
    "misordered",
    "wrong_issuer",
    "expired",
    "expiring",
    "intermediate_expires_before_leaf",
    "revoked",
)
"""`chain_problem.reason` is one of these."""
STRUCTURAL = frozenset({"incomplete", "misordered", "wrong_issuer"})
"""Reasons that depend on the certificates and the anchors only, not on the time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One reason a chain is broken, and the position of the certificate concerned."""

    reason: str
    position: int
    threshold: str | None = None


_REMEMBERED = 256
"""Certificates (or pairs) each cache below keeps: the links bundles share stay, each
leaf's is met once."""
_UNKNOWN = object()
"""Not asked yet (None is an answer: no anchor signed it)."""


def signs(
    issuer: x509.Certificate,
    certificate: x509.Certificate,
    *,
    remember: bool = True,
    der: bytes | None = None,
) -> bool:
    """True when `issuer`'s name and key verify `certificate`'s signature (`der`: the
    certificate's own DER, when the caller has it).

    Remembered by the two certificates (they compare and hash by their DER): every
    bundle of a store carries the same intermediate and root, whose links are then
    verified once, not once per bundle. A leaf's link is asked once (`remember=False`):
    kept, it would keep thousands of leaves alive, each with its parsed extensions, for
    the collector to walk again and again."""
    if remember:
        return _signs_remembered(issuer, certificate)
    return _verifies(issuer, certificate, der=der)


@functools.lru_cache(maxsize=_REMEMBERED)
def _signs_remembered(issuer: x509.Certificate, certificate: x509.Certificate) -> bool:
    return _verifies(issuer, certificate)


def _verifies(
    issuer: x509.Certificate,
    certificate: x509.Certificate,
    parts: SignedParts | None = None,
    der: bytes | None = None,
) -> bool:
    """`certificate.verify_directly_issued_by(issuer)` succeeds: directly for an ECDSA
    signature by an EC key (see _ecdsa_verifies), through cryptography otherwise
    (`parts`, or else `der`: what the caller already has of the certificate)."""
    key = _ec_issuer(issuer)
    if key is not None:
        if parts is None:
            parts = signed_parts(der if der is not None else _der(certificate))
        found = _ecdsa_verifies(key, certificate, parts)
        if found is not None:
            return found
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class _EcIssuer(NamedTuple):
    key: ec.EllipticCurvePublicKey
    subject: bytes
    """The issuer's subject Name DER, as its certificate holds it."""


@functools.lru_cache(maxsize=_REMEMBERED)
def _ec_issuer(issuer: x509.Certificate) -> _EcIssuer | None:
    """An EC issuer's key and subject DER, loaded once for all it signed (one CA signs
    thousands of leaves: cryptography would load its key again for each)."""
    try:
        key = issuer.public_key()
    except Exception:  # an unsupported key: cryptography's own check says no
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return None
    parts = tbs_parts(issuer)
    return None if parts is None else _EcIssuer(key, parts.subject)


@functools.cache
def _ecdsa_schemes() -> dict[bytes, ec.ECDSA]:
    """AlgorithmIdentifier DER (no parameters, RFC 5758 3.2) -> the signature scheme.
    Made on the first signature checked, not at import: creating an ECDSA scheme loads
    cryptography's OpenSSL backend module (~1.5 ms), which a pass that verifies no
    signature (a store of leaves whose issuers it does not hold) never needs."""
    return {
        bytes.fromhex("300a06082a8648ce3d040301"): ec.ECDSA(hashes.SHA224()),
        bytes.fromhex("300a06082a8648ce3d040302"): ec.ECDSA(hashes.SHA256()),
        bytes.fromhex("300a06082a8648ce3d040303"): ec.ECDSA(hashes.SHA384()),
        bytes.fromhex("300a06082a8648ce3d040304"): ec.ECDSA(hashes.SHA512()),
    }


def _der(certificate: x509.Certificate) -> bytes:
    """The certificate's DER encoded again, for a caller that does not hold it. The
    serialization module is imported here, not at the top: with its SSH and cipher
    modules it is ~3 ms of a first pass that never needs it."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.DER)


def _ecdsa_verifies(
    issuer: _EcIssuer, certificate: x509.Certificate, parts: SignedParts | None
) -> bool | None:
    """The checks of verify_directly_issued_by (both algorithm identifiers the same,
    the issuer Name the issuer's subject, the signature valid under its key) for an
    ECDSA signature with a hash cryptography names; None for anything else, which
    cryptography then decides. Byte for byte: cryptography parses strict DER only."""
    if parts is None:
        return None
    scheme = _ecdsa_schemes().get(parts.algorithm)
    if scheme is None or parts.inner_algorithm != parts.algorithm:
        return None
    if parts.issuer != issuer.subject:
        return False
    try:
        issuer.key.verify(certificate.signature, parts.tbs, scheme)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@functools.lru_cache(maxsize=_REMEMBERED)
def _self_signed(certificate: x509.Certificate) -> bool:
    """A root: its own name as issuer, and its own key verifies it (remembered by the
    certificate, like signs(): the root every bundle of a CA ends in is asked once)."""
    return certificate.issuer == certificate.subject and _verifies(certificate, certificate)


def is_chain_file(path: str, facts: Sequence[CertificateFacts]) -> bool:
    """Whether a stored file is judged as a chain: more than its leaf, or named a
    fullchain, and not a CA's own certificate."""
    if not facts or facts[0].is_ca:
        return False
    return len(facts) > 1 or "fullchain" in path[path.rfind("/") + 1 :]  # in its basename


def digest(fingerprints: Sequence[str]) -> str:
    """Names a chain by its certificates in order: a changed chain re-arms its findings."""
    return hashlib.sha256(":".join(fingerprints).encode()).hexdigest()[:16]


class Anchors:
    """Trust anchors (system store, `trust` bundles, watched CAs), indexed by subject."""

    def __init__(self, certificates: Sequence[x509.Certificate]) -> None:
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for certificate in certificates:
            # By its subject as cryptography encodes it, and as the certificate holds it
            # (what a certificate it signed names byte for byte: issuer_of's `issuer`).
            parts = tbs_parts(certificate)
            encoded = certificate.subject.public_bytes()
            for subject in {encoded, parts.subject if parts is not None else encoded}:
                self._by_subject.setdefault(subject, []).append(certificate)
        self._found: dict[x509.Certificate, x509.Certificate | None] = {}
        """issuer_of() of the certificates asked lately (the intermediates and roots
        every bundle of a CA carries): a Name built and encoded once, not per bundle."""

    def issuer_of(
        self,
        certificate: x509.Certificate,
        *,
        remember: bool = False,
        parts: SignedParts | None = None,
    ) -> x509.Certificate | None:
        """The anchor whose key signed `certificate`, if any (`remember`: a certificate
        other bundles carry too, kept for them; a leaf is asked once, `parts` what its
        DER says, when the caller has read it: no Name built)."""
        if remember:
            known = self._found.get(certificate, _UNKNOWN)
            if known is not _UNKNOWN:
                return known  # type: ignore[return-value]
        issuer = parts.issuer if parts is not None else certificate.issuer.public_bytes()
        found = None
        for candidate in self._by_subject.get(issuer, []):
            if (
                signs(candidate, certificate)
                if remember
                else _verifies(candidate, certificate, parts)
            ):
                found = candidate
                break
        if remember:
            if len(self._found) >= _REMEMBERED:
                self._found.clear()  # bounded: a store of many issuers costs a few misses
            self._found[certificate] = found
        return found

    def __len__(self) -> int:
        return sum(len(group) for group in self._by_subject.values())


def structure(
    chain: Sequence[x509.Certificate], anchors: Anchors, der: Sequence[bytes] = ()
) -> list[Finding]:
    """misordered, wrong_issuer or incomplete: at most one, the first that explains it.

    Each certificate after the leaf must have signed the one before it. When a link
    fails and another certificate of the chain did sign it, the chain is misordered;
    when none did, the certificate there is the wrong issuer. A chain whose links all
    hold is incomplete when no trust anchor signed any of its certificates and it does
    not end in a self-signed root: a chain that reaches a root it carries lacks nothing
    (whether clients trust that root is their store's business, as with any private CA),
    while one that stops at a certificate whose issuer nobody has is missing a link.
    `der`, when the caller has it: the certificates' DER, in the same order.
    """
    leaf = signed_parts(der[0]) if der else None  # read once for its link and its anchor
    for position in range(len(chain) - 1):
        child, parent = chain[position], chain[position + 1]
        if position:
            if signs(parent, child):
                continue
        elif _verifies(parent, child, leaf):
            continue
        elsewhere = any(
            signs(other, child)
            for index, other in enumerate(chain)
            if index not in (position, position + 1)
        )
        reason = "misordered" if elsewhere else "wrong_issuer"
        return [Finding(reason=reason, position=position + 1)]
    if any(
        anchors.issuer_of(certificate, remember=position > 0, parts=None if position else leaf)
        is not None
        for position, certificate in enumerate(chain)
    ):
        return []
    if chain and _self_signed(chain[-1]):
        return []
    return [Finding(reason="incomplete", position=len(chain) - 1)]


def lifetimes(chain: Sequence[CertificateFacts], now: datetime, policy: Policy) -> list[Finding]:
    """expired / expiring / intermediate_expires_before_leaf, for every certificate after
    the leaf (the leaf's own expiry is certificate_expiring's business).

    From the facts alone, so an unchanged file is judged again without being read."""
    if len(chain) < 2:
        return []
    leaf_not_after = chain[0].not_after
    findings: list[Finding] = []
    expired = expiring = before_leaf = False
    for position, facts in enumerate(chain[1:], start=1):
        crossed = policy.crossed(facts.not_before, facts.not_after, now)
        if crossed[:1] == [EXPIRED]:
            if not expired:
                findings.append(Finding(reason="expired", position=position))
                expired = True
            continue  # that it also ends before the leaf goes without saying
        if crossed and not expiring:
            findings += [
                Finding(reason="expiring", position=position, threshold=label) for label in crossed
            ]
            expiring = True
        # A root sent along is not what the leaf's path depends on (clients use their own).
        is_root = facts.subject == facts.issuer
        if facts.not_after < leaf_not_after and not before_leaf and not is_root:
            findings.append(Finding(reason="intermediate_expires_before_leaf", position=position))
            before_leaf = True
    return findings


def covers(names: Sequence[str], host: str) -> bool:
    """True when a certificate's names cover `host` (one leftmost-label wildcard, RFC 6125)."""
    wanted = host.rstrip(".").lower()
    for name in names:
        pattern = name.rstrip(".").lower()
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            first, _, rest = wanted.partition(".")
            if first and rest == pattern[2:]:
                return True
    return False
