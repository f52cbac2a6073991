"""The certificates of stores a pass did not read (their stat record matched), as the
ARI round needs them: decoded only where the round can do something this pass.

A carried store's certificates are in the state database as last pass left them. The
round asks about a certificate that is due (or never asked), reports one whose CA or
directory failed, and judges a window that has closed (renewal_overdue); any other
certificate it only keeps, by fingerprint. A 100,000-certificate store whose answers
are all current costs one query of fingerprints, not 100,000 decoded observations.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..observations import Observation

if TYPE_CHECKING:
    from .records import DirectoryRecord
    from .window import AriRecord


@dataclass(frozen=True, slots=True)
class CarriedStore:
    """A store the pass did not read: its certificates' fingerprints, and how to load
    the observations of some of its lineages."""

    source: str
    fingerprints: Sequence[tuple[str, str]]
    """(lineage, fingerprint) of every certificate it holds."""
    load: Callable[[Collection[str]], Mapping[str, Observation]]
    names_directory: bool
    """Whether its files or settings may name an ACME directory (ari/idle.py): if not,
    only certificates with an answer kept are the round's."""


def quiet(
    record: AriRecord | None,
    directories: Mapping[str, DirectoryRecord],
    now: datetime,
    fresh: timedelta,
) -> bool:
    """Whether the round has nothing to do for this certificate this pass but keep its
    answer: asked and answered, not due, its window still open or ahead, its directory
    fetched without error within `fresh`."""
    if record is None or record.next_check <= now or record.error is not None:
        return False
    if record.window is None or now > record.window.end:
        return False  # a closed window is judged each pass (renewal_overdue, the grace)
    entry = directories.get(record.directory)
    return entry is not None and entry.error is None and now - entry.fetched_at < fresh


def split(
    stores: Sequence[CarriedStore],
    known: Mapping[str, AriRecord],
    directories: Mapping[str, DirectoryRecord],
    now: datetime,
    fresh: timedelta,
) -> tuple[list[tuple[str, Observation]], set[str]]:
    """The observations the round must see, and the fingerprints it only keeps."""
    loaded: list[tuple[str, Observation]] = []
    kept: set[str] = set()
    for store in stores:
        wanted: set[str] = set()
        for lineage, fingerprint in store.fingerprints:
            record = known.get(fingerprint)
            if quiet(record, directories, now, fresh):
                kept.add(fingerprint)
            elif record is not None or store.names_directory:
                wanted.add(lineage)
        if wanted:
            loaded += [(store.source, o) for o in store.load(wanted).values()]
    return loaded, kept
