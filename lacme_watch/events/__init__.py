"""Typed lifecycle events: lacme's seven kinds, with lacme's names and fields, and ours.

The data fields of the seven lacme kinds are exactly those of ``lacme.events``,
so code and dashboards written against lacme keep working. Every event may also
carry context (which store saw it, the path, the fingerprint...), kept in the
shared base class so one serializer handles them all. The name of a kind lives
in ``kind``, since ``name`` is a data field of ``ca_certificate_issued``.

One module per family of kinds (base, lacme, lifecycle, renewal, chains); this package
is the one place that lists them all, in `EVENT_TYPES`.
"""

from __future__ import annotations

from .base import CertificateEvent, Event, lacme_fields
from .chains import ChainProblem, CrlDeploymentStale, CrlExpiring, DeploymentMismatch
from .lacme import (
    CACertificateIssued,
    CertificateAuthorityInitialized,
    CertificateExpiring,
    CertificateIssued,
    CertificateRenewed,
    ChallengeFailed,
    RateLimitWarning,
)
from .lifecycle import (
    CertificateRemoved,
    CertificateRevoked,
    CertificateUnreadable,
    DeploymentStale,
    Heartbeat,
    StateReset,
)
from .renewal import (
    CertificateChanged,
    Change,
    ChangeValue,
    RenewalAgentRun,
    RenewalAgentStale,
    RenewalOverdue,
    RenewalWindowMoved,
)

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
    "ChangeValue",
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
