"""The `reported` marks as stored: one row per certificate, its labels packed in one text.

A certificate that comes due collects several marks at once (a 90-day certificate
crossing 30d is past 33% and 10% of its lifetime too): one short row each would be
three B-tree inserts and three keys of (source, lineage, fingerprint) per event. A
row per (source, lineage, fingerprint) holds every label, sorted, one per line;
in memory the marks stay the (lineage, fingerprint, label) triples detect() uses.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator

Mark = tuple[str, str, str]
"""(lineage, fingerprint, label), as detect.Reported."""

_SEPARATOR = "\n"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def pack(labels: Iterable[str]) -> str:
    """The labels sorted, one per line; a label holding a newline or a backslash (a
    name an endpoint was asked for, in `mismatch:NAME`) has them escaped."""
    ordered = sorted(labels)
    text = _SEPARATOR.join(ordered)
    if "\\" in text or text.count(_SEPARATOR) != len(ordered) - 1:
        text = _SEPARATOR.join(
            label.replace("\\", "\\\\").replace(_SEPARATOR, "\\n") for label in ordered
        )
    return text


def unpack(text: str) -> list[str]:
    """pack()'s labels back."""
    labels = text.split(_SEPARATOR)
    if "\\" in text:
        labels = [_ESCAPED.sub(_unescape, label) for label in labels]
    return labels


def _unescape(match: re.Match[str]) -> str:
    return _SEPARATOR if match[1] == "n" else match[1]


def unpacked(rows: Iterable[tuple[str, str, str]]) -> Iterator[Mark]:
    """(lineage, fingerprint, packed labels) rows as one mark per label."""
    for lineage, fingerprint, text in rows:
        for label in unpack(text):
            yield lineage, fingerprint, label


def register(db: sqlite3.Connection) -> None:
    """The SQL function write_marks() merges a row's labels with: once per connection."""
    db.create_function("lacme_watch_marks", 2, _union, deterministic=True)


def write_marks(
    db: sqlite3.Connection, source: str, before: frozenset[Mark], after: frozenset[Mark]
) -> None:
    """What changed from `before` to `after`, written (in key order: each page of the
    table is written once).

    `before` holds all of a lineage's marks or none of them (they are loaded by
    lineage): a certificate with marks in `before` gets exactly its marks in `after`,
    or loses its row; one with none there may still have a row that was not loaded (a
    partial rescan's), and its new marks are added to that row's, as one insert."""
    if before == after:
        return
    old = _grouped(before)
    new = _grouped(after)
    replaced: list[tuple[str, str, str, str]] = []
    added: list[tuple[str, str, str, str]] = []
    for key in sorted(key for key, labels in new.items() if old.get(key) != labels):
        (replaced if key in old else added).append((source, *key, pack(new[key])))
    db.executemany(
        "DELETE FROM reported WHERE source = ? AND lineage = ? AND fingerprint = ?",
        [(source, *key) for key in sorted(old.keys() - new.keys())],
    )
    db.executemany("INSERT OR REPLACE INTO reported VALUES (?, ?, ?, ?)", replaced)
    if added:
        db.executemany(
            "INSERT INTO reported VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
            " SET thresholds = lacme_watch_marks(thresholds, excluded.thresholds)",
            added,
        )


def _grouped(marks: frozenset[Mark]) -> dict[tuple[str, str], set[str]]:
    """(lineage, fingerprint) -> its labels."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for lineage, fingerprint, label in marks:
        key = (lineage, fingerprint)
        found = grouped.get(key)
        if found is None:
            grouped[key] = {label}
        else:
            found.add(label)
    return grouped


def _union(stored: str, new: str) -> str:
    """A row's labels with more added (SQL: only called when a row was there)."""
    return pack({*unpack(stored), *unpack(new)})


def pack_marks(db: sqlite3.Connection, created: str) -> None:
    """Schema 5 -> 6 (and every older one): `reported` held one row per mark (with a
    rowid up to schema 4); its rows become one per certificate, every mark kept.
    `created` is the new table's CREATE statement. A packed table is left as it is."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(reported)")}
    if "threshold" not in columns:
        return
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for source, lineage, fingerprint, label in db.execute(
        "SELECT source, lineage, fingerprint, threshold FROM reported"
    ):
        grouped.setdefault((source, lineage, fingerprint), []).append(label)
    db.execute("DROP TABLE reported")
    db.execute(created)
    db.executemany(
        "INSERT INTO reported VALUES (?, ?, ?, ?)",
        [(*key, pack(labels)) for key, labels in sorted(grouped.items())],
    )
