"""What the configuration file becomes: frozen values, read once, passed everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ..ari.settings import AriSettings
from ..detection.ratelimits import RateLimits
from ..detection.renewal import DEFAULT_AGENT_STALE_AFTER, RenewalPolicy
from ..detection.thresholds import Policy
from ..options import format_duration
from ..plugins import Source
from ..reading.guarded import DEFAULT_MAX_FILE_SIZE
from ..sources.crl import RevocationOptions
from .routes import RetryPolicy, SinkRoute

DEFAULT_SCAN = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When the daemon scans: every `interval`, or on a 5-field `cron` expression."""

    interval: timedelta | None = DEFAULT_SCAN
    cron: str | None = None
    deliver: timedelta = timedelta(minutes=1)
    """How often the daemon retries pending deliveries between scans."""
    jitter: timedelta = timedelta(0)
    """Random delay added to each scan, so a fleet does not scan in lockstep."""
    timezone: str | None = None
    """For cron expressions; None is the system's time zone."""

    def describe(self) -> str:
        if self.cron or self.interval is None:
            return f"on cron '{self.cron}'"
        return f"every {format_duration(self.interval)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRenewal:
    """Keys every store and authority accepts about its renewals."""

    renew_before: RenewalPolicy | None = None
    """`renew_before`: replaces (or, for pem, tls and easy-rsa, supplies) the owner's policy."""
    no_policy: bool = False
    """`renew_before: off`: nobody renews these automatically; no renewal_overdue."""
    agent_stale_after: timedelta = DEFAULT_AGENT_STALE_AFTER
    """renewal_agent_stale when no run of the store's renewal agent was seen for this long."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsOptions:
    """Where Prometheus metrics go: an HTTP listener (daemon) and/or a textfile."""

    listen: str | None = None
    textfile: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything a pass needs, validated."""

    path: str | None
    state_dir: Path
    host: str
    stores: tuple[Source, ...]
    authorities: tuple[Source, ...]
    policy: Policy = field(default_factory=Policy)
    chain: bool = True
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    schedule: Schedule = field(default_factory=Schedule)
    sinks: tuple[SinkRoute, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    heartbeat: bool = False
    metrics: MetricsOptions = field(default_factory=MetricsOptions)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    spool: str | None = None
    """Directory other processes (the lacme bridge, hooks) drop CloudEvent files into."""
    ari: AriSettings = field(default_factory=AriSettings)
    """ACME Renewal Information (RFC 9773): asked of each store's own CA."""
    warnings: tuple[str, ...] = ()
    trust: tuple[str, ...] = ()
    """PEM bundles of roots that chains may end at, besides the system's and watched CAs'."""
    revocation: RevocationOptions = field(default_factory=RevocationOptions)
    revocation_overrides: Mapping[str, bool] = field(default_factory=dict)
    """Source id -> `revocation.crl` set on that store, overriding the global one."""

    def checks_revocation(self, source_id: str) -> bool:
        """Whether this source's certificates are looked up in their CRLs (network)."""
        return self.revocation_overrides.get(source_id, self.revocation.crl)

    renewal: Mapping[str, SourceRenewal] = field(default_factory=dict)
    """Per source id; a source not named here has the defaults."""

    @property
    def sources(self) -> tuple[Source, ...]:
        """Authorities first: stores check signatures against their keys."""
        return (*self.authorities, *self.stores)

    def renewal_of(self, source: str) -> SourceRenewal:
        return self.renewal.get(source) or SourceRenewal()
