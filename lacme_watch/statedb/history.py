"""Issuance history, rate-limit warnings, renewal agents' runs, read errors and cached CRLs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..observations import Issuance
from ..sources.crl import CachedCrl
from .connected import Connected, epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRun:
    """The last run seen of a store's renewal agent, and the run a staleness was told for."""

    store: str
    last_run: datetime
    stale_reported: datetime | None = None


class History(Connected):
    """What rate limits, renewal agents, metrics and CRL checks remember across passes."""

    def issuances_since(self, since: datetime) -> list[Issuance]:
        return [
            Issuance(key, tuple(json.loads(names)), datetime.fromtimestamp(at, UTC), certificate)
            for key, names, at, certificate in self._db.execute(
                "SELECT key, names, issued_at, certificate FROM issuances WHERE issued_at > ?",
                (epoch(since),),
            )
        ]

    def failures_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(domain, when) of challenge failures recorded since `since`."""
        return [
            (subject, datetime.fromtimestamp(at, UTC))
            for subject, at in self._db.execute(
                "SELECT subject, time FROM events WHERE kind = 'challenge_failed' AND time > ?",
                (epoch(since),),
            )
        ]

    def issuance_keys_since(self, since: datetime) -> set[str]:
        return {
            key
            for (key,) in self._db.execute(
                "SELECT key FROM issuances WHERE issued_at > ?", (epoch(since),)
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
        at = epoch(now)
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
                    epoch(cached.fetched_at),
                    cached.etag,
                    cached.last_modified,
                    None if cached.next_update is None else epoch(cached.next_update),
                ),
            )


def record_runs(db: sqlite3.Connection, runs: Iterable[tuple[str, datetime]]) -> None:
    """Keep the latest run per store (a late spool file never moves it backwards)."""
    db.executemany(
        "INSERT INTO agent_runs (store, last_run) VALUES (?, ?) ON CONFLICT (store)"
        " DO UPDATE SET last_run = max(last_run, excluded.last_run)",
        [(store, epoch(when)) for store, when in runs],
    )
