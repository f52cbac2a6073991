"""The state database in state_dir: snapshots, file cache, event history and the outbox.

One module per part: `schema` (tables, version, upgrades), `connected` (the
transaction), `snapshots`, `outbox`, `history`; `StateStore` opens the file and joins them.

A pass commits once (a large store's first pass, once per slice: slices.py): the new
snapshots and the outbox rows for the events they caused go in the same transaction,
so a crash either repeats what was not committed or loses nothing of what was.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from ..errors import StoreError
from ..events.cloudevents import Envelope
from ..observations import Issuance
from . import marks
from .connected import collector_paused, epoch
from .files import (
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
from .history import AgentRun, History, record_runs
from .outbox import Backlog, Delivery, HistoryEntry, IdConflict, Outbox, OutboxRow, write_events
from .schema import SCHEMA, SCHEMA_VERSION, upgrade
from .snapshots import (
    Indexed,
    Snapshots,
    SourceChange,
    StatRecord,
    identity,
    write_files,
    write_snapshot,
    write_stat_record,
)

__all__ = [
    "SCHEMA_VERSION",
    "AgentRun",
    "Backlog",
    "Delivery",
    "HistoryEntry",
    "IdConflict",
    "Indexed",
    "OutboxRow",
    "SourceChange",
    "StatRecord",
    "StateStore",
    "collector_paused",
    "identity",
]


class StateStore(Snapshots, Outbox, History):
    """SQLite in state_dir (created 0700, the database 0600); schema versioned.

    `read_only=True` (status, check, events) opens the database for reading with no
    lock, so those commands work on a read-only mount or a file they cannot write; a
    missing database reads as empty. A writable open that finds the database empty,
    truncated or not SQLite moves it aside and starts anew: `reset` says so, and the
    caller reports it (stderr and a `state_reset` event).
    """

    def __init__(self, state_dir: Path, *, read_only: bool = False, repair: bool = True) -> None:
        self.state_dir = state_dir
        self._written: dict[int, Envelope] = {}
        """The last commit's events by seq: delivering them right after needs no decoding."""
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
            marks.register(self._db)
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
            create_database(self.path, move_aside(self.path, reason), _populate)
        elif not self.path.exists():
            create_database(self.path, populate=_populate)
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
            create_database(self.path, move_aside(self.path, str(exc)), _populate)
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
            _create_tables(self._db)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.state_dir / DATABASE_NAME} has schema {row[0]}, newer than this"
                    f" lacme-watch understands ({SCHEMA_VERSION}): upgrade lacme-watch"
                )
            if row is not None and int(row[0]) < SCHEMA_VERSION:
                upgrade(self._db, int(row[0]))
            if row is None or int(row[0]) != SCHEMA_VERSION:  # else a start writes nothing:
                _set_version(self._db)  # its commit, of no page, syncs no file (~0.5 ms of cron's)
            _add_salt(self._db)

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
                write_snapshot(
                    db, change.before, change.after, now, change.next_thresholds, change.identities
                )
                write_files(db, change.after.source, change.files_before, change.files_after)
                write_stat_record(db, change)
            conflicts, written = write_events(
                db, routed, now
            )  # records runs that came through the spool
            record_runs(db, (agent_runs or {}).items())
            db.executemany(
                "UPDATE agent_runs SET stale_reported = ? WHERE store = ?",
                [(epoch(a.last_run), a.store) for a in agents_stale],
            )
            db.executemany(
                "INSERT OR IGNORE INTO issuances VALUES (?, ?, ?, ?)",
                [
                    (i.key, json.dumps(list(i.names)), epoch(i.issued_at), int(i.certificate))
                    for i in issuances
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO rate_warnings VALUES (?, ?, ?)",
                [(rule, key, epoch(now)) for rule, key in warned],
            )
            if rate_limits_evaluated is not None:
                last_event = db.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('rate_limits', ?)",
                    (json.dumps([epoch(now), rate_limits_evaluated, last_event]),),
                )
        self._written = written
        return conflicts


def _populate(db: sqlite3.Connection) -> None:
    """A new database's tables and first rows, written before it is put in place."""
    _create_tables(db)
    _set_version(db)
    _add_salt(db)


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _set_version(db: sqlite3.Connection) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))


def _add_salt(db: sqlite3.Connection) -> None:
    db.execute(  # secrets.token_hex's bytes, without its imports
        "INSERT OR IGNORE INTO meta VALUES ('id_salt', ?)", (os.urandom(16).hex(),)
    )
