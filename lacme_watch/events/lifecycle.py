"""What else happens to a certificate or to lacme-watch itself: removed, revoked, unreadable,
served but not reloaded; the heartbeat and a reset of the state database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from ..wording import plural
from .base import CertificateEvent, Event, day, moments


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
        return f"{self.kind}: {self.domain} revoked ({self.reason}) on {day(self.revoked_at)}"


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
            f" {moments(self.expires_at, self.newer_expires_at)[0]}; the store has one until"
            f" {moments(self.expires_at, self.newer_expires_at)[1]}"
        )


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
