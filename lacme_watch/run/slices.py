"""A large file store's first pass, read and committed a slice at a time.

A pass holds what it reads until it commits: for a first pass over 100,000
certificates, hundreds of MiB. A `pem` or `lacme` store that has no baseline yet and
whose listing (a `Listing`) holds more than SLICE entries is read through its own
`rescan()`, a slice of entries at a time. Each slice is detected, checked and
committed with its events in one transaction (the outbox stays in the same
transaction as the state change), then dropped.

The store's snapshot stays unbaselined until its last slice, and detect() keeps a
first pass quiet: a pass that dies between slices leaves a store the next pass reads
on from, with nothing committed announced twice and nothing unread announced as new.
The last slice also commits the stat record, so the rest of the pass sees the store
as a carried one (its certificates in the database).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, TypeGuard

from ..config.routes import route
from ..events.cloudevents import Envelope, wrap
from ..statedb import SourceChange, StateStore
from . import rescans

if TYPE_CHECKING:  # a quiet pass imports no reader (tests/test_layers.py)
    from ..config import Config
    from ..detection.incremental import Outcome
    from ..events import Event
    from ..observations import ScanResult
    from ..plugins import ListedSource, Source
    from ..reading.reader import CachedFile, CertificateReader

_log = logging.getLogger(__name__)

SLICE = 3_000
"""Entries (files, or lacme's certificate directories) per slice. Measured at 100,000
(2 cores): 5,000 held 155 MiB at the peak of a lacme store's first pass, 3,000 held
141 MiB; 2,500 cost 6% more time than 5,000 (a fork and a commit per slice)."""


AHEAD = 0.6
"""The share of the next slice the forked child reads while this process detects and
commits the last one, at first. Measured at 100,000 flat: at 0.5 this process never
waited for the child (0.03 s in all), at 0.7 it waited 0.47 s. A lacme store's
directory costs more to read (meta.json, a chain to verify) against the same commit:
about 0.75 balances it. From the third slice on, the share is the one that would
have had both processes done at once on the slice before (see _balanced)."""
AHEAD_RANGE = (0.5, 0.9)


class Settled(NamedTuple):
    """One scan, or one slice of it, detected and checked (scans.py's _settle)."""

    change: SourceChange
    """What to commit; its stat record is the caller's to make."""
    events: list[Event]
    outcome: Outcome
    until: float | None
    """The first instant the checks may say something new with nothing changed."""


if TYPE_CHECKING:
    Settle = Callable[[str, ScanResult, CertificateReader, Mapping[str, CachedFile]], Settled]
    """(source id, scan, its reader, the file cache rows it replaces) -> Settled."""


class Read(NamedTuple):
    """What a store's slices committed."""

    envelopes: list[Envelope]
    """Every event its slices committed (already in the outbox)."""
    conflicts: list[str]
    done: bool
    """Every slice was committed: the rest of the pass sees the store as a carried one.
    False when its rescan declined part-way: the caller reads it whole."""


class _Cycle(NamedTuple):
    """Seconds (by the wall clock: what either process is given of a shared machine
    counts) of one slice read while the child read `share` of it."""

    share: float
    size: int
    committed: float
    """This process, committing the slice before."""
    reading: float
    """This process, reading the rest, until it asked for what the child found (what
    it does with that comes after the child is done, whatever the share)."""
    child: float
    """The child, from the fork to its results written."""


def _balanced(last: _Cycle, upcoming: int) -> float:
    """The child's share of the next slice (`upcoming` entries) that has this process
    ask for the child's results as the child is done, from what each spent on the last
    one: this one commits a slice (about the same cost again) and reads the rest, the
    child reads its share; within AHEAD_RANGE (a short last slice gives the child
    most of it)."""
    theirs = max(int(last.size * last.share), 1)
    mine = max(last.size - theirs, 1)
    here, there = last.reading / mine, last.child / theirs  # per entry
    low, high = AHEAD_RANGE
    if upcoming <= 0 or here + there <= 0:
        return last.share
    share = (last.committed + upcoming * here) / (upcoming * (here + there))
    return min(max(share, low), high)


def wanted(source: Source, store: StateStore) -> TypeGuard[ListedSource]:
    """Whether a pass may read this store in slices: it can list and rescan, and has
    no baseline yet (its first pass, or one that stopped between slices)."""
    return (
        hasattr(source, "listing") and hasattr(source, "rescan") and not store.baselined(source.id)
    )


def read(
    source: ListedSource,
    reader: CertificateReader,
    store: StateStore,
    config: Config,
    now: datetime,
    settle: Settle,
    key: str,
) -> Read | None:
    """Read and commit the store slice by slice; None when it is read whole instead
    (small, or failed as a whole). When its rescan declines part-way, the caller reads
    it whole too, and what the slices committed is its cache and snapshot."""
    listed = source.listing(reader)
    if listed.whole.failed or len(listed.entries) <= SLICE:
        return None
    parts = [listed.entries[at : at + SLICE] for at in range(0, len(listed.entries), SLICE)]
    cached = dict(reader.previous)
    envelopes: list[Envelope] = []
    conflicts: list[str] = []
    until: float | None = None
    ahead, forked_at = AHEAD, None
    for number, part in enumerate(parts, start=1):
        last = number == len(parts)
        reading = time.monotonic()
        scan = rescans.rescan(source, reader, part)
        batch = reader.finish()
        if forked_at is not None and batch is not None and batch.took and batch.asked and not last:
            here = batch.asked - reading
            cycle = _Cycle(ahead, len(part), reading - forked_at, here, batch.took)
            ahead = _balanced(cycle, len(parts[number]))
        if scan is None:
            _log.debug("%s: read whole after %d slices (its rescan declined)", source.id, number)
            return Read(envelopes, conflicts, done=False)
        forked_at = None
        if not last:  # the other core reads on while this slice is detected and committed
            forked_at = time.monotonic()
            reader.prefetch(listed.reads(parts[number]), share=ahead, metadata=listed.metadata)
        if last:  # what the store says as a whole
            whole = listed.whole
            scan = replace(scan, problems=scan.problems + whole.problems, issuances=whole.issuances)
        before = {path: cached.pop(path) for path in reader.files if path in cached}
        if last:
            before.update(cached)  # files of an earlier, stopped pass that are gone now
        settled = settle(source.id, scan, reader, before)
        change = settled.change
        until = rescans.earliest(until, settled.until)
        if not last:  # a first pass until the last slice: no issuance announced
            change = replace(change, after=replace(change.after, baselined=False))
        else:
            stat = rescans.next_record(reader, key, None, (), until)
            change = replace(change, stat_record=stat)
        wrapped = [
            wrap(event, host=config.host, time=now, salt=store.id_salt) for event in settled.events
        ]
        found = store.commit_pass([change], route(config.sinks, wrapped), now)
        conflicts += [conflict.message() for conflict in found]
        envelopes += wrapped
        _log.debug(
            "%s: slice %d of %d committed (the child reads %.0f%% of the next)",
            source.id,
            number,
            len(parts),
            ahead * 100,
        )
        reader.forget()
    return Read(envelopes, conflicts, done=True)
