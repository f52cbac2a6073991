"""Last pass's parse results for a rescan, read in path order beside the scan.

The reader asks for the payload of each file it reuses. One query per file costs more
than the `stat` that found it unchanged (two per lacme certificate directory), so this
reads the source's rows with one cursor in path order, which is nearly the order the
stores ask in (a directory's files a few places apart). Rows stepped over wait in a
small dict until asked for (the latest _WAITING of them); a path asked for after the
cursor passed it without keeping it falls back to one query. Memory is bounded by that
dict, whatever the scan asks and in whatever order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

_AHEAD = 64
"""Rows read past the one asked for before giving up on finding it ahead."""
_WAITING = 4 * _AHEAD
"""Rows stepped over that are kept for when they are asked (a lacme directory's files
come a few places apart); older ones are dropped, and asked later, queried alone. A
scan that asks for scattered files would otherwise hold every row between them."""


class PayloadStream:
    """`payloads=` for a CertificateReader: the payload of one source's cached file."""

    def __init__(self, db: sqlite3.Connection, source: str) -> None:
        self._db = db
        self._source = source
        self._rows: Iterator[tuple[str, str]] | None = None
        self._waiting: dict[str, str] = {}
        self._last = ""
        """The greatest path the cursor has reached; an earlier one is behind it."""

    def __call__(self, path: str) -> str | None:
        found = self._waiting.pop(path, None)
        if found is not None:
            return found
        if path > self._last:
            if self._rows is None:
                self._rows = iter(
                    self._db.execute(
                        "SELECT path, payload FROM files WHERE source = ? ORDER BY path",
                        (self._source,),
                    )
                )
            for stepped, (row_path, payload) in enumerate(self._rows):
                self._last = row_path
                if row_path == path:
                    return str(payload)
                self._waiting[row_path] = str(payload)
                if len(self._waiting) > _WAITING:
                    del self._waiting[next(iter(self._waiting))]  # the oldest
                if row_path > path or stepped >= _AHEAD:
                    break
        return self._one(path)

    def with_chains(self, paths: Sequence[str]) -> dict[str, str]:
        """The payloads, among `paths`, of files that held more than one certificate (a
        payload line each): a few queries for many paths, whatever the cursor did."""
        found: dict[str, str] = {}
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                self._db.execute(
                    "SELECT path, payload FROM files WHERE source = ?"  # noqa: S608  # marks only
                    f" AND path IN ({marks}) AND instr(payload, char(10)) > 0",
                    (self._source, *chunk),
                )
            )
        return found

    def _one(self, path: str) -> str | None:
        row = self._db.execute(
            "SELECT payload FROM files WHERE source = ? AND path = ?", (self._source, path)
        ).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Ends the read before the pass writes (the cursor would see its own writes)."""
        self._rows = None
        self._waiting.clear()
