"""What a source saw on one scan: certificates and problems. Nothing here is decided yet."""

from __future__ import annotations

import operator
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, overload

from .detection.renewal import RenewalPolicy, policy_from_json, policy_to_json
from .instants import format_time, parse_time

if TYPE_CHECKING:  # a rescan that only stats never loads cryptography.x509 (~25 ms)
    from cryptography import x509

    from .events import Event

Role = Literal["leaf", "chain", "ca"]
"""leaf: the certificate a lineage is about; chain: an intermediate or root riding in a
bundle (expiry only); ca: the root of a watched certificate authority."""

REASONS = (
    "bad_pem",
    "bad_certificate",
    "no_certificate_found",
    "permission_denied",
    "not_found",
    "broken_symlink",
    "outside_store",
    "bad_file_name",
    "too_large",
    "bad_metadata",
    "io_error",
    "unreachable",
    "source_error",
    "bad_crl",
    "crl_unavailable",
    "crl_unverified",
)
"""Why a file could not be used; `certificate_unreadable.reason` is one of these."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """What clients and deployments depend on beyond names and dates: compared at each
    renewal for `certificate_changed`."""

    extended_key_usage: tuple[str, ...] = ()
    """`serverAuth`, `clientAuth`, ... (dotted OIDs for the unnamed)."""
    key: str = ""
    """`ECDSA P-256`, `RSA 2048`, `Ed25519`: the public key, never the private one."""
    signature_algorithm: str = ""
    issuer_key_id: str | None = None
    """The authority key identifier: which intermediate key signed it."""
    crl_distribution_points: bool = False
    ocsp_urls: tuple[str, ...] = ()
    must_staple: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "extended_key_usage": list(self.extended_key_usage),
            "key": self.key,
            "signature_algorithm": self.signature_algorithm,
            "issuer_key_id": self.issuer_key_id,
            "crl_distribution_points": self.crl_distribution_points,
            "ocsp_urls": list(self.ocsp_urls),
            "must_staple": self.must_staple,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Profile:
        return cls(
            extended_key_usage=tuple(raw["extended_key_usage"]),
            key=raw["key"],
            signature_algorithm=raw["signature_algorithm"],
            issuer_key_id=raw["issuer_key_id"],
            crl_distribution_points=raw["crl_distribution_points"],
            ocsp_urls=tuple(raw["ocsp_urls"]),
            must_staple=raw["must_staple"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFacts:
    """What one X.509 certificate says about itself (never anything about its key)."""

    fingerprint: str
    serial: str
    subject: str
    subject_cn: str | None
    issuer: str
    issuer_cn: str | None
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    is_ca: bool
    is_client: bool
    signed_by: str | None = None
    """Fingerprint of the watched CA whose key verifies this certificate's signature."""
    profile: Profile | None = None
    """None when read by an older lacme-watch (its snapshot predates profiles)."""

    @property
    def lifetime_seconds(self) -> float:
        return (self.not_after - self.not_before).total_seconds()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled (forked.py's child hands back what it read) as its values in field
        order: half the default's cost, which walks dataclasses.fields() per object."""
        return (_certificate_facts, facts_values(self))

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "serial": self.serial,
            "subject": self.subject,
            "subject_cn": self.subject_cn,
            "issuer": self.issuer,
            "issuer_cn": self.issuer_cn,
            "names": list(self.names),
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "is_ca": self.is_ca,
            "is_client": self.is_client,
            "signed_by": self.signed_by,
            "profile": self.profile.to_json() if self.profile else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CertificateFacts:
        return cls(
            fingerprint=raw["fingerprint"],
            serial=raw["serial"],
            subject=raw["subject"],
            subject_cn=raw["subject_cn"],
            issuer=sys.intern(raw["issuer"]),  # one CA's many certificates share one copy
            issuer_cn=raw["issuer_cn"] and sys.intern(raw["issuer_cn"]),
            names=tuple(raw["names"]),
            not_before=parse_time(raw["not_before"]),
            not_after=parse_time(raw["not_after"]),
            is_ca=raw["is_ca"],
            is_client=raw["is_client"],
            signed_by=raw["signed_by"],
            profile=Profile.from_json(raw["profile"]) if raw.get("profile") else None,
        )


FACTS_FIELDS = tuple(CertificateFacts.__dataclass_fields__)
"""CertificateFacts' field names, in order."""
FACTS_VERSION = "3"
"""Bumped when certfacts.describe() learns more, or the payload's layout changes: files
cached by an older version are parsed again. Here, not in certfacts, so that a rescan's
stat-record key (rescans.py) names it without loading cryptography."""
facts_values = operator.attrgetter(*FACTS_FIELDS)
"""CertificateFacts' field values, in FACTS_FIELDS' order (equality and hash of a
stand-in for one, certfacts.StoredFacts)."""


def facts_from_values(values: Sequence[Any]) -> CertificateFacts:
    """CertificateFacts from its values in FACTS_FIELDS' order (a certificate row's)."""
    return _certificate_facts(*values)


def _certificate_facts(*values: Any) -> CertificateFacts:
    """CertificateFacts from __reduce__'s values (a frozen dataclass's fields are set
    as its own __init__ sets them)."""
    facts = object.__new__(CertificateFacts)
    for name, value in zip(FACTS_FIELDS, values, strict=True):
        object.__setattr__(facts, name, value)
    return facts


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One certificate in one lineage of one source, as seen now."""

    lineage: str
    role: Role
    path: str
    domain: str
    domains: tuple[str, ...]
    certificate: CertificateFacts
    chain_length: int | None = None
    """How many certificates the stored file holds (leaf included), for certificate_changed."""
    renewal: RenewalPolicy | None = None
    """The owner's renewal policy, read from its files (or the store's `renew_before`)."""

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint

    def to_json(self) -> dict[str, Any]:
        return {
            "lineage": self.lineage,
            "role": self.role,
            "path": self.path,
            "domain": self.domain,
            "domains": list(self.domains),
            "certificate": self.certificate.to_json(),
            "chain_length": self.chain_length,
            "renewal": policy_to_json(self.renewal) if self.renewal else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Observation:
        return cls(
            lineage=raw["lineage"],
            role=raw["role"],
            path=raw["path"],
            domain=raw["domain"],
            domains=tuple(raw["domains"]),
            certificate=CertificateFacts.from_json(raw["certificate"]),
            chain_length=raw.get("chain_length"),
            renewal=policy_from_json(raw["renewal"]) if raw.get("renewal") else None,
        )


@dataclass(frozen=True, slots=True)
class Issuance:
    """One certificate issued at some time: what rate limits count."""

    key: str
    """Unique per issuance (a fingerprint), so the same one seen twice counts once."""
    names: tuple[str, ...]
    issued_at: datetime
    certificate: bool = True
    """False for a log of issuances (lacme's rate_limits.json): its time is the
    client's, and the certificate it speaks of may be counted already."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A file that could not be used, and why (one of REASONS).

    `lineage` names the lineage the file belongs to, so detection keeps that
    lineage's previous certificate instead of reporting it removed.
    """

    path: str
    reason: str
    detail: str = ""
    lineage: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServedChain:
    """The certificates a TLS endpoint sent, in the order it sent them (DER)."""

    lineage: str
    location: str
    """`host:port`."""
    requested_name: str | None
    """The SNI host name asked for; None when the endpoint was named by address."""
    certificates: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlSeen:
    """One certificate revocation list file, as read now."""

    lineage: str
    path: str
    fingerprint: str
    """SHA-256 of the CRL as read: a newly generated CRL re-arms its thresholds."""
    issuer: str
    issuer_cn: str | None
    number: int | None
    this_update: datetime
    next_update: datetime | None
    role: Literal["current", "deployed"] = "current"
    """deployed: a copy that a server reads, compared with its authority's current CRL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanResult:
    """Everything one source saw on one scan.

    `failed` means the source could not be read as a whole (its root is missing
    or unreadable): its previous inventory then carries over unchanged.
    """

    observations: tuple[Observation, ...] = ()
    problems: tuple[Problem, ...] = ()
    failed: bool = False
    signers: tuple[x509.Certificate, ...] = ()
    """CA certificates whose signatures stores should check (authorities only)."""
    events: tuple[Event, ...] = ()
    """Events the source read rather than derived (challenge failures in a client's log)."""
    cursor: str | None = None
    """What the source wants back next pass (a log position); None keeps the old one.
    It is committed with the pass, so a crash re-reads rather than skips."""
    issuances: tuple[Issuance, ...] = ()
    """Issuance history beyond the current certificates (certbot's archive, lacme's
    rate_limits.json), for rate limits."""
    retired: frozenset[str] = frozenset()
    """Lineages that left for a reason the source reports itself (a revocation):
    no certificate_removed for them."""
    chains: tuple[ServedChain, ...] = ()
    """Chains TLS endpoints served (file stores' chains are re-read from their files)."""
    crls: tuple[CrlSeen, ...] = ()
    """CRL files the source watches (the `crl` store, an easy-rsa authority's crl.pem)."""
    agent_runs: tuple[datetime, ...] = ()
    """Runs of the store's renewal agent this scan saw (certbot's log header lines)."""
    covered: frozenset[str] | None = None
    """For a partial rescan (only what changed since the last pass): the lineages it
    speaks for. Every other lineage is as the last pass left it. None: the whole store."""


class Entries(Sequence[tuple[str, bool]]):
    """A listing's entries when all are of one kind (files, or directories): held as
    their paths alone, each (path, is a directory) made when asked for."""

    def __init__(self, paths: Sequence[str], directories: bool) -> None:
        self._paths = tuple(paths)
        self._directories = directories

    @overload
    def __getitem__(self, index: int) -> tuple[str, bool]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, bool]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, bool] | Sequence[tuple[str, bool]]:
        if isinstance(index, slice):
            return Entries(self._paths[index], self._directories)
        return self._paths[index], self._directories

    def __len__(self) -> int:
        return len(self._paths)


@dataclass(frozen=True, slots=True)
class Listing:
    """What a full scan of a file store would read, named but not read: the entries its
    `rescan()` takes (a path, and whether it is a directory), and what the store says
    as a whole (its roots' problems, issuance history). A first pass reads a large store
    a slice of entries at a time (slices.py), so it never holds all of it at once."""

    entries: Sequence[tuple[str, bool]]
    whole: ScanResult
    reads_in: str | None = None
    """When each entry is a directory: the certificate file in it a scan reads first
    (lacme's fullchain.pem), which the reader may start reading in a second process
    while the slice before is committed; None: each entry is that file."""
    metadata: str | None = None
    """A JSON document beside each such file that the scan reads too (lacme's
    meta.json): the second process reads it with the file."""

    def reads(self, entries: Sequence[tuple[str, bool]]) -> list[str]:
        """The certificate files these entries' scan reads first."""
        if self.reads_in is None:
            return [path for path, _ in entries]
        return [os.path.join(path, self.reads_in) for path, _ in entries]
