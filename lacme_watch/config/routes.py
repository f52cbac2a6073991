"""What the configuration says about delivery: which sink wants which events, how
often, and how long to keep retrying. Values only; delivery.py acts on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from .. import events as _events
from ..events.cloudevents import Envelope
from ..plugins import Sink


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkRoute:
    """A sink, the event names it wants (None: all) and its alert hygiene."""

    sink: Sink
    events: frozenset[str] | None = None
    min_interval: timedelta | None = None

    def wants(self, kind: str) -> bool:
        if self.events is not None:
            return kind in self.events
        event_type = _events.event_type(kind)
        return event_type is None or not event_type.routine  # bookkeeping: only if named


def route(
    routes: Sequence[SinkRoute], envelopes: Sequence[Envelope]
) -> list[tuple[Envelope, Sequence[str]]]:
    """Each event with the names of the sinks whose `events:` filter wants it; decided
    when the outbox rows are written, once per kind (a pass's thousands of events are
    of a few kinds)."""
    chosen: dict[str, tuple[str, ...]] = {}
    routed: list[tuple[Envelope, Sequence[str]]] = []
    for envelope in envelopes:
        kind = envelope.event.kind
        names = chosen.get(kind)
        if names is None:
            names = chosen[kind] = tuple(r.sink.name for r in routes if r.wants(kind))
        routed.append((envelope, names))  # one tuple per kind, shared: nobody changes it
    return routed


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How long to wait between attempts, and when to give up loudly."""

    initial: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(days=7)

    def delay(self, attempts: int) -> timedelta:
        """Exponential in the attempts made so far, capped, with jitter in [50%, 100%]."""
        import random  # only once a delivery failed: not on every cron start

        base: timedelta = min(self.maximum, self.initial * (2 ** min(attempts, 30)))
        jitter = 0.5 + random.random() / 2  # noqa: S311  # jitter, not cryptography
        return base * jitter


__all__ = ["RetryPolicy", "SinkRoute", "route"]
