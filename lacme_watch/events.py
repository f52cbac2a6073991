"""Typed lifecycle events: lacme's seven kinds, with lacme's names and fields, and ours.

The data fields of the seven lacme kinds are exactly those of ``lacme.events``,
so code and dashboards written against lacme keep working. Every event may also
carry context (which store saw it, the path, the fingerprint...), kept in the
shared base class so one serializer handles them all. The name of a kind lives
in ``kind``, since ``name`` is a data field of ``ca_certificate_issued``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .wording import plural

__all__ = [
    "EVENT_TYPES",
    "CACertificateIssued",
    "CertificateAuthorityInitialized",
    "CertificateChanged",
    "CertificateEvent",
    "CertificateExpiring",
    "CertificateIssued",
    "CertificateRemoved",
    "CertificateRenewed",
    "CertificateRevoked",
    "CertificateUnreadable",
    "ChainProblem",
    "ChallengeFailed",
    "Change",
    "CrlDeploymentStale",
    "CrlExpiring",
    "DeploymentMismatch",
    "DeploymentStale",
    "Event",
    "Heartbeat",
    "RateLimitWarning",
    "RenewalAgentRun",
    "RenewalAgentStale",
    "RenewalOverdue",
    "RenewalWindowMoved",
    "StateReset",
    "lacme_fields",
]


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _moments(new: datetime, old: datetime) -> tuple[str, str]:
    """Two expiry dates that differ where they are printed: with the time when the days match."""
    if _day(new) != _day(old):
        return _day(new), _day(old)
    return new.strftime("%Y-%m-%d %H:%M:%SZ"), old.strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event carries besides its own fields: where it was seen."""

    kind: ClassVar[str]
    heading: ClassVar[str] = "Other events"
    """How a digest (the email sink) titles this kind's section."""
    urgency: ClassVar[int] = 1000
    """A digest's order: lower comes first; what needs a person today leads."""
    routine: ClassVar[bool] = False
    """Bookkeeping, not news: delivered only to sinks that name the kind in `events:`."""

    store: str | None = None
    lineage: str | None = None
    path: str | None = None
    fingerprint: str | None = None
    serial: str | None = None
    issuer: str | None = None
    not_before: datetime | None = None
    host: str | None = None
    test: bool | None = None
    """True on the event `lacme-watch sinks test` sends: a drill, not news."""

    @property
    def subject(self) -> str:
        """The CloudEvents subject: primary domain, CA name or registered domain."""
        raise NotImplementedError

    def identity(self) -> tuple[str, ...]:
        """What makes two occurrences the same event; the event id derives from it."""
        return (self.lineage or "", self.fingerprint or "")

    def summary(self) -> str:
        """One human line, used by the text log, email subjects and shell hooks."""
        return f"{self.kind}: {self.subject}"

    def line(self) -> str:
        """summary() without the kind: one line under its heading in a digest."""
        return self.summary().partition(": ")[2]

    def section(self) -> tuple[int, str]:
        """(urgency, heading) of the digest section this event goes in: its kind's,
        unless one occurrence is more urgent than its kind (certificate_changed)."""
        return (self.urgency, self.heading)


_CONTEXT_FIELDS = frozenset(field.name for field in dataclasses.fields(Event))


def lacme_fields(event_type: type[Event]) -> tuple[str, ...]:
    """The data fields a kind adds to the shared context, in declaration order."""
    return tuple(
        field.name for field in dataclasses.fields(event_type) if field.name not in _CONTEXT_FIELDS
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateEvent(Event):
    """An event about one certificate lineage."""

    domain: str
    domains: tuple[str, ...]
    expires_at: datetime

    @property
    def subject(self) -> str:
        return self.domain


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateIssued(CertificateEvent):
    """A lineage appeared after the store's baseline pass."""

    kind: ClassVar[str] = "certificate_issued"
    heading: ClassVar[str] = "Issued"
    urgency: ClassVar[int] = 80

    def summary(self) -> str:
        return f"{self.kind}: {self.domain} issued, expires {_day(self.expires_at)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRenewed(CertificateEvent):
    """A lineage's certificate was replaced by one that expires later."""

    kind: ClassVar[str] = "certificate_renewed"
    heading: ClassVar[str] = "Renewed"
    urgency: ClassVar[int] = 70
    previous_expires_at: datetime

    def summary(self) -> str:
        new, old = _moments(self.expires_at, self.previous_expires_at)
        return f"{self.kind}: {self.domain} renewed, expires {new} (was {old})"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateExpiring(CertificateEvent):
    """A certificate crossed one of the configured expiry thresholds (or expired)."""

    kind: ClassVar[str] = "certificate_expiring"
    heading: ClassVar[str] = "Expiring"
    urgency: ClassVar[int] = 10
    days_remaining: int
    threshold: str | None = None

    def identity(self) -> tuple[str, ...]:
        return (self.lineage or "", self.fingerprint or "", self.threshold or "")

    def summary(self) -> str:
        if self.days_remaining < 0:
            state = f"EXPIRED {plural(-self.days_remaining, 'day')} ago"
        else:
            state = f"{plural(self.days_remaining, 'day')} left"
        drill = "TEST " if self.test else ""
        return f"{self.kind}: {drill}{self.domain} expires {_day(self.expires_at)} ({state})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeFailed(Event):
    """An ACME challenge failed validation."""

    kind: ClassVar[str] = "challenge_failed"
    heading: ClassVar[str] = "Challenge failed"
    urgency: ClassVar[int] = 30
    domain: str
    challenge_type: str
    error: str
    occurred_at: datetime | None = None
    """When the ACME client saw it (its log line), if known."""

    @property
    def subject(self) -> str:
        return self.domain

    def identity(self) -> tuple[str, ...]:
        when = self.occurred_at.isoformat() if self.occurred_at else ""
        return (self.domain, self.challenge_type, self.error, when, self.path or "")

    def summary(self) -> str:
        return f"{self.kind}: {self.domain} {self.challenge_type}: {self.error}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitWarning(Event):
    """Issuance for a registered domain is approaching a rate limit."""

    kind: ClassVar[str] = "rate_limit_warning"
    heading: ClassVar[str] = "Near a rate limit"
    urgency: ClassVar[int] = 40
    registered_domain: str
    current_count: int
    limit: int
    window_hours: int
    rule: str | None = None
    """registered_domain, exact_set or failed_authorizations (lacme-watch's own checks)."""
    window_start: datetime | None = None

    @property
    def subject(self) -> str:
        return self.registered_domain

    def identity(self) -> tuple[str, ...]:
        start = self.window_start.isoformat() if self.window_start else ""
        return (
            self.registered_domain,
            str(self.limit),
            str(self.window_hours),
            self.rule or "",
            start,
        )

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.registered_domain} {self.current_count}/{self.limit}"
            f" in {self.window_hours}h"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateAuthorityInitialized(Event):
    """A CA root was seen for the first time (created, or first watched)."""

    kind: ClassVar[str] = "ca_initialized"
    heading: ClassVar[str] = "Certificate authorities"
    urgency: ClassVar[int] = 90
    cn: str
    expires_at: datetime

    @property
    def subject(self) -> str:
        return self.cn

    def summary(self) -> str:
        return f"{self.kind}: {self.cn}, expires {_day(self.expires_at)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CACertificateIssued(Event):
    """A watched CA signed a new certificate (verified by signature, not by name)."""

    kind: ClassVar[str] = "ca_certificate_issued"
    heading: ClassVar[str] = "Signed by a watched CA"
    urgency: ClassVar[int] = 60
    name: str
    names: tuple[str, ...]
    is_client: bool
    expires_at: datetime
    ca: str | None = None

    @property
    def subject(self) -> str:
        return self.ca or self.name

    def summary(self) -> str:
        role = "client" if self.is_client else "server"
        return f"{self.kind}: {self.ca or 'CA'} signed {role} {self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRemoved(CertificateEvent):
    """A lineage vanished from a store that was read successfully."""

    kind: ClassVar[str] = "certificate_removed"
    heading: ClassVar[str] = "Removed"
    urgency: ClassVar[int] = 50

    def summary(self) -> str:
        return f"{self.kind}: {self.domain} is gone from {self.store}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRevoked(CertificateEvent):
    """A CA revoked a certificate (for a reason other than replacing it)."""

    kind: ClassVar[str] = "certificate_revoked"
    heading: ClassVar[str] = "Revoked"
    urgency: ClassVar[int] = 15
    reason: str
    revoked_at: datetime

    def summary(self) -> str:
        return f"{self.kind}: {self.domain} revoked ({self.reason}) on {_day(self.revoked_at)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentStale(CertificateEvent):
    """A TLS endpoint serves an older certificate than a watched store holds for its names:
    renewed on disk, never reloaded."""

    kind: ClassVar[str] = "deployment_stale"
    heading: ClassVar[str] = "Served but not reloaded"
    urgency: ClassVar[int] = 18
    newer_expires_at: datetime
    newer_fingerprint: str
    newer_path: str | None = None

    def identity(self) -> tuple[str, ...]:
        return (self.lineage or "", self.fingerprint or "", self.newer_fingerprint)

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.host or self.domain} serves a certificate expiring"
            f" {_moments(self.expires_at, self.newer_expires_at)[0]}; the store has one until"
            f" {_moments(self.expires_at, self.newer_expires_at)[1]}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalWindowMoved(CertificateEvent):
    """The CA moved the certificate's ARI renewal window (RFC 9773) early: it asks for
    renewal now, often ahead of a revocation. Once per window."""

    kind: ClassVar[str] = "renewal_window_moved"
    heading: ClassVar[str] = "The CA asks for early renewal (ARI)"
    urgency: ClassVar[int] = 5
    window_start: datetime
    window_end: datetime
    explanation_url: str | None = None
    previous_window_start: datetime | None = None
    previous_window_end: datetime | None = None
    reason: str = "early"
    """`early`: the window opens before two thirds of the lifetime (one half under ten
    days); `moved`: it opens or closes earlier than the CA's previous answer."""
    cert_id: str | None = None
    """The RFC 9773 certificate identifier the CA was asked about."""

    def identity(self) -> tuple[str, ...]:
        return (
            self.lineage or "",
            self.fingerprint or "",
            self.window_start.isoformat(),
            self.window_end.isoformat(),
        )

    def summary(self) -> str:
        why = f" ({self.explanation_url})" if self.explanation_url else ""
        return (
            f"{self.kind}: {self.domain}: the CA asks for renewal between"
            f" {_moment(self.window_start)} and {_moment(self.window_end)}{why}"
        )


def _moment(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateUnreadable(Event):
    """A file that should hold a certificate could not be used; the pass went on."""

    kind: ClassVar[str] = "certificate_unreadable"
    heading: ClassVar[str] = "Unreadable"
    urgency: ClassVar[int] = 20
    reason: str
    detail: str = ""
    seen_at: datetime | None = None

    @property
    def subject(self) -> str:
        return self.path or self.store or ""

    def identity(self) -> tuple[str, ...]:
        seen = self.seen_at.isoformat() if self.seen_at else ""
        return (self.path or "", self.reason, seen)

    def summary(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.kind}: {self.path}: {self.reason}{detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalOverdue(CertificateEvent):
    """The owner's own renewal point (plus a grace) has passed and the lineage was not
    renewed: the renewal silently stopped, long before a fixed threshold would say so."""

    kind: ClassVar[str] = "renewal_overdue"
    heading: ClassVar[str] = "Renewal overdue"
    urgency: ClassVar[int] = 11
    renew_after: datetime
    """When the owner (certbot, dehydrated, lacme, or `renew_before`) should have renewed."""
    days_remaining: int
    policy: str
    """Where renew_after comes from, e.g. `certbot renew_before_expiry = 30 days`."""

    def identity(self) -> tuple[str, ...]:
        base = (self.lineage or "", self.fingerprint or "", "overdue")
        # The CA's window (ARI) can move: each window is its own renewal point.
        return (*base, self.renew_after.isoformat()) if self.policy == "ari" else base

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.domain} should have been renewed by {_day(self.renew_after)}"
            f" ({self.policy}); expires {_day(self.expires_at)}, {self.days_remaining} days left"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalAgentRun(Event):
    """The renewal agent of a store ran (a certbot log header, a dehydrated exit_hook,
    a lacme renewal sweep). Recorded, not delivered, unless a sink names it in `events:`."""

    kind: ClassVar[str] = "renewal_agent_run"
    heading: ClassVar[str] = "Renewal agent runs"
    urgency: ClassVar[int] = 110
    routine: ClassVar[bool] = True
    ran_at: datetime | None = None
    """When it ran; the CloudEvent's time when not given."""

    @property
    def subject(self) -> str:
        return self.store or ""

    def identity(self) -> tuple[str, ...]:
        return (self.ran_at.isoformat() if self.ran_at else "",)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalAgentStale(Event):
    """No run of a store's renewal agent was seen for `agent_stale_after`: the renewer
    itself stopped (a dead timer, a removed cron line), weeks before anything is overdue."""

    kind: ClassVar[str] = "renewal_agent_stale"
    heading: ClassVar[str] = "Renewal agent stopped running"
    urgency: ClassVar[int] = 13
    last_run: datetime
    expected_every: str
    """`agent_stale_after`, as configured (e.g. `2d`)."""

    @property
    def subject(self) -> str:
        return self.store or ""

    def identity(self) -> tuple[str, ...]:
        return (self.last_run.isoformat(),)

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.store}: no renewal run since"
            f" {self.last_run.strftime('%Y-%m-%d %H:%M')} UTC"
            f" (expected every {self.expected_every})"
        )


ChangeValue = str | int | bool | tuple[str, ...] | None
"""What a changed field held: a name list, a key description, a count, a flag."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One thing a renewal changed, as `{field, before, after}` on the wire."""

    field: str
    before: ChangeValue
    after: ChangeValue

    @property
    def urgent(self) -> bool:
        """Something clients relied on is gone: a name, or an extended key usage."""
        if self.field not in ("names", "extended_key_usage"):
            return False
        before = set(self.before) if isinstance(self.before, tuple) else set()
        after = set(self.after) if isinstance(self.after, tuple) else set()
        return bool(before - after)

    @property
    def before_text(self) -> str:
        return _shown(self.before)

    @property
    def after_text(self) -> str:
        return _shown(self.after)

    def describe(self) -> str:
        return f"{self.field}: {self.before_text} -> {self.after_text}"


def _shown(value: ChangeValue) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) or "(none)"
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateChanged(CertificateEvent):
    """A renewal changed what clients or deployments depend on (names, EKU, key, issuer,
    lifetime, chain, revocation pointers); sent beside certificate_renewed."""

    kind: ClassVar[str] = "certificate_changed"
    heading: ClassVar[str] = "Changed by a renewal"
    urgency: ClassVar[int] = 65
    urgent_heading: ClassVar[str] = "A renewal dropped a name or key usage"
    changes: tuple[Change, ...]

    @property
    def urgent(self) -> bool:
        """A dropped name or extended key usage breaks clients: the digest leads with it."""
        return any(change.urgent for change in self.changes)

    def section(self) -> tuple[int, str]:
        return (5, self.urgent_heading) if self.urgent else (self.urgency, self.heading)

    def line(self) -> str:
        return f"{self.domain} (renewed, expires {_day(self.expires_at)})"  # changes follow

    def summary(self) -> str:
        listed = "; ".join(change.describe() for change in self.changes)
        return f"{self.kind}: {self.domain} renewal changed {listed}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Event):
    """A pass finished: counts for a dead-man switch (silence means the watcher is down)."""

    kind: ClassVar[str] = "heartbeat"
    heading: ClassVar[str] = "Heartbeat"
    urgency: ClassVar[int] = 100
    pass_at: datetime
    certificates: int
    sources: int
    sources_failed: int
    events: int
    problems: int

    @property
    def subject(self) -> str:
        return self.host or "lacme-watch"

    def identity(self) -> tuple[str, ...]:
        return (self.pass_at.isoformat(),)

    def summary(self) -> str:
        return (
            f"{self.kind}: {plural(self.certificates, 'certificate')} in"
            f" {plural(self.sources, 'source')}, {plural(self.events, 'event')},"
            f" {plural(self.problems, 'problem')}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainProblem(Event):
    """A stored or served chain that clients may refuse although its leaf is fine."""

    kind: ClassVar[str] = "chain_problem"
    heading: ClassVar[str] = "Broken chains"
    urgency: ClassVar[int] = 16
    domain: str
    location: str
    """The file holding the chain, or `host:port` of the endpoint serving it."""
    reason: str
    """incomplete, misordered, wrong_issuer, expired, expiring,
    intermediate_expires_before_leaf or revoked."""
    certificate_subject: str
    certificate_serial: str
    certificate_fingerprint: str
    certificate_not_after: datetime
    threshold: str | None = None
    """For `expiring`: the threshold crossed (`30d`, `10%`)."""

    @property
    def subject(self) -> str:
        return self.domain

    def identity(self) -> tuple[str, ...]:
        return (
            self.lineage or "",
            self.location,
            self.fingerprint or "",
            self.reason,
            self.certificate_fingerprint,
            self.threshold or "",
        )

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.domain} at {self.location}: {self.reason}"
            f" ({self.certificate_subject}, until {_day(self.certificate_not_after)})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentMismatch(CertificateEvent):
    """A TLS endpoint serves a certificate that does not cover the name it was asked for."""

    kind: ClassVar[str] = "deployment_mismatch"
    heading: ClassVar[str] = "Serving the wrong certificate"
    urgency: ClassVar[int] = 17
    requested_name: str
    """The SNI host name the endpoint was asked for."""

    def identity(self) -> tuple[str, ...]:
        return (self.lineage or "", self.fingerprint or "", self.requested_name)

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.host or self.domain} serves {', '.join(self.domains)},"
            f" not {self.requested_name}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlExpiring(Event):
    """A CRL nears its nextUpdate: once it passes, OpenVPN and mTLS servers refuse everyone."""

    kind: ClassVar[str] = "crl_expiring"
    heading: ClassVar[str] = "CRL about to lapse"
    urgency: ClassVar[int] = 12
    authority: str
    next_update: datetime
    days_remaining: int
    crl_number: int | None = None
    threshold: str | None = None

    @property
    def subject(self) -> str:
        return self.authority

    def identity(self) -> tuple[str, ...]:
        return (self.path or "", self.fingerprint or "", self.threshold or "")

    def summary(self) -> str:
        if self.days_remaining < 0:
            state = f"EXPIRED {-self.days_remaining} days ago"
        else:
            state = f"{self.days_remaining} days left"
        return f"{self.kind}: {self.path} next update {_day(self.next_update)} ({state})"


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlDeploymentStale(Event):
    """A deployed copy of a CRL is older than the one its authority has generated."""

    kind: ClassVar[str] = "crl_deployment_stale"
    heading: ClassVar[str] = "CRL not deployed"
    urgency: ClassVar[int] = 19
    authority: str
    deployed_path: str
    deployed_this_update: datetime
    current_path: str
    current_this_update: datetime
    deployed_number: int | None = None
    current_number: int | None = None
    """None when the CA writes no CRL number (easy-rsa 3.1): thisUpdate tells them apart."""

    @property
    def subject(self) -> str:
        return self.authority

    def identity(self) -> tuple[str, ...]:
        return (self.deployed_path, str(self.current_number), self.current_this_update.isoformat())

    def summary(self) -> str:
        def label(number: int | None, this_update: datetime) -> str:
            return f"CRL {number}" if number is not None else f"a CRL of {_day(this_update)}"

        return (
            f"{self.kind}: {self.deployed_path} holds"
            f" {label(self.deployed_number, self.deployed_this_update)},"
            f" {self.current_path} {label(self.current_number, self.current_this_update)}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StateReset(Event):
    """The state database was damaged (empty, truncated, not SQLite): it was moved aside,
    kept, and a new baseline taken. Until then, what changed may not have been reported."""

    kind: ClassVar[str] = "state_reset"
    heading: ClassVar[str] = "State database reset"
    urgency: ClassVar[int] = 25
    reason: str
    moved_to: str
    reset_at: datetime

    @property
    def subject(self) -> str:
        return self.host or "lacme-watch"

    def identity(self) -> tuple[str, ...]:
        return (self.moved_to,)  # one reset, one event, however often it is recorded

    def summary(self) -> str:
        return (
            f"{self.kind}: the state database {self.path} was unusable ({self.reason});"
            f" kept as {self.moved_to}; a new baseline was taken"
        )


EVENT_TYPES: dict[str, type[Event]] = {
    event_type.kind: event_type
    for event_type in (
        CertificateIssued,
        CertificateRenewed,
        CertificateExpiring,
        ChallengeFailed,
        RateLimitWarning,
        CertificateAuthorityInitialized,
        CACertificateIssued,
        CertificateRemoved,
        CertificateRevoked,
        CertificateUnreadable,
        DeploymentStale,
        RenewalOverdue,
        RenewalAgentStale,
        RenewalAgentRun,
        CertificateChanged,
        RenewalWindowMoved,
        Heartbeat,
        ChainProblem,
        DeploymentMismatch,
        CrlExpiring,
        CrlDeploymentStale,
        StateReset,
    )
}
"""Every kind lacme-watch knows, by its wire name; serialization goes through here."""
