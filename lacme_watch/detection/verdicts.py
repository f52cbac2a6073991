"""One source's checks after detect(), in one pass: its chains (a verdict kept until
its `until`), revocation, the names an endpoint answers for, CRL freshness; the marks
they leave in the snapshot and the events for the new ones (verify.py runs them)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509

from .. import events as _events
from ..observations import CertificateFacts, CrlSeen, Observation, Problem
from ..reading.certfacts import signers_digest
from ..sources.crl import CrlFetcher, Revocation
from . import chains, freshness
from .chains import Anchors, Finding
from .detect import SourceSnapshot, certificate_fields, unreadable_events
from .freshness import Mark, unread_crl_marks
from .thresholds import Policy

if TYPE_CHECKING:
    from ..events import CertificateRevoked, ChainProblem, Event

_CHAIN_MARKS = ("chain:", "mismatch:")


@dataclass(slots=True, kw_only=True)
class SourceChecks:
    """One source's checks in one pass: the marks found and the events they cause."""

    source: str
    before: frozenset[Mark]
    roots: Callable[[], Sequence[x509.Certificate]]
    signers: tuple[x509.Certificate, ...]
    """The pass's watched CAs so far: anchors beside the roots."""
    fetcher: CrlFetcher | None
    policy: Policy
    now: datetime
    marks: set[Mark] = field(default_factory=set)
    analysed: set[str] = field(default_factory=set)
    crl_lineages: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    problems: set[Problem] = field(default_factory=set)
    _indexed: dict[tuple[str, str], list[Mark]] | None = None
    _anchors: Anchors | None = None
    _trusted: str | None = None

    @property
    def anchors(self) -> Anchors:
        """The roots and the watched CAs, indexed when a chain or a CRL first needs them."""
        if self._anchors is None:
            self._anchors = Anchors([*self.roots(), *self.signers])
        return self._anchors

    @property
    def trusted(self) -> str:
        """Names the set of anchors: a chain judged against other roots is judged again."""
        if self._trusted is None:
            self._trusted = signers_digest([*self.roots(), *self.signers])
        return self._trusted

    until: float | None = None
    """The earliest `until` of a chain verdict this pass (epoch; None: none ends)."""
    _policy_key: str = field(init=False)
    """Names the expiry policy a lifetime verdict was reached under."""

    def __post_init__(self) -> None:
        self._policy_key = hashlib.sha256(repr(self.policy).encode()).hexdigest()[:12]

    def certificate(
        self,
        observation: Observation,
        location: str,
        facts: Sequence[CertificateFacts],
        load: Callable[[], Sequence[x509.Certificate] | None],
        *,
        chain: bool,
        unchanged: bool,
        judged: Sequence[Finding] | None = None,
    ) -> None:
        """Revocation of the leaf, and (for a chain) what is wrong with the chain
        (`judged`: its structure, found by the reader as it parsed the file).

        Structure needs the certificates themselves; an unchanged file already judged
        against the same anchors keeps last pass's verdict without being read again,
        and, until the next instant a lifetime threshold of its chain is crossed (kept
        in its `checked` mark), last pass's lifetime verdict too, its facts not decoded.
        """
        certificates = load() if self.fetcher is not None else None
        if certificates:
            leaf = certificates[0]
            self._revocation(observation, leaf, self._issuer(leaf, certificates))
        if not chain:
            return
        self.analysed.add(observation.lineage)
        name = chains.digest([f.fingerprint for f in facts])
        prefix = f"chain:{name}:"
        checked = f"{prefix}checked:{self.trusted}"
        key = (observation.lineage, observation.fingerprint)
        kept = [m for m in self._before_by_certificate().get(key, ()) if m[2].startswith(prefix)]
        verdict = next((m[2] for m in kept if m[2].split(":", 4)[:4] == checked.split(":")), None)
        findings: list[Finding] = []
        if unchanged and verdict is not None:
            if self.fetcher is None and (until := self._lifetimes_hold(verdict, checked)):
                self.marks.update(kept)  # nothing new to say: every finding is marked already
                if until != "never":
                    self._ends(int(until))
                return
            self.marks |= {m for m in kept if m[2].removeprefix(prefix) in chains.STRUCTURAL}
        elif judged is not None:
            findings += judged
        else:
            certificates = certificates or load()
            if not certificates:
                return
            findings += chains.structure(certificates, self.anchors)
        findings += chains.lifetimes(facts, self.now, self.policy)
        self.marks.add((*key, f"{checked}:{self._policy_key}:{self._until(facts)}"))
        if self.fetcher is not None and certificates:
            findings += self._revoked_intermediates(certificates)
        reported: set[str] = set()
        for finding in findings:
            label = prefix + finding.reason
            if finding.threshold:
                label += f":{finding.threshold}"
            mark = (observation.lineage, observation.fingerprint, label)
            self.marks.add(mark)
            if mark in self.before or finding.reason in reported:
                continue  # several expiring thresholds at once: the most urgent speaks
            reported.add(finding.reason)
            self.events.append(
                _chain_event(self.source, observation, location, facts[finding.position], finding)
            )

    def _until(self, facts: Sequence[CertificateFacts]) -> str:
        """When chains.lifetimes() may next say otherwise: the first threshold (or expiry)
        after now of a certificate after the leaf; `never` once all are crossed."""
        crossings = [
            self.policy.next_crossing(f.not_before, f.not_after, self.now) for f in facts[1:]
        ]
        found = [crossing for crossing in crossings if crossing is not None]
        if not found:
            return "never"
        until = int(min(found).timestamp())
        self._ends(until)
        return str(until)

    def _ends(self, until: int) -> None:
        self.until = until if self.until is None else min(self.until, until)

    def _lifetimes_hold(self, verdict: str, checked: str) -> str | None:
        """Its `until` when last pass's lifetime verdict (`checked:<anchors>:<policy>:
        <until>`) still holds now; None when the chain must be judged again."""
        policy, _, until = verdict.removeprefix(checked).lstrip(":").partition(":")
        if policy != self._policy_key or not until:
            return None
        if until == "never" or self.now.timestamp() < int(until):
            return until
        return None

    def _before_by_certificate(self) -> dict[tuple[str, str], list[Mark]]:
        """Last pass's marks by (lineage, fingerprint), built once per source."""
        if self._indexed is None:
            self._indexed = {}
            for mark in self.before:
                self._indexed.setdefault(mark[:2], []).append(mark)
        return self._indexed

    def mismatch(self, observation: Observation, requested: str | None) -> None:
        if not requested or chains.covers(observation.certificate.names, requested):
            return
        mark = (observation.lineage, observation.fingerprint, f"mismatch:{requested.lower()}")
        self.marks.add(mark)
        if mark in self.before:
            return
        facts = observation.certificate
        self.events.append(
            _events.DeploymentMismatch(
                store=self.source,
                lineage=observation.lineage,
                path=observation.path,
                fingerprint=facts.fingerprint,
                serial=facts.serial,
                issuer=facts.issuer,
                not_before=facts.not_before,
                host=observation.lineage.removeprefix("tls:"),
                domain=requested,
                domains=facts.names,
                expires_at=facts.not_after,
                requested_name=requested,
            )
        )

    def crls(self, seen: Iterable[CrlSeen]) -> None:
        listed = list(seen)
        self.crl_lineages |= {crl.lineage for crl in listed}
        marks, events = freshness.crl_freshness(
            self.source, listed, self.before, self.policy, self.now
        )
        self.marks |= marks
        self.events += events

    def _issuer(
        self, certificate: x509.Certificate, chain: Sequence[x509.Certificate]
    ) -> x509.Certificate | None:
        for candidate in chain:
            if candidate is not certificate and chains.signs(candidate, certificate):
                return candidate
        return self.anchors.issuer_of(certificate)

    def _revocation(
        self, observation: Observation, leaf: x509.Certificate, issuer: x509.Certificate | None
    ) -> None:
        assert self.fetcher is not None  # noqa: S101  # only called when revocation is on
        if issuer is None:
            return  # no issuer to verify a CRL with; an incomplete chain is reported as such
        found = self.fetcher.check(leaf, issuer)
        if isinstance(found, Problem):
            self.problems.add(found)
        elif isinstance(found, Revocation):
            mark = (observation.lineage, observation.fingerprint, "revoked:crl")
            self.marks.add(mark)
            if mark not in self.before:
                self.events.append(_revoked(self.source, observation, found))

    def _revoked_intermediates(self, chain: Sequence[x509.Certificate]) -> list[Finding]:
        assert self.fetcher is not None  # noqa: S101  # only called when revocation is on
        findings: list[Finding] = []
        for position, certificate in enumerate(chain[1:], start=1):
            issuer = self._issuer(certificate, chain)
            if issuer is None or issuer is certificate:
                continue
            found = self.fetcher.check(certificate, issuer)
            if isinstance(found, Problem):
                self.problems.add(found)
            elif isinstance(found, Revocation):
                findings.append(Finding(reason="revoked", position=position))
                break
        return findings

    def finish(
        self, after: SourceSnapshot, previous: SourceSnapshot | None
    ) -> tuple[SourceSnapshot, list[Event]]:
        kept = after.reported
        if self.analysed:  # their chain and name marks are this pass's (self.marks)
            kept = frozenset(
                mark
                for mark in kept
                if not (mark[0] in self.analysed and mark[2].startswith(_CHAIN_MARKS))
            )
        # detect() keeps marks only for certificates; a CRL not read this pass keeps its own.
        # Added only if there are any: a pass where 5,000 came due holds ~15,000 marks.
        more = unread_crl_marks(self.before, self.crl_lineages) | self.marks
        old_problems = previous.problems if previous else frozenset()
        self.events += unreadable_events(
            self.source, frozenset(self.problems) - old_problems, self.now
        )
        updated = replace(
            after,
            reported=kept | more if more else kept,
            problems=after.problems | self.problems,
        )
        return updated, self.events


def _chain_event(
    source: str,
    observation: Observation,
    location: str,
    concerned: CertificateFacts,
    finding: Finding,
) -> ChainProblem:
    return _events.ChainProblem(
        store=source,
        lineage=observation.lineage,
        path=observation.path,
        fingerprint=observation.fingerprint,
        serial=observation.certificate.serial,
        issuer=observation.certificate.issuer,
        domain=observation.domain,
        location=location,
        reason=finding.reason,
        certificate_subject=concerned.subject,
        certificate_serial=concerned.serial,
        certificate_fingerprint=concerned.fingerprint,
        certificate_not_after=concerned.not_after,
        threshold=finding.threshold,
    )


def _revoked(source: str, observation: Observation, found: Revocation) -> CertificateRevoked:
    return _events.CertificateRevoked(
        **certificate_fields(source, observation),
        reason=found.reason,
        revoked_at=found.revoked_at,
    )
