"""Prometheus metrics: an HTTP endpoint for the daemon, a node-exporter textfile for cron.

Per certificate, the names and labels of enix's x509-certificate-exporter
(`x509_cert_not_after`, `x509_cert_not_before`, `x509_cert_expired`; `subject_C/ST/L/O/
OU/CN` and the same `issuer_*`, decimal `serial_number`, `filepath`, `filename`), its
`x509_cert_error` per unreadable input, `x509_read_errors` and `x509_exporter_build_info`,
so its dashboards and its chart's PrometheusRule work as they are; plus lacme-watch's own
labels (`store`, `lineage`, `domain`, `role`). Expired certificates keep their series.
Per source, per sink and per pass: `lacme_watch_*`. A source is down (`source_up` 0)
when it could not be read as a whole, or when an endpoint it names is unreachable.
Per CRL file (`crl` stores, easy-rsa's crl.pem and its deployed copies):
`x509_crl_next_update`, `x509_crl_this_update`, `x509_crl_number` and `x509_crl_stale`
(1 once nextUpdate has passed).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version

from cryptography import x509
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..detection import renewal
from ..detection.renewal import DEFAULT_GRACE
from ..errors import ConfigError
from ..observations import CrlSeen, Observation, Problem

_NAME_PARTS = (
    ("C", NameOID.COUNTRY_NAME),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME),
    ("L", NameOID.LOCALITY_NAME),
    ("O", NameOID.ORGANIZATION_NAME),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("CN", NameOID.COMMON_NAME),
)
CERT_LABELS = (
    "store",
    "lineage",
    "domain",
    "role",
    *(f"subject_{part}" for part, _ in _NAME_PARTS),
    *(f"issuer_{part}" for part, _ in _NAME_PARTS),
    "serial_number",
    "filepath",
    "filename",
)
ERROR_LABELS = ("store", "reason", "filepath", "filename")
SOURCE_DOWN_REASONS = frozenset({"unreachable"})
"""Problems that mean the source itself is down, not one file in it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PassMetrics:
    """What one pass leaves for the next scrape."""

    now: datetime
    duration_seconds: float
    sources: tuple[str, ...]
    failed_sources: frozenset[str] = frozenset()
    inventory: tuple[tuple[str, Observation], ...] = ()
    problems: tuple[tuple[str, Problem], ...] = ()
    outbox: Mapping[tuple[str, str], int] = field(default_factory=dict)
    last_success: datetime | None = None
    events: int = 0
    read_errors: int = 0
    """Every unreadable input of every pass so far (persisted in the state database)."""
    crls: tuple[tuple[str, CrlSeen], ...] = ()
    overdue_grace: timedelta = DEFAULT_GRACE
    agent_runs: Mapping[str, datetime] = field(default_factory=dict)
    renewal_windows: tuple[tuple[str, Observation, datetime, datetime], ...] = ()
    """(store, certificate, start, end) of the CA's ARI window, where its CA answered."""
    renewal_info_requests: int = 0
    """Requests the last pass made to CAs for renewal information."""


class Metrics(Collector):
    """A collector over the latest pass; thread-safe for scrapes during a pass."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._latest: PassMetrics | None = None
        self._lock = threading.Lock()
        self.registry.register(self)

    def update(self, latest: PassMetrics) -> None:
        with self._lock:
            self._latest = latest

    def serve(self, address: str) -> None:
        """Serve /metrics on `host:port` from a background thread."""
        host, port = parse_listen(address)
        start_http_server(port, addr=host, registry=self.registry)

    def write_textfile(self, path: str) -> None:
        """Atomically (temp file + rename), as node-exporter's textfile collector needs."""
        write_to_textfile(path, self.registry)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = self._latest
        yield _build_info()
        if latest is None:
            return
        # As in x509-certificate-exporter, it grows at every pass while an input stays
        # unreadable, so `delta(x509_read_errors[15m]) > 0` holds as long as the fault does;
        # kept in the state database, so a --once textfile counts across runs too.
        yield GaugeMetricFamily(
            "x509_read_errors",
            "Inputs that could not be read, every pass",
            value=latest.read_errors,
        )
        yield from _certificates(latest)
        yield from _renewal_windows(latest)
        yield _errors(latest)
        yield from _crls(latest)
        yield from _sources(latest)
        yield from _sinks(latest)
        yield from _pass(latest)


def _certificates(latest: PassMetrics) -> Iterator[Metric]:
    not_after = GaugeMetricFamily(
        "x509_cert_not_after", "Unix time of the certificate's NotAfter", labels=CERT_LABELS
    )
    not_before = GaugeMetricFamily(
        "x509_cert_not_before", "Unix time of the certificate's NotBefore", labels=CERT_LABELS
    )
    expired = GaugeMetricFamily(
        "x509_cert_expired", "1 if the certificate has expired", labels=CERT_LABELS
    )
    renew_after = GaugeMetricFamily(
        "lacme_watch_certificate_renew_after_timestamp_seconds",
        "Unix time by which the owner's renewal policy should have renewed the certificate",
        labels=CERT_LABELS,
    )
    overdue = GaugeMetricFamily(
        "lacme_watch_certificate_renewal_overdue",
        "1 if the renewal point plus the grace has passed and the certificate is still in place",
        labels=CERT_LABELS,
    )
    for source, observation in latest.inventory:
        facts = observation.certificate
        labels = [
            source,
            observation.lineage,
            observation.domain,
            observation.role,
            *_name_labels(facts.subject),
            *_name_labels(facts.issuer),
            str(int(facts.serial, 16)),
            observation.path,
            os.path.basename(observation.path),
        ]
        not_after.add_metric(labels, facts.not_after.timestamp())
        not_before.add_metric(labels, facts.not_before.timestamp())
        expired.add_metric(labels, 1.0 if facts.not_after <= latest.now else 0.0)
        if observation.renewal is not None and observation.role == "leaf":
            renew_after.add_metric(
                labels, renewal.renew_after(observation.renewal, facts).timestamp()
            )
            late = latest.now >= renewal.overdue_since(
                observation.renewal, facts, latest.overdue_grace
            )
            overdue.add_metric(labels, 1.0 if late else 0.0)
    yield from (not_after, not_before, expired, renew_after, overdue)
    last_run = GaugeMetricFamily(
        "lacme_watch_renewal_agent_last_run_timestamp_seconds",
        "Unix time of the last run seen of the store's renewal agent",
        labels=["store"],
    )
    for store, when in sorted(latest.agent_runs.items()):
        last_run.add_metric([store], when.timestamp())
    yield last_run


@functools.lru_cache(maxsize=4096)
def _name_labels(rfc4514: str) -> tuple[str, ...]:
    """C, ST, L, O, OU, CN of a distinguished name (the first of each; "" if absent).
    Remembered: every scrape asks again for every certificate, and most share an issuer."""
    try:
        name = x509.Name.from_rfc4514_string(rfc4514)
    except ValueError:
        return ("",) * len(_NAME_PARTS)
    found = []
    for _, oid in _NAME_PARTS:
        values = name.get_attributes_for_oid(oid)
        value = values[0].value if values else ""
        found.append(value if isinstance(value, str) else value.decode(errors="replace"))
    return tuple(found)


def _errors(latest: PassMetrics) -> Metric:
    """x509-certificate-exporter's per-file error: 1 for each file that cannot be used (an
    unreachable endpoint is its source being down, in `lacme_watch_source_up`)."""
    errors = GaugeMetricFamily(
        "x509_cert_error", "1 if this input could not be read as a certificate", labels=ERROR_LABELS
    )
    for source, problem in latest.problems:
        if problem.reason in SOURCE_DOWN_REASONS:
            continue
        errors.add_metric(
            [source, problem.reason, problem.path, os.path.basename(problem.path)], 1.0
        )
    return errors


def _version() -> str:
    """The installed distribution's version (metrics sit below the package's __init__)."""
    try:
        return version("lacme-watch")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"


def _build_info() -> Metric:
    info = GaugeMetricFamily(
        "x509_exporter_build_info",
        "Constant 1; the exporter is lacme-watch (goversion is empty: not a Go build)",
        labels=["version", "revision", "goversion"],
    )
    info.add_metric([f"lacme-watch {_version()}", "", ""], 1.0)
    return info


CRL_LABELS = ("store", "role", "issuer_CN", "filepath", "filename")


def _crls(latest: PassMetrics) -> Iterator[Metric]:
    next_update = GaugeMetricFamily(
        "x509_crl_next_update", "Unix time of the CRL's nextUpdate", labels=CRL_LABELS
    )
    this_update = GaugeMetricFamily(
        "x509_crl_this_update", "Unix time of the CRL's thisUpdate", labels=CRL_LABELS
    )
    number = GaugeMetricFamily("x509_crl_number", "The CRL's CRL number", labels=CRL_LABELS)
    stale = GaugeMetricFamily(
        "x509_crl_stale", "1 if the CRL's nextUpdate has passed", labels=CRL_LABELS
    )
    for source, crl in latest.crls:
        labels = [source, crl.role, crl.issuer_cn or "", crl.path, os.path.basename(crl.path)]
        this_update.add_metric(labels, crl.this_update.timestamp())
        if crl.next_update is not None:
            next_update.add_metric(labels, crl.next_update.timestamp())
            stale.add_metric(labels, 1.0 if crl.next_update <= latest.now else 0.0)
        if crl.number is not None:
            number.add_metric(labels, crl.number)
    yield from (next_update, this_update, number, stale)


def _renewal_windows(latest: PassMetrics) -> Iterator[Metric]:
    labels = ["store", "lineage", "domain", "serial_number"]
    start = GaugeMetricFamily(
        "lacme_watch_renewal_window_start_seconds",
        "Unix time the CA's suggested renewal window (ARI, RFC 9773) opens",
        labels=labels,
    )
    end = GaugeMetricFamily(
        "lacme_watch_renewal_window_end_seconds",
        "Unix time the CA's suggested renewal window (ARI, RFC 9773) closes",
        labels=labels,
    )
    for source, observation, opens, closes in latest.renewal_windows:
        values = [
            source,
            observation.lineage,
            observation.domain,
            str(int(observation.certificate.serial, 16)),
        ]
        start.add_metric(values, opens.timestamp())
        end.add_metric(values, closes.timestamp())
    yield from (start, end)
    yield GaugeMetricFamily(
        "lacme_watch_renewal_info_requests",
        "Requests the last pass made to ACME CAs for renewal information (directories included)",
        value=latest.renewal_info_requests,
    )


def _sources(latest: PassMetrics) -> Iterator[Metric]:
    up = GaugeMetricFamily("lacme_watch_source_up", "1 if the source was read", labels=["store"])
    count = GaugeMetricFamily(
        "lacme_watch_source_certificates", "Certificates the source holds", labels=["store"]
    )
    errors = GaugeMetricFamily(
        "lacme_watch_source_read_errors",
        "Files the source could not use, by reason",
        labels=["store", "reason"],
    )
    per_source: dict[str, int] = dict.fromkeys(latest.sources, 0)
    for source, _ in latest.inventory:
        per_source[source] = per_source.get(source, 0) + 1
    reasons: dict[tuple[str, str], int] = {}
    for source, problem in latest.problems:
        reasons[(source, problem.reason)] = reasons.get((source, problem.reason), 0) + 1
    down = set(latest.failed_sources)
    down |= {source for source, p in latest.problems if p.reason in SOURCE_DOWN_REASONS}
    for source in latest.sources:
        up.add_metric([source], 0.0 if source in down else 1.0)
        count.add_metric([source], per_source[source])
    for (source, reason), number in sorted(reasons.items()):
        errors.add_metric([source, reason], number)
    yield from (up, count, errors)


def _sinks(latest: PassMetrics) -> Iterator[Metric]:
    events = GaugeMetricFamily(
        "lacme_watch_sink_events",
        "Events in the outbox per sink and state (pending, retrying, rejected, expired, delivered)",
        labels=["sink", "state"],
    )
    for (sink, state), number in sorted(latest.outbox.items()):
        events.add_metric([sink, state], number)
    yield events


def _pass(latest: PassMetrics) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "lacme_watch_pass_duration_seconds",
        "How long the last pass took",
        value=latest.duration_seconds,
    )
    yield GaugeMetricFamily(
        "lacme_watch_pass_timestamp_seconds",
        "When the last pass ran",
        value=latest.now.timestamp(),
    )
    yield GaugeMetricFamily(
        "lacme_watch_pass_events", "Events the last pass emitted", value=latest.events
    )
    if latest.last_success is not None:
        yield GaugeMetricFamily(
            "lacme_watch_last_success_timestamp_seconds",
            "When a pass last completed with nothing failed",
            value=latest.last_success.timestamp(),
        )


def parse_listen(address: str) -> tuple[str, int]:
    """`127.0.0.1:9464`, `[::1]:9464` or `:9464` (all addresses)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("metrics.listen", f"expected host:port, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104  # ':PORT' asks for all
