"""The state database in state_dir: snapshots, file cache, event history and the outbox.

One pass commits once: the new snapshots and the outbox rows for the events they
caused go in the same transaction, so a crash either repeats the pass (before the
commit) or loses nothing (after it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import sys
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from .cloudevents import Envelope, from_json, to_cloudevent, to_json
from .crl import CachedCrl
from .detect import SourceSnapshot
from .errors import StoreError
from .events import RenewalAgentRun
from .observations import Issuance, Observation, Problem
from .reader import CachedFile
from .statefiles import (
    DATABASE_NAME,
    StateReset,
    connect_read_only,
    create_database,
    damage,
    database_error,
    make_state_dir,
    move_aside,
    read_reset_note,
    tighten_mode,
)

SCHEMA_VERSION = 3
"""2: deployment_stale marks moved out of `reported` into `stale_deployments`.
3: certificates carry an identity key and their next threshold instant (indexed)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    source TEXT PRIMARY KEY, baselined INTEGER NOT NULL, last_scan REAL, cursor TEXT);
CREATE TABLE IF NOT EXISTS certificates (
    source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
    observation TEXT NOT NULL, identity BLOB, next_threshold REAL,
    PRIMARY KEY (source, lineage));
CREATE TABLE IF NOT EXISTS reported (
    source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
    threshold TEXT NOT NULL, PRIMARY KEY (source, lineage, fingerprint, threshold));
CREATE TABLE IF NOT EXISTS stale_deployments (
    source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
    newer_fingerprint TEXT NOT NULL, PRIMARY KEY (source, lineage, fingerprint, newer_fingerprint));
CREATE TABLE IF NOT EXISTS problems (
    source TEXT NOT NULL, path TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    lineage TEXT, PRIMARY KEY (source, path, reason));
CREATE TABLE IF NOT EXISTS files (
    source TEXT NOT NULL, path TEXT NOT NULL, dev INTEGER, ino INTEGER, size INTEGER,
    mtime_ns INTEGER, signers TEXT, payload TEXT NOT NULL, PRIMARY KEY (source, path));
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, store TEXT,
    time REAL NOT NULL, cloudevent TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time);
CREATE TABLE IF NOT EXISTS outbox (
    event_id TEXT NOT NULL REFERENCES events (id), sink TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'expired', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    created_at REAL NOT NULL, delivered_at REAL, last_error TEXT,
    PRIMARY KEY (event_id, sink));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, sink, next_attempt);
CREATE TABLE IF NOT EXISTS sinks (sink TEXT PRIMARY KEY, last_delivered REAL NOT NULL);
CREATE TABLE IF NOT EXISTS issuances (
    key TEXT PRIMARY KEY, names TEXT NOT NULL, issued_at REAL NOT NULL,
    certificate INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS issuances_by_time ON issuances (issued_at);
CREATE TABLE IF NOT EXISTS rate_warnings (
    rule TEXT NOT NULL, key TEXT NOT NULL, warned_at REAL NOT NULL, PRIMARY KEY (rule, key));
CREATE TABLE IF NOT EXISTS crl_cache (
    url TEXT PRIMARY KEY, body BLOB NOT NULL, fetched_at REAL NOT NULL, etag TEXT,
    last_modified TEXT, next_update REAL);
CREATE TABLE IF NOT EXISTS agent_runs (
    store TEXT PRIMARY KEY, last_run REAL NOT NULL, stale_reported REAL);
"""


_OUTBOX_ROWS = (
    "SELECT e.id, e.cloudevent, o.sink, o.attempts, o.created_at, o.last_error"
    " FROM outbox o JOIN events e ON e.id = o.event_id"
)
_DUE = _OUTBOX_ROWS + (
    " WHERE o.state = 'pending' AND o.sink = ? AND o.next_attempt <= ? ORDER BY o.rowid"
)
_PENDING = _OUTBOX_ROWS + " WHERE o.state = 'pending' ORDER BY o.rowid"


_SHOWN = "CASE WHEN state = 'pending' AND attempts > 0 THEN 'retrying' ELSE state END"
"""The outbox state in the one vocabulary of status, events and metrics."""


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceChange:
    """One source's result of a pass: what to write in place of what was there.

    `before` and `after` may hold only some lineages (those that changed, went, or came
    due); lineages in neither are left as they are.
    """

    before: SourceSnapshot | None
    after: SourceSnapshot
    files_before: Mapping[str, CachedFile]
    files_after: Mapping[str, CachedFile]
    next_thresholds: Mapping[str, float | None] = field(default_factory=dict)
    """lineage -> epoch of its next threshold crossing (None: none left), where it moved."""


@dataclass(frozen=True, slots=True)
class Indexed:
    """What the database remembers of a lineage without decoding its observation."""

    identity: bytes | None
    next_threshold: float | None


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
class AgentRun:
    """The last run seen of a store's renewal agent, and the run a staleness was told for."""

    store: str
    last_run: datetime
    stale_reported: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """A recorded event with its delivery per sink."""

    envelope: Envelope
    deliveries: Mapping[str, Delivery]


class StateStore:
    """SQLite in state_dir (created 0700, the database 0600); schema versioned.

    `read_only=True` (status, check, events) opens the database for reading with no
    lock, so those commands work on a read-only mount or a file they cannot write; a
    missing database reads as empty. A writable open that finds the database empty,
    truncated or not SQLite moves it aside and starts anew: `reset` says so, and the
    caller reports it (stderr and a `state_reset` event).
    """

    def __init__(self, state_dir: Path, *, read_only: bool = False, repair: bool = True) -> None:
        self.state_dir = state_dir
        self._written: dict[str, Envelope] = {}
        """The last commit's events by id: delivering them right after needs no decoding."""
        self.path = state_dir / DATABASE_NAME
        self.reset: StateReset | None = None
        self.read_only = read_only
        self._id_salt: str | None = None
        self._repair = repair
        if read_only:
            self._db = self._open_read_only()
            return
        make_state_dir(state_dir)
        self._db = self._open_writable()
        try:
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise database_error(self.path, exc) from exc
        except BaseException:
            self._db.close()
            raise

    def _open_writable(self) -> sqlite3.Connection:
        if self.path.exists() and (reason := damage(self.path)) is not None:
            self._may_repair(reason)
            create_database(self.path, move_aside(self.path, reason))
        elif not self.path.exists():
            create_database(self.path)
        tighten_mode(self.path)
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            note = db.execute("SELECT value FROM meta WHERE key = 'reset'").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            name = getattr(exc, "sqlite_errorname", "")
            if not name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
                raise database_error(self.path, exc) from exc
            self._may_repair(str(exc))
            create_database(self.path, move_aside(self.path, str(exc)))
            db = sqlite3.connect(self.path, isolation_level=None)
            note = db.execute("SELECT value FROM meta WHERE key = 'reset'").fetchone()
        self.reset = read_reset_note(note[0]) if note else None
        return db

    def _may_repair(self, reason: str) -> None:
        """Only the lock holder moves a damaged database aside (two would race)."""
        if not self._repair:
            raise StoreError(
                f"{self.path} is damaged ({reason}); the lacme-watch that holds the lock"
                " moves it aside on its next pass"
            )

    def clear_reset(self) -> None:
        """The reset has been recorded as an event: stop reporting it."""
        with self.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = 'reset'")
        self.reset = None

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.exists():
            db = sqlite3.connect(":memory:", isolation_level=None)  # no state yet: empty
            self._db = db
            self._migrate()
            return db
        if (reason := damage(self.path)) is not None:
            raise StoreError(
                f"{self.path} is damaged ({reason}); the next `lacme-watch watch` moves it"
                " aside, keeps it, and takes a new baseline"
            )
        db = connect_read_only(self.path)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise database_error(self.path, exc) from exc
        if row is not None and int(row[0]) != SCHEMA_VERSION:
            db.close()
            newer = int(row[0]) > SCHEMA_VERSION
            raise StoreError(
                f"{self.path} has schema {row[0]}, this lacme-watch reads {SCHEMA_VERSION}: "
                + (
                    "upgrade lacme-watch"
                    if newer
                    else "run `lacme-watch watch --once` to upgrade it"
                )
            )
        return db

    @property
    def id_salt(self) -> str:
        """This installation's secret in every detected event's id: a spool writer cannot
        predict the id of a coming alert (the database lives in the 0700 state_dir).
        Empty for a read-only look at a database no writer has salted: it records nothing."""
        if self._id_salt is None:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'id_salt'").fetchone()
            self._id_salt = str(row[0]) if row else ""
        return self._id_salt

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """For a feature that keeps its own tables here (ari/records.py): read with it,
        write through commit_pass(writers=...) so the writes share the pass's commit."""
        return self._db

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.state_dir / DATABASE_NAME} has schema {row[0]}, newer than this"
                    f" lacme-watch understands ({SCHEMA_VERSION}): upgrade lacme-watch"
                )
            if row is not None and int(row[0]) < 2:
                _move_stale_marks(self._db)
            _index_thresholds(self._db)
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('id_salt', ?)", (secrets.token_hex(16),)
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

        An SQLite error anywhere inside becomes one StoreError line naming the file.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc
        try:
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise database_error(self.path, exc) from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        # After a disk or I/O error SQLite may have rolled back already.
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # -- snapshots ---------------------------------------------------------------

    def load_snapshot(
        self, source: str, lineages: Collection[str] | None = None
    ) -> SourceSnapshot | None:
        """The source's snapshot; with `lineages`, only their certificates are decoded
        (marks, problems, cursor and baseline always come whole: they are small, and
        the checks after detect() need every mark)."""
        row = self._db.execute(
            "SELECT baselined, cursor FROM sources WHERE source = ?", (source,)
        ).fetchone()
        if row is None:
            return None
        certificates = {
            lineage: Observation.from_json(json.loads(raw))
            for lineage, raw in self._select(
                "SELECT lineage, observation FROM certificates WHERE source = ?", source, lineages
            )
        }
        reported = frozenset(
            (lineage, fingerprint, threshold)
            for lineage, fingerprint, threshold in self._db.execute(
                "SELECT lineage, fingerprint, threshold FROM reported WHERE source = ?",
                (source,),
            )
        )
        stale = frozenset(
            (lineage, fingerprint, newer)
            for lineage, fingerprint, newer in self._db.execute(
                "SELECT lineage, fingerprint, newer_fingerprint FROM stale_deployments"
                " WHERE source = ?",
                (source,),
            )
        )
        problems = frozenset(
            Problem(path, reason, detail, lineage)
            for path, reason, detail, lineage in self._db.execute(
                "SELECT path, reason, detail, lineage FROM problems WHERE source = ?", (source,)
            )
        )
        return SourceSnapshot(
            source=source,
            baselined=bool(row[0]),
            certificates=certificates,
            reported=reported,
            stale=stale,
            problems=problems,
            cursor=row[1],
        )

    def load_cursor(self, source: str) -> str | None:
        """What the source returned as its cursor last pass (None before its first)."""
        row = self._db.execute("SELECT cursor FROM sources WHERE source = ?", (source,)).fetchone()
        return None if row is None else row[0]

    def _select(
        self, query: str, source: str, lineages: Collection[str] | None
    ) -> Iterator[tuple[str, ...]]:
        """Rows of `query` (filtered by source) for every lineage, or only for `lineages`."""
        if lineages is None:
            yield from self._db.execute(query, (source,))
        else:
            yield from _in_chunks(self._db, f"{query} AND lineage IN", (source,), sorted(lineages))

    def load_index(self, source: str) -> dict[str, Indexed]:
        """lineage -> identity and next threshold, for every certificate of a source."""
        return {
            lineage: Indexed(identity, next_threshold)
            for lineage, identity, next_threshold in self._db.execute(
                "SELECT lineage, identity, next_threshold FROM certificates WHERE source = ?",
                (source,),
            )
        }

    def thresholds_due(self, source: str, now: datetime) -> list[str]:
        """Lineages whose next expiry threshold is crossed by `now`: one indexed query."""
        return [
            lineage
            for (lineage,) in self._db.execute(
                "SELECT lineage FROM certificates WHERE source = ? AND next_threshold <= ?",
                (source, _epoch(now)),
            )
        ]

    def arm_thresholds(self, policy: str) -> None:
        """A different expiry policy than last pass: every certificate is due once more."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'policy'").fetchone()
        if row is not None and row[0] == policy:
            return
        with self.transaction() as db:
            db.execute("UPDATE certificates SET next_threshold = 0")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('policy', ?)", (policy,))

    def load_files(self, source: str) -> dict[str, CachedFile]:
        """Every remembered file's identity; payloads stay here (see load_payload)."""
        return {
            path: CachedFile((dev, ino, size, mtime_ns), sys.intern(signers), None)
            for path, dev, ino, size, mtime_ns, signers in self._db.execute(
                "SELECT path, dev, ino, size, mtime_ns, signers FROM files WHERE source = ?",
                (source,),
            )
        }

    def load_payload(self, source: str, path: str) -> str | None:
        """One file's parse result, fetched when the reader reuses it: memory stays flat."""
        row = self._db.execute(
            "SELECT payload FROM files WHERE source = ? AND path = ?", (source, path)
        ).fetchone()
        return None if row is None else str(row[0])

    def commit_pass(
        self,
        changes: Sequence[SourceChange],
        routed: Sequence[tuple[Envelope, Sequence[str]]],
        now: datetime,
        *,
        issuances: Sequence[Issuance] = (),
        warned: Sequence[tuple[str, str]] = (),
        agent_runs: Mapping[str, datetime] | None = None,
        agents_stale: Sequence[AgentRun] = (),
        writers: Sequence[Callable[[sqlite3.Connection], None]] = (),
        rate_limits_evaluated: str | None = None,
    ) -> list[IdConflict]:
        """Write every source's new snapshot and the routed events in one transaction
        (with the issuance history, the rate-limit warnings, the renewal agents' runs
        and the staleness reported for them, and `writers`' rows).

        Returns the events whose id was already recorded for a different event."""
        with self.transaction() as db:
            for writer in writers:
                writer(db)
            for change in changes:
                _write_snapshot(db, change.before, change.after, now, change.next_thresholds)
                _write_files(db, change.after.source, change.files_before, change.files_after)
            conflicts, written = _write_events(
                db, routed, now
            )  # records runs that came through the spool
            _record_runs(db, (agent_runs or {}).items())
            db.executemany(
                "UPDATE agent_runs SET stale_reported = ? WHERE store = ?",
                [(_epoch(a.last_run), a.store) for a in agents_stale],
            )
            db.executemany(
                "INSERT OR IGNORE INTO issuances VALUES (?, ?, ?, ?)",
                [
                    (i.key, json.dumps(list(i.names)), _epoch(i.issued_at), int(i.certificate))
                    for i in issuances
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO rate_warnings VALUES (?, ?, ?)",
                [(rule, key, _epoch(now)) for rule, key in warned],
            )
            if rate_limits_evaluated is not None:
                last_event = db.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('rate_limits', ?)",
                    (json.dumps([_epoch(now), rate_limits_evaluated, last_event]),),
                )
        self._written = written
        return conflicts

    def issuances_since(self, since: datetime) -> list[Issuance]:
        return [
            Issuance(key, tuple(json.loads(names)), datetime.fromtimestamp(at, UTC), certificate)
            for key, names, at, certificate in self._db.execute(
                "SELECT key, names, issued_at, certificate FROM issuances WHERE issued_at > ?",
                (_epoch(since),),
            )
        ]

    def failures_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(domain, when) of challenge failures recorded since `since`."""
        return [
            (subject, datetime.fromtimestamp(at, UTC))
            for subject, at in self._db.execute(
                "SELECT subject, time FROM events WHERE kind = 'challenge_failed' AND time > ?",
                (_epoch(since),),
            )
        ]

    def issuance_keys_since(self, since: datetime) -> set[str]:
        return {
            key
            for (key,) in self._db.execute(
                "SELECT key FROM issuances WHERE issued_at > ?", (_epoch(since),)
            )
        }

    def rate_limits_due(self, now: datetime, limits: str, windows: Mapping[str, float]) -> bool:
        """Whether anything a rate-limit count depends on may have moved since the last
        evaluation, when no issuance or failure is new this pass: the rules changed, the
        clock went back, an issuance left a window (a renewal can then count as new) or
        entered one from the future, a warning re-armed, or a challenge failure was
        recorded (`emit`, the spool). `windows`: rule name -> seconds."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'rate_limits'").fetchone()
        if row is None:
            return True
        last, last_limits, last_event = json.loads(row[0])
        at = _epoch(now)
        if last_limits != limits or at < last:
            return True
        for seconds in {0.0, *windows.values()}:
            if self._db.execute(
                "SELECT 1 FROM issuances WHERE issued_at > ? AND issued_at <= ? LIMIT 1",
                (last - seconds, at - seconds),
            ).fetchone():
                return True
        for rule, _, warned_at in self._db.execute(
            "SELECT rule, key, warned_at FROM rate_warnings"
        ):
            if rule in windows and last < warned_at + windows[rule] <= at:
                return True
        return bool(
            self._db.execute(
                "SELECT 1 FROM events WHERE kind = 'challenge_failed'"
                " AND (rowid > ? OR (time > ? AND time <= ?)) LIMIT 1",
                (last_event, last, at),
            ).fetchone()
        )

    def rate_warnings(self) -> dict[tuple[str, str], datetime]:
        return {
            (rule, key): datetime.fromtimestamp(at, UTC)
            for rule, key, at in self._db.execute("SELECT rule, key, warned_at FROM rate_warnings")
        }

    def agent_runs(self) -> dict[str, AgentRun]:
        """Every store whose renewal agent was seen running, by source id."""
        try:
            rows = self._db.execute(
                "SELECT store, last_run, stale_reported FROM agent_runs"
            ).fetchall()
        except sqlite3.OperationalError:  # read-only, on a database no pass has upgraded yet
            return {}
        return {
            store: AgentRun(
                store=store,
                last_run=datetime.fromtimestamp(last, UTC),
                stale_reported=None if told is None else datetime.fromtimestamp(told, UTC),
            )
            for store, last, told in rows
        }

    def record_events(
        self, routed: Sequence[tuple[Envelope, Sequence[str]]], now: datetime
    ) -> list[IdConflict]:
        """History and outbox rows for events that no snapshot caused (emit, spool)."""
        with self.transaction() as db:
            conflicts, written = _write_events(db, routed, now)
        self._written = written
        return conflicts

    # -- outbox --------------------------------------------------------------------

    def due(self, sink: str, now: datetime) -> list[OutboxRow]:
        """Pending rows for one sink whose next attempt is due, in the order they were queued."""
        return self._rows(_DUE, (sink, _epoch(now)))

    def pending(self) -> list[OutboxRow]:
        return self._rows(_PENDING, ())

    def _rows(self, query: str, parameters: tuple[object, ...]) -> list[OutboxRow]:
        return [
            OutboxRow(
                envelope=self._written.get(event_id) or from_json(cloudevent),
                sink=sink,
                attempts=attempts,
                created_at=datetime.fromtimestamp(created_at, UTC),
                last_error=last_error,
            )
            for event_id, cloudevent, sink, attempts, created_at, last_error in self._db.execute(
                query, parameters
            )
        ]

    def mark_delivered(self, sink: str, rows: Iterable[OutboxRow], now: datetime) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE event_id = ? AND sink = ?",
                [(_epoch(now), row.envelope.id, sink) for row in rows],
            )
            db.execute(
                "INSERT INTO sinks VALUES (?, ?) ON CONFLICT (sink) DO UPDATE"
                " SET last_delivered = excluded.last_delivered",
                (sink, _epoch(now)),
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
                " WHERE event_id = ? AND sink = ?",
                [(reason, row.envelope.id, sink) for row in rows],
            )

    def retry_later(
        self, sink: str, rows: Iterable[OutboxRow], next_attempt: datetime, reason: str
    ) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
                " WHERE event_id = ? AND sink = ?",
                [(_epoch(next_attempt), reason, row.envelope.id, sink) for row in rows],
            )

    def expire(self, sink: str, rows: Iterable[OutboxRow]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'expired' WHERE event_id = ? AND sink = ?",
                [(row.envelope.id, sink) for row in rows],
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
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_success', ?)", (str(_epoch(now)),)
            )

    def count_read_errors(self, number: int) -> int:
        """Add a pass's unreadable inputs to the running total (x509_read_errors); the total."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta VALUES ('read_errors', ?) ON CONFLICT (key)"
                " DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
                (str(number),),
            )
            (total,) = db.execute("SELECT value FROM meta WHERE key = 'read_errors'").fetchone()
        return int(total)

    # -- CRL cache (a cache: written on its own, losing it costs one more download) -----

    def load_crl(self, url: str) -> CachedCrl | None:
        row = self._db.execute(
            "SELECT body, fetched_at, etag, last_modified, next_update FROM crl_cache"
            " WHERE url = ?",
            (url,),
        ).fetchone()
        if row is None:
            return None
        body, fetched_at, etag, last_modified, next_update = row
        return CachedCrl(
            url=url,
            body=bytes(body),
            fetched_at=datetime.fromtimestamp(fetched_at, UTC),
            etag=etag,
            last_modified=last_modified,
            next_update=None if next_update is None else datetime.fromtimestamp(next_update, UTC),
        )

    def save_crl(self, cached: CachedCrl) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO crl_cache VALUES (?, ?, ?, ?, ?, ?)",
                (
                    cached.url,
                    cached.body,
                    _epoch(cached.fetched_at),
                    cached.etag,
                    cached.last_modified,
                    None if cached.next_update is None else _epoch(cached.next_update),
                ),
            )

    # -- history -------------------------------------------------------------------

    def history(self, limit: int = 100) -> list[HistoryEntry]:
        """The most recent events, newest last, with each sink's delivery state."""
        rows = self._db.execute(
            "SELECT id, cloudevent FROM events ORDER BY time DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
        entries = []
        for event_id, cloudevent in reversed(rows):
            deliveries = {
                sink: Delivery(
                    state=state,
                    attempts=attempts,
                    next_attempt=(
                        datetime.fromtimestamp(next_attempt, UTC) if state == "retrying" else None
                    ),
                    last_error=last_error,
                )
                for sink, state, attempts, next_attempt, last_error in self._db.execute(
                    f"SELECT sink, {_SHOWN}, attempts,"  # noqa: S608  # _SHOWN is a constant
                    " next_attempt, last_error FROM outbox"
                    " WHERE event_id = ? ORDER BY sink",
                    (event_id,),
                )
            }
            entries.append(HistoryEntry(envelope=from_json(cloudevent), deliveries=deliveries))
        return entries

    def inventory(self) -> dict[str, list[Observation]]:
        """Every source's certificates as of the last pass."""
        found: dict[str, list[Observation]] = {}
        for source, raw in self._db.execute(
            "SELECT source, observation FROM certificates ORDER BY source, lineage"
        ):
            found.setdefault(source, []).append(Observation.from_json(json.loads(raw)))
        return found


def _index_thresholds(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3: add certificates.identity and .next_threshold, indexed. Idempotent.

    Old rows get their identity from their observation and are due at once, so the
    first pass after the upgrade looks at every certificate and sets the real instants.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
    if "next_threshold" not in columns:
        db.execute("ALTER TABLE certificates ADD COLUMN next_threshold REAL")
    db.execute(
        "CREATE INDEX IF NOT EXISTS certificates_due ON certificates (source, next_threshold)"
    )
    if "identity" in columns:
        return  # this layout already (every open checks; only an upgrade scans the rows)
    db.execute("ALTER TABLE certificates ADD COLUMN identity BLOB")
    stale = db.execute("SELECT source, lineage, observation FROM certificates").fetchall()
    db.executemany(
        "UPDATE certificates SET identity = ?, next_threshold = 0 WHERE source = ? AND lineage = ?",
        [
            (identity(Observation.from_json(json.loads(raw))), source, lineage)
            for source, lineage, raw in stale
        ],
    )


def identity(observation: Observation) -> bytes:
    """A digest of everything an observation is made of: equal identities, equal
    observations (a certificate's facts follow from its fingerprint and signer).
    16 bytes, not the fields themselves: every row's identity is loaded each pass."""
    fields = (
        observation.role,
        observation.lineage,
        observation.path,
        observation.domain,
        "\x1e".join(observation.domains),
        observation.fingerprint,
        observation.certificate.signed_by or "",
        str(observation.chain_length),
        repr(observation.renewal),
    )
    return hashlib.blake2b("\x1f".join(fields).encode(), digest_size=16).digest()


def _move_stale_marks(db: sqlite3.Connection) -> None:
    """Schema 1 kept deployment_stale marks in `reported` as "stale:<newer fingerprint>"."""
    db.execute(
        "INSERT OR IGNORE INTO stale_deployments"
        " SELECT source, lineage, fingerprint, substr(threshold, 7) FROM reported"
        " WHERE threshold LIKE 'stale:%'"
    )
    db.execute("DELETE FROM reported WHERE threshold LIKE 'stale:%'")


def _write_snapshot(
    db: sqlite3.Connection,
    before: SourceSnapshot | None,
    after: SourceSnapshot,
    now: datetime,
    next_thresholds: Mapping[str, float | None],
) -> None:
    source = after.source
    db.execute(
        "INSERT INTO sources VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE"
        " SET baselined = excluded.baselined, last_scan = excluded.last_scan,"
        " cursor = excluded.cursor",
        (source, int(after.baselined), _epoch(now), after.cursor),
    )
    old = before.certificates if before else {}
    db.executemany(
        "DELETE FROM certificates WHERE source = ? AND lineage = ?",
        [(source, lineage) for lineage in old if lineage not in after.certificates],
    )
    written = [
        (lineage, observation)
        for lineage, observation in after.certificates.items()
        if old.get(lineage) != observation
    ]
    db.executemany(
        "INSERT OR REPLACE INTO certificates VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                source,
                lineage,
                observation.fingerprint,
                json.dumps(observation.to_json()),
                identity(observation),
                next_thresholds.get(lineage, 0.0),
            )
            for lineage, observation in written
        ],
    )
    rewritten = {lineage for lineage, _ in written}
    db.executemany(  # the identity too: a row written by another version may differ only there
        "UPDATE certificates SET next_threshold = ?, identity = ? WHERE source = ? AND lineage = ?",
        [
            (instant, identity(after.certificates[lineage]), source, lineage)
            for lineage, instant in next_thresholds.items()
            if lineage not in rewritten and lineage in after.certificates
        ],
    )
    old_reported = before.reported if before else frozenset()
    db.executemany(
        "DELETE FROM reported WHERE source = ? AND lineage = ? AND fingerprint = ?"
        " AND threshold = ?",
        [(source, *key) for key in old_reported - after.reported],
    )
    db.executemany(
        "INSERT OR IGNORE INTO reported VALUES (?, ?, ?, ?)",
        [(source, *key) for key in after.reported - old_reported],
    )
    old_stale = before.stale if before else frozenset()
    db.executemany(
        "DELETE FROM stale_deployments WHERE source = ? AND lineage = ? AND fingerprint = ?"
        " AND newer_fingerprint = ?",
        [(source, *mark) for mark in old_stale - after.stale],
    )
    db.executemany(
        "INSERT OR IGNORE INTO stale_deployments VALUES (?, ?, ?, ?)",
        [(source, *mark) for mark in after.stale - old_stale],
    )
    old_problems = before.problems if before else frozenset()
    db.executemany(
        "DELETE FROM problems WHERE source = ? AND path = ? AND reason = ?",
        [(source, p.path, p.reason) for p in old_problems - after.problems],
    )
    db.executemany(
        "INSERT OR REPLACE INTO problems VALUES (?, ?, ?, ?, ?)",
        [(source, p.path, p.reason, p.detail, p.lineage) for p in after.problems - old_problems],
    )


def _write_files(
    db: sqlite3.Connection,
    source: str,
    before: Mapping[str, CachedFile],
    after: Mapping[str, CachedFile],
) -> None:
    db.executemany(
        "DELETE FROM files WHERE source = ? AND path = ?",
        [(source, path) for path in before if path not in after],
    )
    db.executemany(
        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (source, path, *cached.identity, cached.signers, cached.payload)
            for path, cached in after.items()
            if cached.payload is not None and before.get(path) != cached
        ],
    )


def _record_runs(db: sqlite3.Connection, runs: Iterable[tuple[str, datetime]]) -> None:
    """Keep the latest run per store (a late spool file never moves it backwards)."""
    db.executemany(
        "INSERT INTO agent_runs (store, last_run) VALUES (?, ?) ON CONFLICT (store)"
        " DO UPDATE SET last_run = max(last_run, excluded.last_run)",
        [(store, _epoch(when)) for store, when in runs],
    )


def _in_chunks(
    db: sqlite3.Connection, query: str, first: tuple[str, ...], keys: Sequence[str]
) -> Iterator[tuple[str, ...]]:
    """`query (?, ?, ...)` over `keys` 500 at a time (SQLite caps a statement's
    parameters); only placeholders are formatted into the SQL, never a value."""
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        yield from db.execute(f"{query} ({marks})", (*first, *chunk))


_CONFLICT_NAMESPACE = uuid.UUID("0c1f3d0e-93a4-4c55-8f7e-2d6a1b9e5c47")


def _write_events(
    db: sqlite3.Connection, routed: Sequence[tuple[Envelope, Sequence[str]]], now: datetime
) -> tuple[list[IdConflict], dict[str, Envelope]]:
    """History and outbox rows; the id conflicts renamed, and the events written (by id,
    for drain() to deliver without decoding them again)."""
    conflicts = []
    written: dict[str, Envelope] = {}
    # A run reported through emit, the spool or the bridge is a run wherever it came in.
    _record_runs(
        db,
        [
            (envelope.event.store, envelope.event.ran_at or envelope.time)
            for envelope, _ in routed
            if isinstance(envelope.event, RenewalAgentRun) and envelope.event.store
        ],
    )
    for envelope, sinks in routed:
        recorded = _insert_event(db, envelope)
        if not recorded:
            existing = db.execute(
                "SELECT cloudevent FROM events WHERE id = ?", (envelope.id,)
            ).fetchone()
            if existing is None or _content(from_json(existing[0])) == _content(envelope):
                continue  # the same event was recorded before: never queue it twice
            fresh = str(uuid.uuid5(_CONFLICT_NAMESPACE, f"{envelope.id}\x1f{_content(envelope)}"))
            conflicts.append(
                IdConflict(id=envelope.id, recorded_as=fresh, summary=envelope.event.summary())
            )
            envelope = replace(envelope, id=fresh)
            if not _insert_event(db, envelope):
                continue  # recorded under its new id on an earlier read
        written[envelope.id] = envelope
        db.executemany(
            "INSERT OR IGNORE INTO outbox (event_id, sink, state, next_attempt, created_at)"
            " VALUES (?, ?, 'pending', ?, ?)",
            [(envelope.id, sink, _epoch(now), _epoch(now)) for sink in sinks],
        )
    return conflicts, written


def _insert_event(db: sqlite3.Connection, envelope: Envelope) -> bool:
    return bool(
        db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?)",
            (
                envelope.id,
                envelope.event.kind,
                envelope.event.subject,
                envelope.event.store,
                _epoch(envelope.time),
                to_json(envelope),
            ),
        ).rowcount
    )


def _content(envelope: Envelope) -> str:
    """What makes two events with one id the same event: all but the `time` it was sent."""
    document = to_cloudevent(envelope)
    del document["time"]
    return json.dumps(document, sort_keys=True, ensure_ascii=False)
