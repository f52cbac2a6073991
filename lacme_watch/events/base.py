"""Where every event kind starts: the context all events carry, and how they are worded."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar


def day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def moments(new: datetime, old: datetime) -> tuple[str, str]:
    """Two expiry dates that differ where they are printed: with the time when the days match."""
    if day(new) != day(old):
        return day(new), day(old)
    return new.strftime("%Y-%m-%d %H:%M:%SZ"), old.strftime("%Y-%m-%d %H:%M:%SZ")


def moment(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


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
