"""The public surface is pinned: a change here is a change for plugin authors."""

from __future__ import annotations

import lacme_watch


def test_public_api_is_pinned() -> None:
    assert sorted(lacme_watch.__all__) == sorted(
        [
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
    )
    for name in lacme_watch.__all__:
        assert hasattr(lacme_watch, name), name


def test_built_in_plugins_register_through_entry_points() -> None:
    from importlib.metadata import entry_points

    assert {e.name for e in entry_points(group="lacme_watch.sinks")} >= {"log"}
    assert {e.name for e in entry_points(group="lacme_watch.stores")} >= {"lacme", "pem"}
    assert {e.name for e in entry_points(group="lacme_watch.authorities")} >= {"lacme"}
