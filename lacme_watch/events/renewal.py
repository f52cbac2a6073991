"""Renewals that stopped or changed something: overdue, the renewer gone quiet, what a
renewal changed, and the CA moving its renewal window (ARI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .base import CertificateEvent, Event, day, moment


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
            f"{self.kind}: {self.domain} should have been renewed by {day(self.renew_after)}"
            f" ({self.policy}); expires {day(self.expires_at)}, {self.days_remaining} days left"
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
        return f"{self.domain} (renewed, expires {day(self.expires_at)})"  # changes follow

    def summary(self) -> str:
        listed = "; ".join(change.describe() for change in self.changes)
        return f"{self.kind}: {self.domain} renewal changed {listed}"


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
            f" {moment(self.window_start)} and {moment(self.window_end)}{why}"
        )
