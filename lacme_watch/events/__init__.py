"""Typed lifecycle events: lacme's seven kinds, with lacme's names and fields, and ours.

The data fields of the seven lacme kinds are exactly those of ``lacme.events``,
so code and dashboards written against lacme keep working. Every event may also
carry context (which store saw it, the path, the fingerprint...), kept in the
shared base class so one serializer handles them all. The name of a kind lives
in ``kind``, since ``name`` is a data field of ``ca_certificate_issued``.

One module per family of kinds (base, lacme, lifecycle, renewal, chains); this package
is the one place that lists them all, in `EVENT_TYPES`.

The families load on first use (PEP 562): a pass that finds nothing new builds none
of the event classes. `KINDS` names every kind without loading any.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

    EVENT_TYPES: dict[str, type[Event]]
    """Every kind lacme-watch knows, by its wire name; serialization goes through here."""

__all__ = [
    "EVENT_TYPES",
    "KINDS",
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
    "event_type",
    "lacme_fields",
]

_FAMILIES: dict[str, tuple[str, str]] = {
    "certificate_issued": ("lacme", "CertificateIssued"),
    "certificate_renewed": ("lacme", "CertificateRenewed"),
    "certificate_expiring": ("lacme", "CertificateExpiring"),
    "challenge_failed": ("lacme", "ChallengeFailed"),
    "rate_limit_warning": ("lacme", "RateLimitWarning"),
    "ca_initialized": ("lacme", "CertificateAuthorityInitialized"),
    "ca_certificate_issued": ("lacme", "CACertificateIssued"),
    "certificate_removed": ("lifecycle", "CertificateRemoved"),
    "certificate_revoked": ("lifecycle", "CertificateRevoked"),
    "certificate_unreadable": ("lifecycle", "CertificateUnreadable"),
    "deployment_stale": ("lifecycle", "DeploymentStale"),
    "renewal_overdue": ("renewal", "RenewalOverdue"),
    "renewal_agent_stale": ("renewal", "RenewalAgentStale"),
    "renewal_agent_run": ("renewal", "RenewalAgentRun"),
    "certificate_changed": ("renewal", "CertificateChanged"),
    "renewal_window_moved": ("renewal", "RenewalWindowMoved"),
    "heartbeat": ("lifecycle", "Heartbeat"),
    "chain_problem": ("chains", "ChainProblem"),
    "deployment_mismatch": ("chains", "DeploymentMismatch"),
    "crl_expiring": ("chains", "CrlExpiring"),
    "crl_deployment_stale": ("chains", "CrlDeploymentStale"),
    "state_reset": ("lifecycle", "StateReset"),
}
"""Each kind's wire name -> (family module, class), in `EVENT_TYPES` order."""

KINDS: tuple[str, ...] = tuple(_FAMILIES)
"""Every kind's wire name, in `EVENT_TYPES` order, without loading a class."""

_HOMES: dict[str, str] = {
    **{name: family for family, name in _FAMILIES.values()},
    "CertificateEvent": "base",
    "Event": "base",
    "lacme_fields": "base",
    "Change": "renewal",
    "ChangeValue": "renewal",
}
"""Each importable name -> its family module: every kind's class, and the rest."""


def event_type(kind: str) -> type[Event] | None:
    """The class of one kind by its wire name, loading only its family; None for a name
    lacme-watch does not know. What decodes and routes one event uses."""
    home = _FAMILIES.get(kind)
    if home is None:
        return None
    family, name = home
    found: type[Event] = getattr(importlib.import_module(f".{family}", __name__), name)
    return found


def _event_types() -> dict[str, type[Event]]:
    return {kind: found for kind in KINDS if (found := event_type(kind)) is not None}


def __getattr__(name: str) -> object:
    value: object
    if name == "EVENT_TYPES":
        value = _event_types()
    elif name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    elif name in _HOMES.values() or name == "cloudevents":
        return importlib.import_module(f".{name}", __name__)  # a family, or the codec
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next lookup is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
