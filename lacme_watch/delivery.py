"""Outbox -> sinks: each sink gets its due events as one batch, retried with backoff.

Success marks rows delivered; SinkError (or a crash in the sink) schedules a retry
with exponential backoff and jitter; rows older than max_age are marked expired and
reported, never dropped silently.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import SinkError
from .plugins import Sink
from .store import OutboxRow, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How long to wait between attempts, and when to give up loudly."""

    initial: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(days=7)

    def delay(self, attempts: int) -> timedelta:
        """Exponential in the attempts made so far, capped, with jitter in [50%, 100%]."""
        base: timedelta = min(self.maximum, self.initial * (2 ** min(attempts, 30)))
        jitter = 0.5 + random.random() / 2  # noqa: S311  # jitter, not cryptography
        return base * jitter  # jitter, not cryptography


@dataclass(slots=True)
class DeliveryReport:
    """What one drain did, for the exit status and the summary line."""

    delivered: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    expired: list[OutboxRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.expired


def drain(
    store: StateStore, sinks: Sequence[Sink], now: datetime, policy: RetryPolicy
) -> DeliveryReport:
    """Deliver every due outbox row, sink by sink; one failing sink never stops the others."""
    report = DeliveryReport()
    for sink in sinks:
        rows = store.due(sink.name, now)
        stale = [row for row in rows if now - row.created_at > policy.max_age]
        if stale:
            store.expire(sink.name, stale)
            report.expired += stale
            log.error(
                "sink %s: %d event(s) older than %s were never delivered; giving up on them",
                sink.name,
                len(stale),
                policy.max_age,
            )
        rows = [row for row in rows if row not in stale]
        if not rows:
            continue
        try:
            sink.deliver([row.envelope for row in rows])
        except SinkError as exc:
            _retry(store, sink.name, rows, now, policy, exc.reason)
            report.failures[sink.name] = exc.reason
        except Exception:  # a bug in one plugin must not stop the others
            log.exception("sink %s crashed delivering %d events", sink.name, len(rows))
            _retry(store, sink.name, rows, now, policy, "sink crashed; see the log")
            report.failures[sink.name] = "sink crashed; see the log"
        else:
            store.mark_delivered(sink.name, rows, now)
            report.delivered += len(rows)
    return report


def _retry(
    store: StateStore,
    sink: str,
    rows: list[OutboxRow],
    now: datetime,
    policy: RetryPolicy,
    reason: str,
) -> None:
    attempts = max(row.attempts for row in rows)
    store.retry_later(sink, rows, now + policy.delay(attempts), reason)
