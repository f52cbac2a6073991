"""ARI's tables in the state database: one row per certificate, one per directory.

Written inside the pass's one transaction (StateStore.commit_pass), so a mark that an
event was announced commits with the event's outbox row: never lost, never twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .window import AriRecord

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ari_certificates ("
    " fingerprint TEXT PRIMARY KEY, cert_id TEXT NOT NULL, directory TEXT NOT NULL,"
    " next_check REAL NOT NULL, window_start REAL, window_end REAL, explanation_url TEXT,"
    " checked_at REAL, failures INTEGER NOT NULL DEFAULT 0, error TEXT,"
    " moved_for TEXT, overdue_for TEXT)",
    "CREATE TABLE IF NOT EXISTS ari_directories ("
    " directory TEXT PRIMARY KEY, renewal_info TEXT, fetched_at REAL NOT NULL, error TEXT)",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryRecord:
    """What an ACME directory said: its renewalInfo URL, or None (asked again a day later)."""

    directory: str
    renewal_info: str | None
    fetched_at: datetime
    error: str | None = None
    """Why the last fetch failed (then it is asked again whenever a certificate is due)."""

    @property
    def untrusted(self) -> bool:
        """Its TLS certificate could not be verified: not asked, but not a failed pass
        either (its client may trust it privately); tried again on the next pass."""
        return self.error is not None and self.error.startswith("untrusted: ")


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def ensure(db: sqlite3.Connection) -> None:
    """Create the tables if missing (additive: no schema version change); called inside
    the pass's transaction, so reading never needs the write lock."""
    for statement in _SCHEMA:
        db.execute(statement)


def _rows(db: sqlite3.Connection, query: str) -> list[tuple[Any, ...]]:
    """The rows, or none when the tables were never written (a state database from
    before ARI, or one where no certificate was asked about yet)."""
    try:
        return db.execute(query).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


def load_certificates(db: sqlite3.Connection) -> dict[str, AriRecord]:
    found: dict[str, AriRecord] = {}
    rows = _rows(
        db,
        "SELECT fingerprint, cert_id, directory, next_check, window_start, window_end,"
        " explanation_url, checked_at, failures, error, moved_for, overdue_for"
        " FROM ari_certificates",
    )
    if not rows:
        return found  # most passes: no CA was ever asked, and window.py is not loaded
    from .window import AriRecord, RenewalWindow

    for row in rows:
        fingerprint, cert_id, directory, next_check, start, end, explanation = row[:7]
        checked_at, failures, error, moved_for, overdue_for = row[7:]
        window = None
        if start is not None and end is not None:
            window = RenewalWindow(
                start=datetime.fromtimestamp(start, UTC),
                end=datetime.fromtimestamp(end, UTC),
                explanation_url=explanation,
            )
        found[fingerprint] = AriRecord(
            fingerprint=fingerprint,
            cert_id=cert_id,
            directory=directory,
            next_check=datetime.fromtimestamp(next_check, UTC),
            window=window,
            checked_at=_time(checked_at),
            failures=failures,
            error=error,
            moved_for=moved_for,
            overdue_for=overdue_for,
        )
    return found


def windows(db: sqlite3.Connection) -> dict[str, AriRecord]:
    """Every known answer by fingerprint, for status, check and metrics (read only)."""
    return {
        fingerprint: record
        for fingerprint, record in (readable_certificates(db) or {}).items()
        if record.window is not None or record.error is not None
    }


def readable_certificates(db: sqlite3.Connection) -> dict[str, AriRecord] | None:
    """load_certificates(), or None where the database cannot be read (read only, or
    locked): what can be shown is shown without windows."""
    try:
        return load_certificates(db)
    except sqlite3.Error:
        return None


def load_directories(db: sqlite3.Connection) -> dict[str, DirectoryRecord]:
    return {
        directory: DirectoryRecord(
            directory=directory,
            renewal_info=renewal_info,
            fetched_at=datetime.fromtimestamp(fetched_at, UTC),
            error=error,
        )
        for directory, renewal_info, fetched_at, error in _rows(
            db, "SELECT directory, renewal_info, fetched_at, error FROM ari_directories"
        )
    }


def write(
    db: sqlite3.Connection,
    records: Mapping[str, AriRecord],
    directories: Iterable[DirectoryRecord],
    *,
    keep: set[str],
) -> None:
    """Write changed rows; forget certificates no longer current (`keep` holds those)."""
    ensure(db)
    db.executemany(
        "INSERT OR REPLACE INTO ari_certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.fingerprint,
                r.cert_id,
                r.directory,
                r.next_check.timestamp(),
                _epoch(r.window.start) if r.window else None,
                _epoch(r.window.end) if r.window else None,
                r.window.explanation_url if r.window else None,
                _epoch(r.checked_at),
                r.failures,
                r.error,
                r.moved_for,
                r.overdue_for,
            )
            for r in records.values()
        ],
    )
    gone = [
        (fingerprint,)
        for (fingerprint,) in db.execute("SELECT fingerprint FROM ari_certificates")
        if fingerprint not in keep
    ]
    db.executemany("DELETE FROM ari_certificates WHERE fingerprint = ?", gone)
    db.executemany(
        "INSERT OR REPLACE INTO ari_directories VALUES (?, ?, ?, ?)",
        [(d.directory, d.renewal_info, d.fetched_at.timestamp(), d.error) for d in directories],
    )
