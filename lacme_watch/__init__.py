"""lacme-watch: certificate-lifecycle observability for lacme, certbot and private CAs.

Data flow: sources (`stores/`, `authorities/`) read through `reader` into
`observations`; `detect` decides the events; `statedb` commits state and outbox in
one transaction (`passes` runs the whole pass); `dispatch` tells in-process
subscribers and `delivery` hands the outbox to `sinks/`.

This namespace is the public surface for plugin authors and embedders: every event
kind and every type a source or sink names. `tests/test_public_api.py` checks that
`__all__` is exactly the public names bound here, so it cannot drift unnoticed.
"""

from .cloudevents import Envelope, from_json, to_cloudevent, to_json
from .dispatch import EventDispatcher
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
from .reader import CertificateReader

__version__ = "0.1.0"

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
