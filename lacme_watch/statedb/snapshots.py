"""What each source showed last pass: certificates and their marks, problems, the file cache."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..detection.detect import SourceSnapshot
from ..observations import Observation, Problem
from .connected import Connected, epoch
from .marks import unpacked, write_marks
from .rows import decode_row, observation_row
from .stored import StoredObservation, stored_identity

if TYPE_CHECKING:
    from ..reading.reader import CachedFile


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
    stat_record: StatRecord | None = None
    """What the next pass may compare instead of scanning (None: scan it in full)."""
    identities: Mapping[str, tuple[Observation, bytes]] = field(default_factory=dict)
    """identity() of observations, made once already (by incremental.py, to compare
    with the index), each beside the observation it is of: used for that one only."""

    @property
    def carried(self) -> bool:
        """Last pass's outcome stands (rescans.standing: one snapshot both before and
        after): only `last_scan` moves."""
        return self.before is self.after


@dataclass(frozen=True, slots=True)
class StatRecord:
    """A file store's stat record as kept (see statrecord.py), and what it holds for."""

    key: str
    """Everything beside the files that decides the scan's outcome (configuration,
    signers, versions): a different key, a full scan."""
    until: float | None
    """Epoch of the first instant the checks after detect() may say something new
    (a chain's next lifetime threshold); None: never."""
    record: bytes | bytearray
    """bytes as loaded; as a scan made it, the buffer it was made in."""
    delta: bytes | bytearray | None = None
    """What stands over `record` for the few paths a partial scan read again
    (statrecord.Recorder.overlay): a large record is not written again for them."""
    rewrite: bool = True
    """False: `record` is the one loaded, left as it is; only the rest is written."""


@dataclass(frozen=True, slots=True)
class Indexed:
    """What the database remembers of a lineage without decoding its observation."""

    identity: bytes | None
    next_threshold: float | None


class Snapshots(Connected):
    """Reading the snapshots back: whole, by lineage, or just what time made due."""

    def load_snapshot(
        self,
        source: str,
        lineages: Collection[str] | None = None,
        *,
        marks_of: Collection[str] | None = None,
    ) -> SourceSnapshot | None:
        """The source's snapshot; with `lineages`, only their certificates (each decoded
        when first read beyond its fingerprint: see StoredObservation).
        Marks come whole (the checks after detect() look at every file's), or with
        `marks_of` only those lineages' (a partial rescan: the rest stay as they are);
        problems, cursor and baseline always come whole."""
        row = self._db.execute(
            "SELECT baselined, cursor FROM sources WHERE source = ?", (source,)
        ).fetchone()
        if row is None:
            return None
        certificates: dict[str, Observation] = {
            lineage: StoredObservation.stored(lineage, fingerprint, raw, stored)
            for lineage, fingerprint, raw, stored in self._select(
                "SELECT lineage, fingerprint, observation, identity FROM certificates"
                " LEFT JOIN lineage_index USING (source, lineage) WHERE source = ?",
                source,
                lineages,
            )
        }
        reported = frozenset(
            unpacked(
                self._select(
                    "SELECT lineage, fingerprint, thresholds FROM reported WHERE source = ?",
                    source,
                    marks_of,
                )
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

    def baselined(self, source: str) -> bool:
        """Whether a pass has taken the source's baseline (its first pass is over)."""
        row = self._db.execute(
            "SELECT baselined FROM sources WHERE source = ?", (source,)
        ).fetchone()
        return row is not None and bool(row[0])

    def load_cursor(self, source: str) -> str | None:
        """What the source returned as its cursor last pass (None before its first)."""
        row = self._db.execute("SELECT cursor FROM sources WHERE source = ?", (source,)).fetchone()
        return None if row is None else row[0]

    def _select(
        self, query: str, source: str, lineages: Collection[str] | None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of `query` (filtered by source) for every lineage, or only for `lineages`."""
        if lineages is None:
            return self._db.execute(query, (source,))
        return in_chunks(self._db, f"{query} AND lineage IN", (source,), sorted(lineages))

    def load_index(
        self, source: str, lineages: Collection[str] | None = None
    ) -> dict[str, Indexed]:
        """lineage -> identity and next threshold, for every certificate of a source (or
        only `lineages`: a partial rescan's)."""
        return {
            lineage: Indexed(identity, next_threshold)
            for lineage, identity, next_threshold in self._select(
                "SELECT lineage, identity, next_threshold FROM lineage_index WHERE source = ?",
                source,
                lineages,
            )
        }

    def thresholds_due(self, source: str, now: datetime) -> list[str]:
        """Lineages whose next expiry threshold is crossed by `now`: one indexed query."""
        return [
            lineage
            for (lineage,) in self._db.execute(
                "SELECT lineage FROM lineage_index WHERE source = ? AND next_threshold <= ?",
                (source, epoch(now)),
            )
        ]

    def arm_thresholds(self, policy: str) -> None:
        """A different expiry policy than last pass: every certificate is due once more."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'policy'").fetchone()
        if row is not None and row[0] == policy:
            return
        with self.transaction() as db:
            db.execute("UPDATE lineage_index SET next_threshold = 0")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('policy', ?)", (policy,))

    def load_files(
        self,
        source: str,
        paths: Collection[str] | None = None,
        under: Collection[str] = (),
    ) -> dict[str, CachedFile]:
        """Every remembered file's identity; payloads stay here (PayloadStream reads them).
        With `paths`, only those, and what lies under the directories `under` (a partial
        rescan's); a few (up to PAYLOADS_WITH_ROWS) with their payloads: scattered over
        a large store, the stream would step through the rows between them to reach
        each. More are as many as a first pass's slice or a whole store's: streamed."""
        from ..reading.reader import CachedFile  # the reader's modules: only when files are read

        if paths is None:
            rows: Iterable[tuple[Any, ...]] = self._db.execute(_IDENTITIES, (source,))
        else:  # under a directory: every path after "dir/" and before "dir0"
            few = len(paths) + len(under) <= PAYLOADS_WITH_ROWS
            query = _WITH_PAYLOADS if few else _IDENTITIES
            rows = [
                *in_chunks(self._db, f"{query} AND path IN", (source,), sorted(paths)),
                *(
                    row
                    for directory in under
                    for row in self._db.execute(
                        f"{query} AND path > ? AND path < ?",
                        (source, directory + "/", directory + "0"),
                    )
                ),
            ]
        return {
            path: CachedFile((dev, ino, size, mtime_ns), sys.intern(signers), payload)
            for path, dev, ino, size, mtime_ns, signers, payload in rows
        }

    def load_stat_record(self, source: str) -> StatRecord | None:
        row = self._db.execute(
            "SELECT key, until, record, delta FROM stat_records LEFT JOIN stat_deltas"
            " USING (source) WHERE source = ?",
            (source,),
        ).fetchone()
        if row is None:
            return None
        delta = None if row[3] is None else bytes(row[3])
        return StatRecord(row[0], row[1], bytes(row[2]), delta)

    def carried_snapshot(self, source: str) -> SourceSnapshot | None:
        """A source's snapshot without its certificates or marks, for a pass that keeps
        them as they are: its baseline, cursor and problems (reported every pass)."""
        return self.load_snapshot(source, (), marks_of=())

    def count_files(self, source: str) -> int:
        row = self._db.execute("SELECT count(*) FROM files WHERE source = ?", (source,)).fetchone()
        return int(row[0])

    def count_certificates(self, source: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM certificates WHERE source = ?", (source,)
        ).fetchone()
        return int(row[0])

    def inventory_of(
        self, source: str, lineages: Collection[str] | None = None
    ) -> dict[str, Observation]:
        """One source's certificates as of the last pass, by lineage (or only those of
        `lineages`)."""
        if lineages is not None:
            rows = self._select(
                "SELECT lineage, observation FROM certificates WHERE source = ?", source, lineages
            )
            return {lineage: decode_row(lineage, raw) for lineage, raw in sorted(rows)}
        return {
            lineage: decode_row(lineage, raw)
            for lineage, raw in self._db.execute(
                "SELECT lineage, observation FROM certificates WHERE source = ? ORDER BY lineage",
                (source,),
            )
        }

    def last_scan(self, source: str) -> float | None:
        """Epoch of the pass that last scanned (or carried) the source; None: never."""
        row = self._db.execute(
            "SELECT last_scan FROM sources WHERE source = ?", (source,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def fingerprints_of(self, source: str) -> list[tuple[str, str]]:
        """(lineage, fingerprint) of a source's certificates, no observation decoded."""
        return self._db.execute(
            "SELECT lineage, fingerprint FROM certificates WHERE source = ?", (source,)
        ).fetchall()

    def inventory(self) -> dict[str, list[Observation]]:
        """Every source's certificates as of the last pass."""
        found: dict[str, list[Observation]] = {}
        for source, lineage, raw in self._db.execute(
            "SELECT source, lineage, observation FROM certificates ORDER BY source, lineage"
        ):
            found.setdefault(source, []).append(decode_row(lineage, raw))
        return found


_IDENTITIES = "SELECT path, dev, ino, size, mtime_ns, signers, NULL FROM files WHERE source = ?"
_WITH_PAYLOADS = (
    "SELECT path, dev, ino, size, mtime_ns, signers, payload FROM files WHERE source = ?"
)
PAYLOADS_WITH_ROWS = 2_000
"""Changed paths (and directories) a partial rescan loads with their payloads: 1% of
100,000 files renewed, held at once, is a few MiB; every file of a store that was all
written just before its last scan is not."""


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


_PIECE = 1 << 20
"""Bytes of a stat record written at a time."""


def write_stat_record(db: sqlite3.Connection, change: SourceChange) -> None:
    """The record next pass compares, or none: it must scan in full."""
    if change.carried:
        return
    source, record = change.after.source, change.stat_record
    if record is None or record.delta is None:
        db.execute("DELETE FROM stat_deltas WHERE source = ?", (source,))
    if record is None:
        db.execute("DELETE FROM stat_records WHERE source = ?", (source,))
        return
    if record.delta is not None:
        db.execute("INSERT OR REPLACE INTO stat_deltas VALUES (?, ?)", (source, record.delta))
    if not record.rewrite:
        # Only if they moved: SQLite rewrites a row whole, its record blob (28 MiB for
        # lacme's 100,000 directories) read into memory and written again with it.
        db.execute(
            "UPDATE stat_records SET key = ?, until = ?"
            " WHERE source = ? AND (key IS NOT ? OR until IS NOT ?)",
            (record.key, record.until, source, record.key, record.until),
        )
        return
    # Written in pieces into a zeroblob: bound whole, SQLite would copy a large store's
    # record (28 MiB for lacme's 100,000 directories) and hold its pages at once.
    view = memoryview(record.record)
    inserted = db.execute(
        "INSERT OR REPLACE INTO stat_records VALUES (?, ?, ?, zeroblob(?))",
        (source, record.key, record.until, len(view)),
    )
    with db.blobopen("stat_records", "record", inserted.lastrowid or 0) as blob:
        for start in range(0, len(view), _PIECE):
            blob.write(view[start : start + _PIECE])


def write_snapshot(
    db: sqlite3.Connection,
    before: SourceSnapshot | None,
    after: SourceSnapshot,
    now: datetime,
    next_thresholds: Mapping[str, float | None],
    known: Mapping[str, tuple[Observation, bytes]] | None = None,
) -> None:
    source = after.source
    db.execute(
        "INSERT INTO sources VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE"
        " SET baselined = excluded.baselined, last_scan = excluded.last_scan,"
        " cursor = excluded.cursor",
        (source, int(after.baselined), epoch(now), after.cursor),
    )
    if before is after:  # carried over whole (SourceChange.carried): nothing else to write
        return
    old = before.certificates if before else {}
    gone = [(source, lineage) for lineage in old if lineage not in after.certificates]
    db.executemany("DELETE FROM certificates WHERE source = ? AND lineage = ?", gone)
    db.executemany("DELETE FROM lineage_index WHERE source = ? AND lineage = ?", gone)
    identities: dict[str, bytes] = {}
    made = known or {}
    written = [
        (lineage, observation)
        for lineage, observation in after.certificates.items()
        if _changed(old.get(lineage), observation, identities, lineage, made)
    ]
    if written:
        db.executemany(  # a generator: one row's JSON at a time, not the whole store's
            "INSERT OR REPLACE INTO certificates VALUES (?, ?, ?, ?)",
            (
                (source, lineage, observation.fingerprint, observation_row(observation))
                for lineage, observation in written
            ),
        )
    # The identity too where only the threshold moved: a row written by another version
    # may differ only there. A short row each, in key order: the wide rows stay as they are.
    indexed = {lineage for lineage, _ in written}
    indexed.update(lineage for lineage in next_thresholds if lineage in after.certificates)
    db.executemany(
        "INSERT INTO lineage_index VALUES (?, ?, ?, ?) ON CONFLICT (source, lineage)"
        " DO UPDATE SET identity = excluded.identity, next_threshold = excluded.next_threshold",
        [
            (
                source,
                lineage,
                identities.get(lineage) or _identity(lineage, after.certificates[lineage], made),
                next_thresholds.get(lineage, 0.0),
            )
            for lineage in sorted(indexed)
        ],
    )
    write_marks(db, source, before.reported if before else frozenset(), after.reported)
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


def _changed(
    old: Observation | None,
    new: Observation,
    identities: dict[str, bytes],
    lineage: str,
    known: Mapping[str, tuple[Observation, bytes]],
) -> bool:
    """Whether a lineage's row must be written anew. A row loaded with its identity is
    compared by it (equal identities, equal observations: see identity()), without
    decoding the row; the identity made is kept in `identities` for the index row."""
    if old is None:
        return True
    if old is new:
        return False
    stored = stored_identity(old)
    if stored is None:
        return old != new
    made = identities[lineage] = _identity(lineage, new, known)
    return made != stored


def _identity(
    lineage: str, observation: Observation, known: Mapping[str, tuple[Observation, bytes]]
) -> bytes:
    """identity(observation), unless `known` holds it for this very observation, or it
    is a row loaded with the identity it was written with (a certificate that came due
    with no file read: the index row moves its threshold and keeps that identity)."""
    pair = known.get(lineage)
    if pair is not None and pair[0] is observation:
        return pair[1]
    return stored_identity(observation) or identity(observation)


def write_files(
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


def in_chunks(
    db: sqlite3.Connection, query: str, first: tuple[object, ...], keys: Sequence[object]
) -> Iterator[tuple[Any, ...]]:
    """`query (?, ?, ...)` over `keys` 500 at a time (SQLite caps a statement's
    parameters); only placeholders are formatted into the SQL, never a value. The
    cursors are chained, not re-yielded: no Python frame per row."""
    return itertools.chain.from_iterable(_chunk_cursors(db, query, first, keys))


def _chunk_cursors(
    db: sqlite3.Connection, query: str, first: tuple[object, ...], keys: Sequence[object]
) -> Iterator[sqlite3.Cursor]:
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        yield db.execute(f"{query} ({marks})", (*first, *chunk))
