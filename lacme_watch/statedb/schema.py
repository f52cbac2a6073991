"""The tables of the state database, its version, and the steps that upgrade older ones."""

from __future__ import annotations

import sqlite3

from .marks import pack_marks
from .rows import decode_row, observation_row
from .snapshots import identity

SCHEMA_VERSION = 8
"""2: deployment_stale marks moved out of `reported` into `stale_deployments`.
3: certificates carry an identity key and their next threshold instant (indexed).
4: `stat_records`, one per file store (statrecord.py); a new table, nothing to move.
5: a certificate's identity key and next threshold instant moved to their own narrow
table (`lineage_index`), and `reported` is kept WITHOUT ROWID: a pass that moves 5,000
thresholds rewrites 5,000 short rows, not the pages of 5,000 wide certificate rows, a
rescan reads the identities without the observations' pages, and a mark is stored once.
The outbox index holds pending rows only (`outbox_pending`, not `outbox_due`): marking
5,000 delivered removes their entries instead of moving them, and it stays small.
`stat_deltas` (a new table) keeps what a partial scan saw over a large stat record.
6: `reported` holds one row per certificate with all its marks' labels (marks.py), not
one row per mark: a certificate that comes due past 30d, 33% and 10% at once is one
insert, not three.
7: events are numbered (`seq`, their rowid made an INTEGER PRIMARY KEY, which VACUUM
keeps), and the outbox is keyed by (sink, event seq), WITHOUT ROWID: one B-tree of
short integer keys, in each sink's queue order, instead of a table and an index of
event ids (random UUIDs) beside it; each of a pass's 5,000 events is one insert fewer.
8: a certificate's observation is kept as a JSON array of its values (rows.py), not
an object of named values: half the text, decoded in about a third of the time (a
pass where 5,000 certificates came due decodes 5,000 rows)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    source TEXT PRIMARY KEY, baselined INTEGER NOT NULL, last_scan REAL, cursor TEXT);
CREATE TABLE IF NOT EXISTS certificates (
    source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
    observation TEXT NOT NULL, PRIMARY KEY (source, lineage));
CREATE TABLE IF NOT EXISTS lineage_index (
    source TEXT NOT NULL, lineage TEXT NOT NULL, identity BLOB, next_threshold REAL,
    PRIMARY KEY (source, lineage)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lineage_index_due ON lineage_index (source, next_threshold);
CREATE TABLE IF NOT EXISTS reported (
    source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
    thresholds TEXT NOT NULL, PRIMARY KEY (source, lineage, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stale_deployments (
    source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
    newer_fingerprint TEXT NOT NULL, PRIMARY KEY (source, lineage, fingerprint, newer_fingerprint));
CREATE TABLE IF NOT EXISTS problems (
    source TEXT NOT NULL, path TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    lineage TEXT, PRIMARY KEY (source, path, reason));
CREATE TABLE IF NOT EXISTS files (
    source TEXT NOT NULL, path TEXT NOT NULL, dev INTEGER, ino INTEGER, size INTEGER,
    mtime_ns INTEGER, signers TEXT, payload TEXT NOT NULL, PRIMARY KEY (source, path));
CREATE TABLE IF NOT EXISTS stat_records (
    source TEXT PRIMARY KEY, key TEXT NOT NULL, until REAL, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS stat_deltas (source TEXT PRIMARY KEY, delta BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    subject TEXT NOT NULL, store TEXT, time REAL NOT NULL, cloudevent TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time);
CREATE TABLE IF NOT EXISTS outbox (
    sink TEXT NOT NULL, event INTEGER NOT NULL REFERENCES events (seq),
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'expired', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    created_at REAL NOT NULL, delivered_at REAL, last_error TEXT,
    PRIMARY KEY (sink, event)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, next_attempt)
    WHERE state = 'pending';
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


def upgrade(db: sqlite3.Connection, version: int) -> None:
    """Every step from `version` (an older schema) to SCHEMA_VERSION, in order; each
    step leaves a database it has already upgraded as it is."""
    if version < 2:
        move_stale_marks(db)
    narrow_index(db)
    pack_marks(db, _created("reported"))
    db.execute("DROP INDEX IF EXISTS outbox_due")  # outbox_pending (SCHEMA's) replaces it
    number_events(db)
    compact_observations(db)


def _created(table: str) -> str:
    """SCHEMA's CREATE statement of one table."""
    return next(part for part in SCHEMA.split(";") if f"EXISTS {table} (" in part)


_REWRITTEN_AT_ONCE = 2_000
"""Rows the schema 8 upgrade decodes and rewrites at a time: memory bounded by it, not
by the store."""


def compact_observations(db: sqlite3.Connection) -> None:
    """Schema 7 -> 8: every certificate row's observation, an object of named values
    up to 7, is rewritten as rows.py's array of the same values (its lineage, key,
    fingerprint, identity and thresholds as they were). A row in the array layout
    already is left as it is."""
    last = 0
    while True:
        found = db.execute(
            "SELECT rowid, lineage, observation FROM certificates WHERE rowid > ?"
            " ORDER BY rowid LIMIT ?",
            (last, _REWRITTEN_AT_ONCE),
        ).fetchall()
        if not found:
            return
        last = found[-1][0]
        db.executemany(
            "UPDATE certificates SET observation = ? WHERE rowid = ?",
            [
                (observation_row(decode_row(lineage, raw)), rowid)
                for rowid, lineage, raw in found
                if raw.startswith("{")
            ],
        )


def number_events(db: sqlite3.Connection) -> None:
    """Schema 6 -> 7: each event keeps its rowid as its `seq`, and each outbox row
    (keyed by event id up to 6) is keyed by its sink and that seq, its state, attempts
    and times as they were. An outbox row whose event is not recorded was never
    delivered (delivery joins the two) and is not carried over."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if "seq" in columns:
        return
    for index in ("events_by_time", "outbox_pending"):  # they go with the renamed tables
        db.execute(f"DROP INDEX IF EXISTS {index}")
    db.execute("ALTER TABLE outbox RENAME TO outbox_6")
    db.execute("ALTER TABLE events RENAME TO events_6")
    db.execute(_created("events"))
    db.execute(
        "INSERT INTO events (seq, id, kind, subject, store, time, cloudevent)"
        " SELECT rowid, id, kind, subject, store, time, cloudevent FROM events_6"
    )
    db.execute(_created("outbox"))
    db.execute(
        "INSERT INTO outbox SELECT o.sink, e.seq, o.state, o.attempts, o.next_attempt,"
        " o.created_at, o.delivered_at, o.last_error FROM outbox_6 o JOIN events e"
        " ON e.id = o.event_id"
    )
    db.execute("DROP TABLE outbox_6")
    db.execute("DROP TABLE events_6")
    for statement in SCHEMA.split(";"):  # the indexes dropped above, made anew
        if "CREATE INDEX" in statement:
            db.execute(statement)


def narrow_index(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3 -> 5: every certificate gets a row in `lineage_index`, its
    identity key and next threshold instant (certificates.identity and .next_threshold
    from schema 3 to 4).

    What the old columns hold moves as it is (nothing comes due twice or goes
    unannounced); rows from before schema 3 get their identity from their observation
    and are due at once, so the first pass after the upgrade sets the real instants.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
    if "next_threshold" in columns:
        if "identity" in columns:
            db.execute(
                "INSERT OR REPLACE INTO lineage_index"
                " SELECT source, lineage, identity, next_threshold FROM certificates"
            )
        db.execute("DROP INDEX IF EXISTS certificates_due")
        db.execute("ALTER TABLE certificates DROP COLUMN next_threshold")
    if "identity" in columns:
        db.execute("ALTER TABLE certificates DROP COLUMN identity")
    missing = db.execute(
        "SELECT source, lineage, observation FROM certificates c WHERE NOT EXISTS"
        " (SELECT 1 FROM lineage_index i WHERE i.source = c.source AND i.lineage = c.lineage)"
    ).fetchall()
    db.executemany(
        "INSERT INTO lineage_index VALUES (?, ?, ?, 0)",
        [(source, lineage, identity(decode_row(lineage, raw))) for source, lineage, raw in missing],
    )


def move_stale_marks(db: sqlite3.Connection) -> None:
    """Schema 1 kept deployment_stale marks in `reported` as "stale:<newer fingerprint>"."""
    db.execute(
        "INSERT OR IGNORE INTO stale_deployments"
        " SELECT source, lineage, fingerprint, substr(threshold, 7) FROM reported"
        " WHERE threshold LIKE 'stale:%'"
    )
    db.execute("DELETE FROM reported WHERE threshold LIKE 'stale:%'")
