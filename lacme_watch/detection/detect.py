"""Detection: what changed between the last snapshot of a source and what it shows now.

Pure: no I/O and no clock. `detect()` takes the previous snapshot, a scan and the
time, and returns the next snapshot and the events that explain the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from .. import events as _events
from ..observations import Observation, Problem, ScanResult
from . import renewal
from .changes import compare
from .thresholds import EXPIRED, Policy, days_remaining

if TYPE_CHECKING:
    from ..events import CertificateExpiring, Event

OVERDUE = "overdue"
"""The mark of a reported renewal_overdue, kept beside the threshold labels."""


Reported = tuple[str, str, str]
"""(lineage, fingerprint, threshold label) already announced."""

Stale = tuple[str, str, str]
"""(endpoint lineage, fingerprint it serves, fingerprint of the newer one held) announced."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSnapshot:
    """What lacme-watch remembers about one source between passes."""

    source: str
    baselined: bool = False
    certificates: Mapping[str, Observation] = field(default_factory=dict)
    reported: frozenset[Reported] = frozenset()
    stale: frozenset[Stale] = frozenset()
    """deployment_stale already announced (endpoint sources only)."""
    problems: frozenset[Problem] = frozenset()
    cursor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Authority:
    """A watched CA, for naming it in `ca_certificate_issued`."""

    fingerprint: str
    cn: str


def detect(
    previous: SourceSnapshot | None,
    scan: ScanResult,
    *,
    source: str,
    now: datetime,
    policy: Policy,
    authorities: Mapping[str, Authority] | None = None,
) -> tuple[SourceSnapshot, list[Event]]:
    """Compare a scan with the previous snapshot; return the next snapshot and its events.

    The first successful scan of a source is a quiet baseline: it reports what holds
    now (expiring certificates, CAs, unreadable files) but no issuance. A source that
    does not exist when first looked at has an empty baseline (see _absent).
    """
    before = previous or SourceSnapshot(source=source)
    current = _carry_over(before, scan)
    events: list[Event] = []
    if not scan.failed:
        if before.baselined:  # a source's first pass only records where it stands
            events += _lifecycle(source, before.certificates, current, authorities or {}, policy)
            events += scan.events
        events += _removed(source, before.certificates, current, scan.retired)
    events += _authorities(source, before.certificates, current)
    expiring, reported = _expiry(source, before.reported, current, policy, now)
    events += expiring
    late, overdue_marks = _overdue(source, before.reported, current, policy, now)
    events += late
    reported |= overdue_marks
    problems = frozenset(scan.problems)
    events += unreadable_events(source, problems - before.problems, now)
    after = SourceSnapshot(
        source=source,
        baselined=before.baselined or not scan.failed or _absent(scan),
        certificates=current,
        reported=reported,
        stale=frozenset(mark for mark in before.stale if _still_held(mark, current)),
        problems=problems,
        cursor=before.cursor if scan.failed or scan.cursor is None else scan.cursor,
    )
    return after, events


def _carry_over(before: SourceSnapshot, scan: ScanResult) -> dict[str, Observation]:
    """The certificates a source holds now: the scan's, plus what it could not read.

    A failed scan keeps the whole previous inventory; a file that cannot be read this
    time keeps its lineage (it is unreadable, not gone). The first observation of a
    lineage wins.
    """
    if scan.failed:
        return dict(before.certificates)
    current: dict[str, Observation] = {}
    for observation in scan.observations:
        current.setdefault(observation.lineage, observation)
    held = {problem.lineage or problem.path for problem in scan.problems}
    for lineage, old in before.certificates.items():
        if lineage not in current and (lineage in held or old.path in held):
            current[lineage] = old
    return current


def _expiry(
    source: str,
    reported: frozenset[Reported],
    current: Mapping[str, Observation],
    policy: Policy,
    now: datetime,
) -> tuple[list[Event], frozenset[Reported]]:
    """certificate_expiring for the most urgent fresh threshold, and the marks to keep."""
    events: list[Event] = []
    marks: set[Reported] = set()
    for lineage, observation in current.items():
        facts = observation.certificate
        crossed = policy.crossed(facts.not_before, facts.not_after, now)
        if not crossed:
            continue
        keys = [(lineage, facts.fingerprint, label) for label in crossed]
        fresh = next((key[2] for key in keys if key not in reported), None)
        if fresh is not None:  # the most urgent threshold not announced yet
            events.append(_expiring(source, observation, fresh, now))
        marks.update(keys)
    # Keep marks for thresholds no longer crossed (a --now jump backwards must not re-arm them).
    marks |= {key for key in reported if _still_held(key, current)}
    return events, frozenset(marks)


def _overdue(
    source: str,
    reported: frozenset[Reported],
    current: Mapping[str, Observation],
    policy: Policy,
    now: datetime,
) -> tuple[list[Event], frozenset[Reported]]:
    """renewal_overdue, once, for each leaf still in place past its owner's renewal
    point plus the grace; and the marks that say so."""
    if not policy.overdue:
        return [], frozenset()
    events: list[Event] = []
    marks: set[Reported] = set()
    for lineage, observation in current.items():
        owner = observation.renewal
        if observation.role != "leaf" or owner is None:
            continue
        if isinstance(owner, renewal.RenewAt):
            continue  # a CA's window (ARI): the ARI round announces it, once per window
        facts = observation.certificate
        if now < renewal.overdue_since(owner, facts, policy.overdue_grace):
            continue
        mark = (lineage, observation.fingerprint, OVERDUE)
        marks.add(mark)
        if mark in reported:
            continue
        events.append(
            _events.RenewalOverdue(
                **certificate_fields(source, observation),
                renew_after=renewal.renew_after(owner, facts),
                days_remaining=days_remaining(facts.not_after, now),
                policy=owner.describe(),
            )
        )
    return events, frozenset(marks)


def _still_held(mark: tuple[str, str, str], current: Mapping[str, Observation]) -> bool:
    """A mark stays while its lineage still holds the certificate it is about."""
    lineage, fingerprint, _ = mark
    return lineage in current and current[lineage].fingerprint == fingerprint


def unreadable_events(source: str, fresh: frozenset[Problem], now: datetime) -> list[Event]:
    """certificate_unreadable once per new problem, in path order."""
    return [
        _events.CertificateUnreadable(
            store=source,
            path=problem.path,
            reason=problem.reason,
            detail=problem.detail,
            seen_at=now,
        )
        for problem in sorted(fresh, key=lambda p: (p.path, p.reason))
    ]


def _absent(scan: ScanResult) -> bool:
    """The source's root does not exist (certbot has not run yet): what appears in it
    later is new, so its certificates are `certificate_issued`. A root that exists but
    cannot be read (permission_denied) may hold old certificates: it stays unbaselined."""
    return (
        scan.failed and bool(scan.problems) and all(p.reason == "not_found" for p in scan.problems)
    )


def stale_deployments(
    served: SourceSnapshot, held: Iterable[Observation], now: datetime
) -> tuple[SourceSnapshot, list[Event]]:
    """deployment_stale for endpoints serving an older certificate than a store holds.

    A store's leaf counts when it covers every name the endpoint serves, is already
    valid, and expires later; each (endpoint, served, newer) is reported once.
    """
    events: list[Event] = []
    marks: set[Stale] = set()
    candidates = [o for o in held if o.role == "leaf" and o.certificate.not_before <= now]
    for lineage, observation in served.certificates.items():
        names = {name.lower() for name in observation.domains}
        newer = [
            o
            for o in candidates
            if names <= {name.lower() for name in o.domains}
            and o.certificate.not_after > observation.certificate.not_after
        ]
        if not newer:
            continue
        best = max(newer, key=lambda o: o.certificate.not_after)
        mark = (lineage, observation.fingerprint, best.fingerprint)
        marks.add(mark)
        if mark in served.stale:
            continue
        events.append(
            _events.DeploymentStale(
                **certificate_fields(served.source, observation),
                host=lineage.removeprefix("tls:"),
                newer_expires_at=best.certificate.not_after,
                newer_fingerprint=best.fingerprint,
                newer_path=best.path,
            )
        )
    return replace(served, stale=frozenset(marks)), events


def _lifecycle(
    source: str,
    before: Mapping[str, Observation],
    current: Mapping[str, Observation],
    authorities: Mapping[str, Authority],
    policy: Policy,
) -> list[Event]:
    """certificate_issued / certificate_renewed (+ certificate_changed, what the renewal
    changed; + ca_certificate_issued) for leaves."""
    events: list[Event] = []
    for lineage, observation in current.items():
        old = before.get(lineage)
        if old is observation:  # shown as last pass left it (it only came due): no change
            continue
        if observation.role != "leaf":
            continue
        if old is None:
            events.append(_events.CertificateIssued(**certificate_fields(source, observation)))
        elif old.fingerprint == observation.fingerprint:
            continue
        elif observation.certificate.not_after > old.certificate.not_after:
            events.append(
                _events.CertificateRenewed(
                    **certificate_fields(source, observation),
                    previous_expires_at=old.certificate.not_after,
                )
            )
            if changes := compare(old, observation, policy.ignore_changes):
                events.append(
                    _events.CertificateChanged(
                        **certificate_fields(source, observation), changes=tuple(changes)
                    )
                )
        else:
            continue  # replaced by an older certificate (a restored backup): not a renewal
        signer = observation.certificate.signed_by
        if signer is not None:
            authority = authorities.get(signer)
            events.append(
                _events.CACertificateIssued(
                    **_context(source, observation),
                    name=observation.domain,
                    names=observation.domains,
                    is_client=observation.certificate.is_client,
                    expires_at=observation.certificate.not_after,
                    ca=authority.cn if authority else observation.certificate.issuer_cn,
                )
            )
    return events


def _removed(
    source: str,
    before: Mapping[str, Observation],
    current: Mapping[str, Observation],
    retired: frozenset[str],
) -> list[Event]:
    return [
        _events.CertificateRemoved(**certificate_fields(source, observation))
        for lineage, observation in before.items()
        if lineage not in current and lineage not in retired and observation.role == "leaf"
    ]


def _authorities(
    source: str, before: Mapping[str, Observation], current: Mapping[str, Observation]
) -> list[Event]:
    """ca_initialized once per CA certificate, baseline included."""
    events: list[Event] = []
    for lineage, observation in current.items():
        old = before.get(lineage)
        if old is observation:
            continue
        if observation.role == "ca" and (old is None or old.fingerprint != observation.fingerprint):
            events.append(
                _events.CertificateAuthorityInitialized(
                    **_context(source, observation),
                    cn=observation.certificate.subject_cn or observation.domain,
                    expires_at=observation.certificate.not_after,
                )
            )
    return events


def _expiring(
    source: str, observation: Observation, threshold: str, now: datetime
) -> CertificateExpiring:
    return _events.CertificateExpiring(
        **certificate_fields(source, observation),
        days_remaining=days_remaining(observation.certificate.not_after, now),
        threshold=threshold,
    )


class _Context(TypedDict):
    store: str
    lineage: str
    path: str
    fingerprint: str
    serial: str
    issuer: str
    not_before: datetime


class CertificateFields(_Context):
    """The certificate fields every certificate event carries (ARI's too)."""

    domain: str
    domains: tuple[str, ...]
    expires_at: datetime


def _context(source: str, observation: Observation) -> _Context:
    facts = observation.certificate
    return {
        "store": source,
        "lineage": observation.lineage,
        "path": observation.path,
        "fingerprint": facts.fingerprint,
        "serial": facts.serial,
        "issuer": facts.issuer,
        "not_before": facts.not_before,
    }


def certificate_fields(source: str, observation: Observation) -> CertificateFields:
    """The fields naming `observation` in `source`, shared by every certificate event:
    _context's and three more."""
    return {
        **_context(source, observation),
        "domain": observation.domain,
        "domains": observation.domains,
        "expires_at": observation.certificate.not_after,
    }


__all__ = [
    "EXPIRED",
    "OVERDUE",
    "Authority",
    "CertificateFields",
    "Policy",
    "SourceSnapshot",
    "Stale",
    "certificate_fields",
    "days_remaining",
    "detect",
]
