"""lacme's seven kinds, with exactly the names and data fields of ``lacme.events``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from ..wording import plural, served_at
from .base import CertificateEvent, Event, day, moments


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateIssued(CertificateEvent):
    """A lineage appeared after the store's baseline pass."""

    kind: ClassVar[str] = "certificate_issued"
    heading: ClassVar[str] = "Issued"
    urgency: ClassVar[int] = 80

    def summary(self) -> str:
        return f"{self.kind}: {self.domain} issued, expires {day(self.expires_at)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRenewed(CertificateEvent):
    """A lineage's certificate was replaced by one that expires later."""

    kind: ClassVar[str] = "certificate_renewed"
    heading: ClassVar[str] = "Renewed"
    urgency: ClassVar[int] = 70
    previous_expires_at: datetime

    def summary(self) -> str:
        new, old = moments(self.expires_at, self.previous_expires_at)
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
        where = served_at(self.path)
        return f"{self.kind}: {drill}{self.domain}{where} expires {day(self.expires_at)} ({state})"


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
        return f"{self.kind}: {self.cn}, expires {day(self.expires_at)}"


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
