"""The event history and the outbox: what each sink still has to deliver, and what it did."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .. import events as _events
from ..events.cloudevents import Envelope, from_json, to_cloudevent, to_json, uuid5_text
from .connected import Connected, epoch
from .history import record_runs
from .snapshots import in_chunks

_OUTBOX_ROWS = "SELECT o.event, o.sink, o.attempts, o.created_at, o.last_error FROM outbox o"
_DUE = _OUTBOX_ROWS + (
    " WHERE o.state = 'pending' AND o.sink = ? AND o.next_attempt <= ? ORDER BY o.event"
)
_PENDING = _OUTBOX_ROWS + " WHERE o.state = 'pending' ORDER BY o.event, o.sink"


_SHOWN = "CASE WHEN state = 'pending' AND attempts > 0 THEN 'retrying' ELSE state END"
"""The outbox state in the one vocabulary of status, events and metrics."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdConflict:
    """An event that came with the id of a different, already recorded event.

    It is recorded under `recorded_as` (derived from both, so a re-read is a no-op):
    never dropped in silence, and never in place of the first."""

    id: str
    recorded_as: str
    summary: str

    def message(self) -> str:
        return (
            f"event id {self.id} was already recorded for a different event;"
            f" {self.summary} recorded as {self.recorded_as}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    """One event waiting for (or done with) one sink."""

    envelope: Envelope
    sink: str
    attempts: int
    created_at: datetime
    last_error: str | None
    seq: int
    """The event's number in the history: with the sink, the outbox row's key (rows are
    never deleted), and the sink's queue order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One event's delivery to one sink, in the words `status` and `events` use:
    pending (not tried yet), retrying (tried, failed, will retry), rejected, expired,
    delivered."""

    state: str
    attempts: int
    next_attempt: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """A sink's events that failed and are waiting for their next attempt."""

    events: int
    next_attempt: datetime
    last_error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """A recorded event with its delivery per sink."""

    envelope: Envelope
    deliveries: Mapping[str, Delivery]


class Outbox(Connected):
    """Events recorded once, and each sink's delivery of them: due, retried, given up."""

    _written: dict[int, Envelope]

    def record_events(
        self, routed: Sequence[tuple[Envelope, Sequence[str]]], now: datetime
    ) -> list[IdConflict]:
        """History and outbox rows for events that no snapshot caused (emit, spool)."""
        with self.transaction() as db:
            conflicts, written = write_events(db, routed, now)
        self._written = written
        return conflicts

    # -- outbox --------------------------------------------------------------------

    def due(self, sink: str, now: datetime) -> list[OutboxRow]:
        """Pending rows for one sink whose next attempt is due, in the order they were queued."""
        return self._rows(_DUE, (sink, epoch(now)))

    def pending(self) -> list[OutboxRow]:
        return self._rows(_PENDING, ())

    def _rows(self, query: str, parameters: tuple[object, ...]) -> list[OutboxRow]:
        """Outbox rows with their envelopes: those this process wrote are at hand, only
        the others are read and decoded (a drain right after a pass decodes none)."""
        rows = self._db.execute(query, parameters).fetchall()
        written = self._written
        missing = sorted({row[0] for row in rows if row[0] not in written})
        decoded = {
            int(seq): from_json(cloudevent)
            for seq, cloudevent in in_chunks(
                self._db, "SELECT seq, cloudevent FROM events WHERE seq IN", (), missing
            )
        }
        found = []
        instants: dict[float, datetime] = {}  # a pass's rows share the instant they were queued
        for seq, sink, attempts, created_at, last_error in rows:
            envelope = written.get(seq) or decoded.get(seq)
            if envelope is None:  # an outbox row without its event: skipped, as a JOIN does
                continue
            created = instants.get(created_at)
            if created is None:
                created = instants[created_at] = datetime.fromtimestamp(created_at, UTC)
            found.append(
                OutboxRow(
                    envelope=envelope,
                    sink=sink,
                    attempts=attempts,
                    created_at=created,
                    last_error=last_error,
                    seq=seq,
                )
            )
        return found

    def mark_delivered(self, sink: str, rows: Iterable[OutboxRow], now: datetime) -> None:
        """Once the sink has them: one statement per run of consecutive seqs (a pass's
        events are one run), each row found by its key."""
        when = epoch(now)
        seqs = sorted({row.seq for row in rows})
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?,"
                " attempts = attempts + 1, last_error = NULL"
                " WHERE sink = ? AND event BETWEEN ? AND ?",
                [(when, sink, first, last) for first, last in runs(seqs)],
            )
            db.execute(
                "INSERT INTO sinks VALUES (?, ?) ON CONFLICT (sink) DO UPDATE"
                " SET last_delivered = excluded.last_delivered",
                (sink, epoch(now)),
            )

    def last_delivery(self, sink: str) -> datetime | None:
        """When this sink last delivered anything (for min_interval)."""
        row = self._db.execute(
            "SELECT last_delivered FROM sinks WHERE sink = ?", (sink,)
        ).fetchone()
        return None if row is None else datetime.fromtimestamp(row[0], UTC)

    def reject(self, sink: str, rows: Iterable[OutboxRow], reason: str) -> None:
        """The sink refused these for good: keep them, marked, for `events` to show."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'rejected', attempts = attempts + 1, last_error = ?"
                " WHERE sink = ? AND event = ?",
                [(reason, sink, row.seq) for row in rows],
            )

    def retry_later(
        self, sink: str, rows: Iterable[OutboxRow], next_attempt: datetime, reason: str
    ) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
                " WHERE sink = ? AND event = ?",
                [(epoch(next_attempt), reason, sink, row.seq) for row in rows],
            )

    def expire(self, sink: str, rows: Iterable[OutboxRow]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'expired' WHERE sink = ? AND event = ?",
                [(sink, row.seq) for row in rows],
            )

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        """(sink, state) -> how many events. A pending row already tried is `retrying`."""
        return {
            (sink, state): count
            for sink, state, count in self._db.execute(
                f"SELECT sink, {_SHOWN} AS shown,"  # noqa: S608  # _SHOWN is a constant
                " count(*) FROM outbox GROUP BY sink, shown"
            )
        }

    def backlog(self, sink: str) -> Backlog | None:
        """The sink's retrying events: how many, the soonest next attempt, the last error."""
        count, soonest, error = self._db.execute(
            "SELECT count(*), min(next_attempt), max(last_error) FROM outbox"
            " WHERE sink = ? AND state = 'pending' AND attempts > 0",
            (sink,),
        ).fetchone()
        if not count:
            return None
        return Backlog(
            events=count,
            next_attempt=datetime.fromtimestamp(soonest, UTC),
            last_error=error or "",
        )

    def last_success(self) -> datetime | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_success'").fetchone()
        return None if row is None else datetime.fromtimestamp(float(row[0]), UTC)

    def record_success(self, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_success', ?)", (str(epoch(now)),))

    def history(self, limit: int = 100) -> list[HistoryEntry]:
        """The most recent events, newest last, with each sink's delivery state."""
        rows = self._db.execute(
            "SELECT seq, cloudevent FROM events ORDER BY time DESC, seq DESC LIMIT ?", (limit,)
        ).fetchall()
        seqs = sorted(seq for seq, _ in rows)
        deliveries: dict[int, dict[str, Delivery]] = {}
        for sink in self._sinks():  # the outbox's key begins with the sink: one look-up each
            for seq, state, attempts, next_attempt, last_error in in_chunks(
                self._db,
                f"SELECT event, {_SHOWN}, attempts,"  # noqa: S608  # _SHOWN is a constant
                " next_attempt, last_error FROM outbox WHERE sink = ? AND event IN",
                (sink,),
                seqs,
            ):
                deliveries.setdefault(seq, {})[sink] = Delivery(
                    state=state,
                    attempts=attempts,
                    next_attempt=(
                        datetime.fromtimestamp(next_attempt, UTC) if state == "retrying" else None
                    ),
                    last_error=last_error,
                )
        return [
            HistoryEntry(envelope=from_json(cloudevent), deliveries=deliveries.get(seq, {}))
            for seq, cloudevent in reversed(rows)
        ]

    def _sinks(self) -> list[str]:
        """Every sink the outbox holds rows for, in order: one seek of its key per sink."""
        found: list[str] = []
        row = self._db.execute("SELECT min(sink) FROM outbox").fetchone()
        while row is not None and row[0] is not None:
            found.append(row[0])
            row = self._db.execute(
                "SELECT min(sink) FROM outbox WHERE sink > ?", (row[0],)
            ).fetchone()
        return found


_CONFLICT_NAMESPACE = bytes.fromhex("0c1f3d0e93a44c558f7e2d6a1b9e5c47")
"""The UUID 0c1f3d0e-93a4-4c55-8f7e-2d6a1b9e5c47 (as bytes: uuid is not imported for it)."""


def write_events(
    db: sqlite3.Connection, routed: Sequence[tuple[Envelope, Sequence[str]]], now: datetime
) -> tuple[list[IdConflict], dict[int, Envelope]]:
    """History and outbox rows; the id conflicts renamed, and the events written (by
    seq, for drain() to deliver without decoding them again).

    Events whose id is new (nearly all) are written with one statement per table,
    numbered here (each next seq: their outbox rows name them by it); an id recorded
    before goes one by one, in its place, through the conflict rules."""
    conflicts: list[IdConflict] = []
    written: dict[int, Envelope] = {}
    ids: set[str] = set()
    # A run reported through emit, the spool or the bridge is a run wherever it came in.
    record_runs(
        db,
        [
            (envelope.event.store, envelope.event.ran_at or envelope.time)
            for envelope, _ in routed
            if isinstance(envelope.event, _events.RenewalAgentRun) and envelope.event.store
        ],
    )
    recorded = _recorded(db, [envelope.id for envelope, _ in routed])
    events: list[tuple[object, ...]] = []
    queues: dict[str, list[int]] = {}
    queued = epoch(now)
    (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    for envelope, sinks in routed:
        if envelope.id in recorded or envelope.id in ids:
            _write_batch(db, events, queues, queued)  # in order: each sink's queue is by seq
            events, queues = [], {}
            kept = _write_known(db, envelope, conflicts, seq + 1)
            if kept is None:
                continue
            envelope = kept
        else:
            events.append((seq + 1, *_event_row(envelope)))
        seq += 1
        ids.add(envelope.id)
        written[seq] = envelope
        for sink in sinks:
            queue = queues.get(sink)
            if queue is None:
                queues[sink] = [seq]
            else:
                queue.append(seq)
    _write_batch(db, events, queues, queued)
    return conflicts, written


def _recorded(db: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    """Which of these ids the history holds already."""
    query = "SELECT id FROM events WHERE id IN"
    return {str(event_id) for (event_id,) in in_chunks(db, query, (), sorted(set(ids)))}


def _write_batch(
    db: sqlite3.Connection,
    events: list[tuple[object, ...]],
    queues: Mapping[str, list[int]],
    queued: float,
) -> None:
    """Events with new ids (write_events checked): a plain INSERT, so that a seq is never
    left to an outbox row whose event was not written. Then each sink's outbox rows,
    one statement per run of consecutive seqs (the events just written, or one before
    them): 5,000 rows bound one by one cost twice what SQLite's own loop does."""
    db.executemany(_INSERT_EVENT, events)
    db.executemany(
        "INSERT OR IGNORE INTO outbox (sink, event, state, next_attempt, created_at)"
        " SELECT ?, seq, 'pending', ?, ? FROM events WHERE seq BETWEEN ? AND ?",
        [
            (sink, queued, queued, first, last)
            for sink, seqs in queues.items()
            for first, last in runs(seqs)
        ],
    )


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending seqs as (first, last) runs of consecutive numbers."""
    found: list[tuple[int, int]] = []
    first = last = None
    for seq in seqs:
        if last is not None and seq == last + 1:
            last = seq
            continue
        if first is not None and last is not None:
            found.append((first, last))
        first = last = seq
    if first is not None and last is not None:
        found.append((first, last))
    return found


_INSERT_EVENT = (
    "INSERT INTO events (seq, id, kind, subject, store, time, cloudevent)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _write_known(
    db: sqlite3.Connection, envelope: Envelope, conflicts: list[IdConflict], seq: int
) -> Envelope | None:
    """An event whose id the history holds already (from before, or earlier in this
    batch, written just before): None when it is that same event (never queued twice),
    else the envelope renamed (and the conflict noted), recorded under its new id as
    event `seq`."""
    existing = db.execute("SELECT cloudevent FROM events WHERE id = ?", (envelope.id,)).fetchone()
    if existing is None:
        return None
    content = _content(envelope)
    if _content(from_json(existing[0])) == content:
        return None  # the same event was recorded before: never queue it twice
    fresh = uuid5_text(_CONFLICT_NAMESPACE, f"{envelope.id}\x1f{content}")
    conflicts.append(
        IdConflict(id=envelope.id, recorded_as=fresh, summary=envelope.event.summary())
    )
    envelope = replace(envelope, id=fresh)
    if db.execute("SELECT 1 FROM events WHERE id = ?", (fresh,)).fetchone():
        return None  # recorded under its new id on an earlier read
    db.execute(_INSERT_EVENT, (seq, *_event_row(envelope)))
    return envelope


def _event_row(envelope: Envelope) -> tuple[object, ...]:
    return (
        envelope.id,
        envelope.event.kind,
        envelope.event.subject,
        envelope.event.store,
        epoch(envelope.time),
        to_json(envelope),
    )


def _content(envelope: Envelope) -> str:
    """What makes two events with one id the same event: all but the `time` it was sent."""
    document = to_cloudevent(envelope)
    del document["time"]
    return json.dumps(document, sort_keys=True, ensure_ascii=False)
