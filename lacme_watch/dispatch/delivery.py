"""Outbox -> sinks: each sink gets its due events as one batch, retried with backoff.

Success marks rows delivered. A SinkError schedules a retry with exponential backoff
and jitter (or after the receiver's Retry-After). The outcome is recorded per event,
for the events the sink attempted only: one event the receiver refuses for good is
rejected alone, the others are delivered or retried on their own. A sink still holding
events that failed before (backing off) makes the pass not ok, so it exits 1. Rows
older than max_age are marked expired and reported, never dropped silently. A sink
with `min_interval` is given nothing until that long after its last delivery: what
arrives meanwhile waits for the next batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..config.routes import RetryPolicy, SinkRoute
from ..errors import SinkError
from ..plugins import Sink
from ..statedb import Backlog, OutboxRow, StateStore, collector_paused
from ..wording import duration

log = logging.getLogger(__name__)

__all__ = ["DeliveryReport", "RetryPolicy", "SinkRoute", "drain"]


@dataclass(slots=True)
class DeliveryReport:
    """What one drain did, for the exit status and the summary line."""

    delivered: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    """Sinks that failed this time; their events stay queued for a retry."""
    rejected: list[OutboxRow] = field(default_factory=list)
    """Events a sink refused for good (e.g. HTTP 400): reported, not retried."""
    expired: list[OutboxRow] = field(default_factory=list)
    """Events that aged out undelivered."""
    held: dict[str, int] = field(default_factory=dict)
    """Events a sink's min_interval is holding for its next batch."""
    retrying: dict[str, Backlog] = field(default_factory=dict)
    """Sinks with events that failed before and are backing off, still undelivered."""

    @property
    def ok(self) -> bool:
        return not (self.failures or self.expired or self.rejected or self.retrying)


def drain(
    store: StateStore, routes: Sequence[SinkRoute], now: datetime, policy: RetryPolicy
) -> DeliveryReport:
    """Deliver every due outbox row, sink by sink; one failing sink never stops the others.

    The cyclic collector waits until the drain is over: the rows, envelopes and lines
    of a large batch are made and dropped with no cycle among them (statedb's
    collector_paused), and what is left is collected after."""
    with collector_paused():
        return _drain(store, routes, now, policy)


def _drain(
    store: StateStore, routes: Sequence[SinkRoute], now: datetime, policy: RetryPolicy
) -> DeliveryReport:
    report = DeliveryReport()
    for route in routes:
        sink = route.sink
        due = store.due(sink.name, now)
        oldest = now - policy.max_age  # older than max_age: created before this
        stale = [row for row in due if row.created_at < oldest]
        rows = [row for row in due if row.created_at >= oldest] if stale else due
        if stale:
            store.expire(sink.name, stale)
            report.expired += stale
            log.error(
                "sink %s: %d event(s) older than %s were never delivered; giving up on them",
                sink.name,
                len(stale),
                duration(policy.max_age),
            )
        if not rows:
            continue
        if route.min_interval is not None:
            last = store.last_delivery(sink.name)
            if last is not None and now - last < route.min_interval:
                report.held[sink.name] = len(rows)
                continue
        _deliver(store, sink, rows, now, policy, report)
    for route in routes:
        backlog = store.backlog(route.sink.name)
        if backlog is not None:
            report.retrying[route.sink.name] = backlog
    return report


def _deliver(
    store: StateStore,
    sink: Sink,
    rows: list[OutboxRow],
    now: datetime,
    policy: RetryPolicy,
    report: DeliveryReport,
) -> None:
    try:
        sink.deliver([row.envelope for row in rows])
    except SinkError as exc:
        _record_outcomes(store, sink.name, rows, now, policy, report, exc)
    except Exception:  # a bug in one plugin must not stop the others
        log.exception("sink %s crashed delivering %d events", sink.name, len(rows))
        _retry(store, sink.name, rows, now, policy, "sink crashed; see the log", None)
        report.failures[sink.name] = "sink crashed; see the log"
    else:
        store.mark_delivered(sink.name, rows, now)
        report.delivered += len(rows)


def _record_outcomes(
    store: StateStore,
    sink: str,
    rows: list[OutboxRow],
    now: datetime,
    policy: RetryPolicy,
    report: DeliveryReport,
    exc: SinkError,
) -> None:
    """One outcome per event the sink attempted: delivered, rejected alone, or retried;
    an event it never reached keeps its place (still due, attempts unchanged)."""
    done = [row for row in rows if row.envelope.id in exc.delivered]
    refused = {row.envelope.id: row for row in rows if row.envelope.id in exc.rejected}
    rest = [row for row in rows if row.envelope.id not in exc.delivered | refused.keys()]
    attempted = rest if exc.failed is None else [r for r in rest if r.envelope.id in exc.failed]
    if done:
        store.mark_delivered(sink, done, now)
        report.delivered += len(done)
    if exc.permanent and exc.failed is None:
        refused |= {row.envelope.id: row for row in attempted}
        attempted = []
    for event_id, row in refused.items():
        reason = exc.rejected.get(event_id, exc.reason)
        store.reject(sink, [row], reason)
        report.rejected.append(replace(row, attempts=row.attempts + 1, last_error=reason))
    if refused:
        log.error("sink %s refused %d event(s) for good: %s", sink, len(refused), exc.reason)
    if attempted:
        _retry(store, sink, attempted, now, policy, exc.reason, exc.retry_after)
        report.failures[sink] = exc.reason


def _retry(
    store: StateStore,
    sink: str,
    rows: list[OutboxRow],
    now: datetime,
    policy: RetryPolicy,
    reason: str,
    retry_after: timedelta | None,
) -> None:
    if not rows:
        return
    delay = policy.delay(max(row.attempts for row in rows))
    if retry_after is not None:
        delay = max(delay, retry_after)
    store.retry_later(sink, rows, now + delay, reason)
