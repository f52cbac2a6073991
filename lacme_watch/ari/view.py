"""What `status` and `check` show of renewal information: read from the state database,
never asked of a CA (only `watch` makes requests)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from ..events.cloudevents import format_time
from ..observations import Observation
from . import records
from .window import AriRecord, late_in_window


def known_windows(db: sqlite3.Connection) -> dict[str, AriRecord]:
    """The CA's last answer (or failure) per fingerprint."""
    return records.windows(db)


def directory_notes(db: sqlite3.Connection) -> list[dict[str, object]]:
    """ACME directories whose last fetch failed (e.g. a TLS certificate not trusted here)."""
    try:
        directories = records.load_directories(db)
    except sqlite3.Error:
        return []
    return [
        {
            "directory": entry.directory,
            "error": entry.error,
            "fetched_at": format_time(entry.fetched_at),
        }
        for entry in sorted(directories.values(), key=lambda entry: entry.directory)
        if entry.error is not None
    ]


def window_json(record: AriRecord | None, now: datetime) -> dict[str, object] | None:
    """`status --json`'s `renewal_window` for one certificate."""
    if record is None:
        return None
    window = record.window
    state = None
    if window is not None:
        state = "ahead" if now < window.start else "open" if now < window.end else "passed"
    return {
        "start": format_time(window.start) if window else None,
        "end": format_time(window.end) if window else None,
        "state": state,
        "explanation_url": window.explanation_url if window else None,
        "checked_at": format_time(record.checked_at) if record.checked_at else None,
        "next_check": format_time(record.next_check),
        "cert_id": record.cert_id,
        "directory": record.directory,
        "error": record.error,
    }


def late_certificates(
    inventory: Iterable[tuple[str, Observation]],
    windows: Mapping[str, AriRecord],
    now: datetime,
    grace: timedelta,
) -> list[str]:
    """`check --ari-grace`: certificates unrenewed that long into an open window."""
    late = []
    for _, observation in inventory:
        window = late_in_window(observation, windows.get(observation.fingerprint), now, grace)
        if window is not None:
            late.append(f"{observation.domain} (window opened {format_time(window.start)})")
    return late


def windows_of(
    inventory: Iterable[tuple[str, Observation]], windows: Mapping[str, AriRecord]
) -> tuple[tuple[str, Observation, datetime, datetime], ...]:
    """(store, certificate, start, end) for each certificate whose CA answered: metrics."""
    found = []
    for source, observation in inventory:
        record = windows.get(observation.fingerprint)
        if record is not None and record.window is not None:
            found.append((source, observation, record.window.start, record.window.end))
    return tuple(found)
