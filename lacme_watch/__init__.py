"""lacme-watch: certificate-lifecycle observability for lacme, certbot and private CAs.

The public surface for plugin authors and embedders; `tests/test_public_api.py`
pins it so it cannot drift unnoticed.
"""

from __future__ import annotations

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
    CertificateExpiring,
    CertificateIssued,
    CertificateRemoved,
    CertificateRenewed,
    CertificateUnreadable,
    ChallengeFailed,
    Event,
    RateLimitWarning,
)
from .observations import CertificateFacts, Observation, Problem, ScanResult
from .options import Options
from .plugins import Sink, Source

__version__ = "0.1.0"

__all__ = [
    "EVENT_TYPES",
    "CACertificateIssued",
    "CertificateAuthorityInitialized",
    "CertificateExpiring",
    "CertificateFacts",
    "CertificateIssued",
    "CertificateRemoved",
    "CertificateRenewed",
    "CertificateUnreadable",
    "ChallengeFailed",
    "ConfigError",
    "Envelope",
    "Event",
    "EventDispatcher",
    "EventFormatError",
    "LacmeWatchError",
    "Observation",
    "Options",
    "Problem",
    "RateLimitWarning",
    "ScanResult",
    "Sink",
    "SinkError",
    "Source",
    "SourceError",
    "StoreError",
    "__version__",
    "from_json",
    "to_cloudevent",
    "to_json",
]
