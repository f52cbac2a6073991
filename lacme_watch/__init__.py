"""lacme-watch: certificate-lifecycle observability for lacme, certbot and private CAs.

Data flow: sources (`stores/`, `authorities/`) read through `reader` into
`observations`; `detect` decides the events; `statedb` commits state and outbox in
one transaction (`passes` runs the whole pass); `dispatch` tells in-process
subscribers and `delivery` hands the outbox to `sinks/`.

This namespace is the public surface for plugin authors and embedders: every event
kind and every type a source or sink names, each bound on first use (see `_HOMES`).
`tests/test_public_api.py` checks that `__all__` is exactly the public names bound
here once looked up, so it cannot drift unnoticed.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from .dispatch.subscribers import EventDispatcher
    from .errors import (
        ConfigError,
        EventFormatError,
        LacmeWatchError,
        SinkError,
        SourceError,
        StoreError,
    )
    from .events import (
        EVENT_TYPES,
        CACertificateIssued,
        CertificateAuthorityInitialized,
        CertificateChanged,
        CertificateEvent,
        CertificateExpiring,
        CertificateIssued,
        CertificateRemoved,
        CertificateRenewed,
        CertificateRevoked,
        CertificateUnreadable,
        ChainProblem,
        ChallengeFailed,
        Change,
        CrlDeploymentStale,
        CrlExpiring,
        DeploymentMismatch,
        DeploymentStale,
        Event,
        Heartbeat,
        RateLimitWarning,
        RenewalAgentRun,
        RenewalAgentStale,
        RenewalOverdue,
        RenewalWindowMoved,
        StateReset,
    )
    from .events.cloudevents import Envelope, from_json, to_cloudevent, to_json
    from .observations import (
        REASONS,
        CertificateFacts,
        CrlSeen,
        Issuance,
        Observation,
        Problem,
        ScanResult,
        ServedChain,
    )
    from .options import Options
    from .plugins import Sink, Source
    from .reading.reader import CertificateReader


__version__ = "0.1.0"

_HOMES: dict[str, str] = {
    "Envelope": "events.cloudevents",
    "from_json": "events.cloudevents",
    "to_cloudevent": "events.cloudevents",
    "to_json": "events.cloudevents",
    "EventDispatcher": "dispatch.subscribers",
    "ConfigError": "errors",
    "EventFormatError": "errors",
    "LacmeWatchError": "errors",
    "SinkError": "errors",
    "SourceError": "errors",
    "StoreError": "errors",
    "EVENT_TYPES": "events",
    "CACertificateIssued": "events",
    "CertificateAuthorityInitialized": "events",
    "CertificateChanged": "events",
    "CertificateEvent": "events",
    "CertificateExpiring": "events",
    "CertificateIssued": "events",
    "CertificateRemoved": "events",
    "CertificateRenewed": "events",
    "CertificateRevoked": "events",
    "CertificateUnreadable": "events",
    "ChainProblem": "events",
    "ChallengeFailed": "events",
    "Change": "events",
    "CrlDeploymentStale": "events",
    "CrlExpiring": "events",
    "DeploymentMismatch": "events",
    "DeploymentStale": "events",
    "Event": "events",
    "Heartbeat": "events",
    "RateLimitWarning": "events",
    "RenewalAgentRun": "events",
    "RenewalAgentStale": "events",
    "RenewalOverdue": "events",
    "RenewalWindowMoved": "events",
    "StateReset": "events",
    "REASONS": "observations",
    "CertificateFacts": "observations",
    "CrlSeen": "observations",
    "Issuance": "observations",
    "Observation": "observations",
    "Problem": "observations",
    "ScanResult": "observations",
    "ServedChain": "observations",
    "Options": "options",
    "Sink": "plugins",
    "Source": "plugins",
    "CertificateReader": "reading.reader",
}
"""Where each public name lives. Loaded on first use (PEP 562), so that `import
lacme_watch.cli.commands` for a cron pass does not build every event class, the CloudEvents
codec and the plugin protocols it never touches; `from lacme_watch import X` and
`lacme_watch.X` work as before."""


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        return _submodule(__name__, name)
    value = getattr(_importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # the next lookup is an ordinary one
    return value


def _submodule(package: str, name: str) -> object:
    """`lacme_watch.events` after a bare `import lacme_watch`, as when this module
    imported them all; importing a submodule binds it here. Anything else: no such
    attribute."""
    if not name.startswith("__"):
        try:
            return _importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise  # the submodule exists and lacks one of its own imports
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "EVENT_TYPES",
    "REASONS",
    "CACertificateIssued",
    "CertificateAuthorityInitialized",
    "CertificateChanged",
    "CertificateEvent",
    "CertificateExpiring",
    "CertificateFacts",
    "CertificateIssued",
    "CertificateReader",
    "CertificateRemoved",
    "CertificateRenewed",
    "CertificateRevoked",
    "CertificateUnreadable",
    "ChainProblem",
    "ChallengeFailed",
    "Change",
    "ConfigError",
    "CrlDeploymentStale",
    "CrlExpiring",
    "CrlSeen",
    "DeploymentMismatch",
    "DeploymentStale",
    "Envelope",
    "Event",
    "EventDispatcher",
    "EventFormatError",
    "Heartbeat",
    "Issuance",
    "LacmeWatchError",
    "Observation",
    "Options",
    "Problem",
    "RateLimitWarning",
    "RenewalAgentRun",
    "RenewalAgentStale",
    "RenewalOverdue",
    "RenewalWindowMoved",
    "ScanResult",
    "ServedChain",
    "Sink",
    "SinkError",
    "Source",
    "SourceError",
    "StateReset",
    "StoreError",
    "__version__",
    "from_json",
    "to_cloudevent",
    "to_json",
]
