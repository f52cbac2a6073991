"""run_pass(): the one pass that `watch --once` and the daemon share.

scan every source (authorities first, so stores can check signatures) -> detect
-> one transaction (snapshots + history + outbox) -> in-process subscribers -> drain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .. import events as _events
from ..ari.idle import may_name_a_directory, round_needed
from ..config import Config
from ..config.routes import route
from ..detection import ratelimits, renewal
from ..detection.incremental import Overlay
from ..detection.renewal import agent_stale
from ..dispatch import spool
from ..dispatch.delivery import DeliveryReport, drain
from ..dispatch.subscribers import EventDispatcher
from ..events.cloudevents import Envelope, wrap
from ..observations import CertificateFacts, CrlSeen, Issuance, Observation, Problem
from ..options import format_duration
from ..statedb import AgentRun, StateStore
from ..wording import plural
from .scans import Scanned, scan_sources

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from sqlite3 import Connection

    from ..ari.carried import CarriedStore
    from ..ari.rounds import Grace
    from ..ari.window import AriRecord
    from ..events import Heartbeat, RenewalAgentStale
    from .metrics import PassMetrics  # prometheus_client: only when metrics are on

_log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class PassReport:
    """What a pass saw and did: the CLI's summary and exit status come from here."""

    now: datetime
    envelopes: list[Envelope] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    inventory: list[tuple[str, Observation]] = field(default_factory=list)
    failed_sources: set[str] = field(default_factory=set)
    files_parsed: int = 0
    files_reused: int = 0
    duration_seconds: float = 0.0
    spool_rejected: list[tuple[Path, str]] = field(default_factory=list)
    id_conflicts: list[str] = field(default_factory=list)
    issuances: list[Issuance] = field(default_factory=list)
    read_errors: int = 0
    """Unreadable inputs counted over every pass of this state_dir (x509_read_errors)."""
    crls: list[tuple[str, CrlSeen]] = field(default_factory=list)
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    """(source, lineage, what is wrong now): broken chains, revocations, wrong names."""
    agent_runs: dict[str, datetime] = field(default_factory=dict)
    """The latest renewal-agent run each source's scan saw (certbot's log)."""
    carried: tuple[str, ...] = ()
    """Stores whose certificates are in the state database as last pass left them (their
    stat record matched), not in `inventory`: see whole_inventory()."""
    carried_certificates: int = 0
    views: Mapping[str, Overlay] = field(default_factory=dict)
    """The partly rescanned stores' inventories after this pass's scan, loaded only if
    asked: before the commit, the database lacks what the rescan read (a store carried
    whole is the database's as it is)."""
    ari_records: Mapping[str, AriRecord] | None = None
    """Every certificate's ARI record as the scan loaded it, for the round to reuse."""

    @classmethod
    def of(cls, scanned: Scanned, now: datetime) -> PassReport:
        """The report of a scan, before anything is committed or delivered."""
        return cls(
            now=now,
            envelopes=list(scanned.envelopes),
            problems=list(scanned.problems),
            inventory=list(scanned.inventory),
            failed_sources=set(scanned.failed_sources),
            files_parsed=scanned.files_parsed,
            files_reused=scanned.files_reused,
            issuances=list(scanned.issuances),
            crls=list(scanned.crls),
            findings=list(scanned.findings),
            agent_runs=dict(scanned.agent_runs),
            carried=scanned.carried,
            carried_certificates=scanned.carried_certificates,
            views=scanned.views,
            ari_records=scanned.ari_records,
        )

    ari_requests: int = 0
    """Requests made to CAs for renewal information (RFC 9773) this pass."""

    @property
    def certificates(self) -> int:
        return len(self.inventory) + self.carried_certificates

    def whole_inventory(self, store: StateStore) -> list[tuple[str, Observation]]:
        """Every certificate, the carried stores' read back from the state database."""
        carried = [
            (source, observation)
            for source in self.carried
            for observation in store.inventory_of(source).values()
        ]
        return self.inventory + carried

    def status(self) -> str:
        """One line for systemd's STATUS= and the daemon's log."""
        line = (
            f"{plural(self.certificates, 'certificate')},"
            f" {plural(len(self.envelopes), 'new event')}, {plural(len(self.problems), 'problem')}"
        )
        retrying = self.delivery.failures.keys() | self.delivery.retrying.keys()
        if retrying:
            line += f", {plural(len(retrying), 'sink')} retrying"
        return line

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and not self.spool_rejected
            and not self.id_conflicts
            and self.delivery.ok
        )

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def run_pass(
    config: Config,
    store: StateStore,
    now: datetime,
    dispatcher: EventDispatcher | None = None,
) -> PassReport:
    """One full pass: scan, detect, commit, notify subscribers, deliver."""
    started = time.monotonic()
    store.arm_thresholds(repr(config.policy))  # here, not in scan_sources: status writes nothing
    scanned = scan_sources(config, store, now, quick=True)
    report = PassReport.of(scanned, now)
    envelopes = list(scanned.envelopes)
    writers = _ari_round(config, store, report, envelopes, now)
    spooled = spool.collect(config.spool) if config.spool else spool.Collected()
    envelopes += spooled.envelopes
    report.spool_rejected = spooled.rejected
    if spooled.unreadable and config.spool:
        report.problems.append(
            ("spool", Problem(config.spool, "permission_denied", spooled.unreadable))
        )
    fresh, warnings, evaluated = _rate_limits(config, store, now, report.issuances, envelopes)
    envelopes += [
        wrap(w.event(now), host=config.host, time=now, salt=store.id_salt) for w in warnings
    ]
    stale = stale_agents(config, store.agent_runs(), report.agent_runs, envelopes, now)
    envelopes += [wrap(event, host=config.host, time=now, salt=store.id_salt) for _, event in stale]
    if config.heartbeat:
        heartbeat = _heartbeat(config, report, [*scanned.committed, *envelopes])
        envelopes.append(wrap(heartbeat, host=config.host, time=now, salt=store.id_salt))
    conflicts = store.commit_pass(
        scanned.changes,
        route(config.sinks, envelopes),
        now,
        issuances=fresh,
        warned=[(w.rule, w.key) for w in warnings],
        agent_runs=report.agent_runs,
        agents_stale=[agent for agent, _ in stale],
        writers=writers,
        rate_limits_evaluated=evaluated,
    )
    spooled.remove_ingested()  # only now: a crash before the commit leaves them to re-read
    report.id_conflicts = [*scanned.id_conflicts, *(conflict.message() for conflict in conflicts)]
    envelopes = [*scanned.committed, *envelopes]  # a large first pass's slices: committed
    report.envelopes = envelopes
    if dispatcher is not None:
        for envelope in envelopes:
            dispatcher.emit_sync(envelope.event)
    report.delivery = drain(store, config.sinks, now, config.retry)
    if report.ok:
        store.record_success(now)
    report.read_errors = store.count_read_errors(len(report.problems))
    report.duration_seconds = time.monotonic() - started
    return report


def _rate_limits(
    config: Config,
    store: StateStore,
    now: datetime,
    seen: list[Issuance],
    envelopes: list[Envelope],
) -> tuple[list[Issuance], list[ratelimits.Warning], str | None]:
    """Issuances to remember (new inside the longest window), the warnings due now, and
    the rules evaluated (None when nothing they count can have moved: no evaluation)."""
    limits = config.rate_limits
    if not limits.enabled:
        return [], [], None
    since = now - limits.longest_window
    known = store.issuance_keys_since(since)
    recent = [issuance for issuance in seen if issuance.issued_at > since]
    fresh = [issuance for issuance in recent if issuance.key not in known]
    failed_now = [
        (e.event.domain, e.event.occurred_at or e.time)
        for e in envelopes
        if isinstance(e.event, _events.ChallengeFailed)
    ]
    rules = repr(limits)
    windows = {name: rule.window.total_seconds() for name, rule in limits.rules.items()}
    windows["history"] = limits.longest_window.total_seconds()
    if not fresh and not failed_now and not store.rate_limits_due(now, rules, windows):
        return [], [], None
    history = store.issuances_since(since) + recent
    failed_window = limits.rules.get("failed_authorizations")
    failures = store.failures_since(now - failed_window.window) if failed_window else []
    failures += failed_now
    warnings = ratelimits.evaluate(
        history, failures, limits, now, store.rate_warnings(), cache_dir=store.state_dir
    )
    return fresh, warnings, rules


def stale_agents(
    config: Config,
    known: dict[str, AgentRun],
    scanned: dict[str, datetime],
    envelopes: list[Envelope],
    now: datetime,
) -> list[tuple[AgentRun, RenewalAgentStale]]:
    """renewal_agent_stale for each configured source whose agent was seen running once
    and not for `agent_stale_after` since; once per last run (a new run re-arms it)."""
    latest = {store: agent.last_run for store, agent in known.items()}
    reported = {store: agent.stale_reported for store, agent in known.items()}
    seen = list(scanned.items())
    seen += [
        (e.event.store, e.event.ran_at or e.time)
        for e in envelopes
        if isinstance(e.event, _events.RenewalAgentRun) and e.event.store
    ]
    for store, when in seen:
        latest[store] = max(when, latest.get(store, when))
    found: list[tuple[AgentRun, RenewalAgentStale]] = []
    for source in config.sources:
        last = latest.get(source.id)
        after = config.renewal_of(source.id).agent_stale_after
        if last is None or not agent_stale(last, now, after) or reported.get(source.id) == last:
            continue
        agent = AgentRun(store=source.id, last_run=last)
        event = _events.RenewalAgentStale(
            store=source.id, last_run=last, expected_every=format_duration(after)
        )
        found.append((agent, event))
    return found


def _ari_round(
    config: Config,
    store: StateStore,
    report: PassReport,
    envelopes: list[Envelope],
    now: datetime,
) -> Sequence[Callable[[Connection], None]]:
    """Ask the CAs for renewal windows (RFC 9773) and add what they said to `envelopes`
    and `report`; what the round writes with the pass's commit. Nothing when the round
    could not find a certificate's directory (ari/idle.py)."""
    if not round_needed(config.ari, config.stores, store.connection):
        return ()
    from ..ari.overdue import not_said_yet  # ARI's modules (HTTP, threads): only with work
    from ..ari.rounds import run_round

    ari_round = run_round(
        config.ari,
        config.stores,
        store.connection,
        report.inventory,
        now,
        max_file_size=config.max_file_size,
        overdue_grace=_overdue_grace(config),
        carried=_carried_stores(config, store, report),
        known=report.ari_records,
    )
    envelopes += not_said_yet(
        [wrap(event, host=config.host, time=now) for event in ari_round.events()], envelopes
    )
    report.problems += ari_round.problems
    report.ari_requests = ari_round.requests
    return (ari_round.write,)


def _carried_stores(config: Config, store: StateStore, report: PassReport) -> list[CarriedStore]:
    """The ARI-enabled stores this pass did not read (or read in part): their
    certificates are not in report.inventory, but are still asked about, judged and
    kept. A partial rescan's is its view (the database lacks what it read)."""
    from ..ari.carried import CarriedStore

    sources = {source.id: source for source in config.stores}
    found: list[CarriedStore] = []
    for source in report.carried:
        if source not in sources or not config.ari.for_store(source).enabled:
            continue
        view = report.views.get(source)
        if view is None:  # carried whole: the database's inventory as it is
            view = Overlay(store, source, {}, set())
        found.append(
            CarriedStore(
                source,
                view.fingerprints(),
                view.some,
                may_name_a_directory(config.ari, sources[source]),
            )
        )
    return found


def _overdue_grace(config: Config) -> Grace:
    """expiry.overdue_grace (or 10% of a short lifetime); None where overdue is off."""

    def grace(source: str, facts: CertificateFacts) -> timedelta | None:
        if not config.policy.overdue or config.renewal_of(source).no_policy:
            return None
        return renewal.grace(facts, config.policy.overdue_grace)

    return grace


def _heartbeat(config: Config, report: PassReport, envelopes: list[Envelope]) -> Heartbeat:
    return _events.Heartbeat(
        host=config.host,
        pass_at=report.now,
        certificates=report.certificates,
        sources=len(config.sources),
        sources_failed=len(report.failed_sources),
        events=len(envelopes),
        problems=len(report.problems),
    )


def pass_metrics(report: PassReport, config: Config, store: StateStore) -> PassMetrics:
    """What the metrics endpoint and textfile show after a pass."""
    from ..ari import records as ari_records  # for metrics only: a pass alone never needs them
    from ..ari.view import windows_of
    from .metrics import PassMetrics

    inventory = report.whole_inventory(store)  # carried stores read back once
    return PassMetrics(
        now=report.now,
        duration_seconds=report.duration_seconds,
        sources=tuple(source.id for source in config.sources),
        failed_sources=frozenset(report.failed_sources),
        inventory=tuple(inventory),
        problems=tuple(report.problems),
        outbox=store.outbox_counts(),
        last_success=store.last_success(),
        events=len(report.envelopes),
        read_errors=report.read_errors,
        crls=tuple(report.crls),
        overdue_grace=config.policy.overdue_grace,
        agent_runs={agent.store: agent.last_run for agent in store.agent_runs().values()},
        renewal_windows=(
            windows_of(inventory, ari_records.windows(store.connection))
            if config.ari.enabled
            else ()
        ),
        renewal_info_requests=report.ari_requests,
    )
