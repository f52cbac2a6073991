"""The tables of the state database, its version, and the steps that upgrade older ones."""

from __future__ import annotations

import json
import sqlite3

from ..observations import Observation
from .snapshots import identity

SCHEMA_VERSION = 4
"""2: deployment_stale marks moved out of `reported` into `stale_deployments`.
3: certificates carry an identity key and their next threshold instant (indexed).
4: `stat_records`, one per file store (statrecord.py); a new table, nothing to move."""

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS stat_records (
    source TEXT PRIMARY KEY, key TEXT NOT NULL, until REAL, record BLOB NOT NULL);
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


def index_thresholds(db: sqlite3.Connection) -> None:
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


def move_stale_marks(db: sqlite3.Connection) -> None:
    """Schema 1 kept deployment_stale marks in `reported` as "stale:<newer fingerprint>"."""
    db.execute(
        "INSERT OR IGNORE INTO stale_deployments"
        " SELECT source, lineage, fingerprint, substr(threshold, 7) FROM reported"
        " WHERE threshold LIKE 'stale:%'"
    )
    db.execute("DELETE FROM reported WHERE threshold LIKE 'stale:%'")
