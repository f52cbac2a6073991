"""A file store's stat record: every directory and file one scan looked at, with what
`lstat` said, so that a rescan of an unchanged store costs its `lstat` calls and no more.

The reader records each directory before the store lists it or looks for a file in it,
and each file as it is read, with device, inode, size, mtime and ctime (ctime moves on
chmod, chown and every write). Next pass, when the same calls return the same answers
and nothing else could make the scan differ (see scans.py), the scan would read exactly
what it read last time: its outcome is last pass's, kept in the state database.

A record is only kept when it can be trusted. A symlink to a file joins it with every
symlink on its way (guarded.py walks them as realpath() does), each as lstat says: a
link is never changed in place, only replaced, so while they and the file are the same
the path leads to the same file; when one changed, the store is read in full
(LinkChanged). A broken or looping link, or a directory symlink, leaves no record:
such a store is simply scanned in full next time. A path whose times are within `RACY`
of the scan (a change in the same clock tick as the `lstat` would leave the same mtime:
git's "racily clean" index entries) is recorded as changed, so next pass looks at it
again, and at nothing else: a renewal that lands just before a pass costs its own
file, not the store's.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from array import array
from collections.abc import Collection, Iterable, Iterator, Sequence

from . import beside

RACY = 2.0
"""Seconds: a directory or file changed this close to the scan is not trusted as
unchanged next pass (filesystems with one-second timestamps included)."""

_FIELDS = 6
"""device, inode, size, mtime_ns, ctime_ns, mode."""
RACY_SIZE = -1
"""The size recorded for a path changed within RACY of the scan (a real st_size is never
negative): it never compares the same, so next pass reads that path again, and only it."""
LINKED = 1 << 32
"""Set in the mode recorded for a symlink on the way to a file, and for that file: a
change there is one no partial rescan can place (its path is not a lineage, and other
links may lead there), so changes() raises LinkChanged: the store is read in full."""


class LinkChanged(Exception):
    """A symlink on the way to a file, or a file reached through one, changed."""


TOMBSTONE = -1
"""The device number of a delta's entry for a path the record no longer holds (a real
st_dev is never negative)."""
DELTA_SHARE = 8
"""A delta grows to at most 1/DELTA_SHARE of its record's entries; then the record is
made whole again."""
_HEADER = struct.Struct("<4sQQ")

_MAGIC = b"lws3"
"""Layout: magic, the prefix's and the paths' byte lengths; the prefix every path
starts with; the paths after it, NUL-separated (a path holds no NUL); then six signed
64-bit numbers per path. Plain bytes: nothing is unpickled, and a large store's record
is held as two flat buffers, not as objects per file."""


def record_identity(status: os.stat_result) -> tuple[int, int, int, int, int]:
    """What the record compares of a path: device, inode, size, mtime_ns, ctime_ns."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class Recorder:
    """What one scan's reader looked at, in order, and whether it can be trusted.

    Held as two flat buffers, never an object per path: the names (after the store's
    root, NUL-terminated) and six numbers each. A first pass over 100,000 of lacme's
    certificate directories records 300,000 paths."""

    def __init__(self) -> None:
        self.trusted = True
        self._prefix = ""
        """Cut from every name as it is recorded: the store's root, kept once."""
        self._names = bytearray()
        self._numbers = array("q")
        self._racy_after = time.time_ns() - int(RACY * 1e9)
        self._kept: tuple[bytes, array[int]] | None = None
        """Last pass's entries a partial scan keeps: the names, each NUL-terminated, and
        their numbers (as bytes of the record, not objects)."""

    @property
    def looked_at_nothing(self) -> bool:
        """Nothing recorded or kept, and nothing distrusted: a partial scan of no path
        (nothing changed; a pass only because thresholds came due)."""
        return self.trusted and not self._numbers and self._kept is None

    def root(self, prefix: str) -> None:
        """The store's root (its roots' common path), before the scan records anything
        (a reader's confine() says it). Once entries are recorded under another, every
        name is kept whole."""
        if prefix == self._prefix:
            return
        if self._names or self._kept is not None:
            self._whole_names()
        else:
            self._prefix = prefix

    def saw(self, path: str, status: os.stat_result, *, linked: bool = False) -> None:
        """A directory or regular file as lstat reports it, before it is listed or read
        (`linked`: a file reached through the symlinks saw_link() recorded)."""
        if stat.S_ISLNK(status.st_mode):
            self.trusted = False
            return
        self._add(path, status, LINKED if linked else 0)

    def saw_link(self, path: str, status: os.stat_result) -> None:
        """A symlink on the way to a file, as lstat reports it: a link is never changed
        in place, only replaced, and then its lstat differs (a new inode, or at least a
        new ctime; one within RACY is looked at again anyway)."""
        self._add(path, status, LINKED)

    def _add(self, path: str, status: os.stat_result, flags: int) -> None:
        if not path.startswith(self._prefix):
            self._whole_names()
        self._names += path[len(self._prefix) :].encode("utf-8", "surrogateescape") + b"\0"
        numbers = [*record_identity(status), status.st_mode | flags]
        if status.st_mtime_ns >= self._racy_after or status.st_ctime_ns >= self._racy_after:
            numbers[2] = RACY_SIZE  # this one path is looked at again next pass
        self._numbers.extend(numbers)

    def _recorded(self) -> list[bytes]:
        """The names recorded so far (after the prefix)."""
        return bytes(self._names).split(b"\0")[:-1]

    def _name(self, path: str) -> bytes | None:
        """`path` as the record names it (after the prefix); None for one outside it."""
        if not path.startswith(self._prefix):
            return None
        return path[len(self._prefix) :].encode("utf-8", "surrogateescape")

    def _whole_names(self) -> None:
        """Put the prefix back in front of every name recorded so far (rare: a path
        outside the store's root, or a second root)."""
        if self._kept is not None:
            self.trusted = False  # a partial scan under another root: read in full next
            return
        head = self._prefix.encode("utf-8", "surrogateescape")
        self._names = bytearray(b"".join(head + name + b"\0" for name in self._recorded()))
        self._prefix = ""

    def keep(self, record: bytes | bytearray, dropped: Collection[str]) -> None:
        """Add the entries of last pass's record that this (partial) scan did not look
        at again and that are not `dropped` (changed since). Kept as runs of the record's
        own bytes, cut around the few that go: no object, and one copy, per run."""
        record = bytes(record)  # a loaded record already is: its slices are looked up
        layout = _layout(record)
        if layout is None or layout[0] != self._prefix:
            self.trusted = False
            return
        _, at, stop, numbers = layout
        gone = set(self._recorded())
        gone.update(name for path in dropped if (name := self._name(path)) is not None)
        view = memoryview(record)
        start = at
        pieces: list[memoryview] = []
        kept = array("q")
        index = first = 0
        while at <= stop:
            end = record.find(b"\0", at, stop)
            end = stop if end < 0 else end
            if record[at:end] in gone:  # this one goes: keep the run before it
                pieces.append(view[start:at])
                kept.extend(numbers[first:index])
                start, first = end + 1, index + _FIELDS
            at, index = end + 1, index + _FIELDS
        if start <= stop:
            pieces += [view[start:stop], memoryview(b"\0")]
            kept.extend(numbers[first:])
        self._kept = (b"".join(pieces), kept)

    def overlay(
        self, record: bytes, delta: bytes | bytearray | None, dropped: Collection[str]
    ) -> bytearray | None:
        """After a partial scan: the delta to keep over last pass's `record` (and its
        `delta`), so that a large record is not written again for a few changed paths.
        It holds this scan's entries, the old delta's for paths not looked at again,
        and a tombstone for each `dropped` path not recorded again. None when it would
        outgrow its share of the record, or the record cannot be trusted: then this
        recorder holds the record made whole (record()) or nothing."""
        layout = _layout(record)
        if layout is None or layout[0] != self._prefix or not self.trusted:
            self.trusted = False
            return None
        names = self._recorded()
        kept: list[int] = list(self._numbers)
        gone = set(names)
        tombstones = [
            name
            for path in sorted(dropped)
            if (name := self._name(path)) is not None and name not in gone
        ]
        gone.update(tombstones)
        if delta is not None:
            old = _layout(delta)
            if old is None or old[0] != self._prefix:
                self.trusted = False
                return None
            _, start, stop, old_numbers = old
            for index, entry in enumerate(bytes(delta[start:stop]).split(b"\0")):  # b"": root
                if entry not in gone:
                    gone.add(entry)
                    names.append(entry)
                    at = index * _FIELDS
                    kept += old_numbers[at : at + _FIELDS]
        for name in tombstones:
            names.append(name)
            kept += [TOMBSTONE] * _FIELDS
        size = len(layout[3]) // _FIELDS  # _layout checked it matches the names
        if not names or len(names) * DELTA_SHARE > size:  # made whole: record() holds it
            self._whole(record, delta, dropped)
            return None
        head = self._prefix.encode("utf-8", "surrogateescape")
        joined = b"\0".join(names)
        return bytearray(
            b"".join([_HEADER.pack(_MAGIC, len(head), len(joined)), head, joined, array("q", kept)])
        )

    def _whole(
        self, record: bytes, delta: bytes | bytearray | None, dropped: Collection[str]
    ) -> None:
        """Fold the old delta into this recorder (its entries not looked at again), then
        keep the record's own: record() then makes the record whole."""
        if delta is not None:
            entries = list(_entries(delta) or ())  # overlay() checked it parses
            named = {path for path, _, _ in entries}
            mine = set(self._recorded())
            for path, numbers, index in entries:
                name = self._name(path) or b""  # the delta's prefix is this recorder's
                if path in dropped or name in mine or numbers[index] == TOMBSTONE:
                    continue
                self._names += name + b"\0"
                self._numbers.extend(numbers[index : index + _FIELDS])
            dropped = {*dropped, *named}
        self.keep(record, dropped)

    def mark(self) -> tuple[int, int, str]:
        """Where the record stands, for since()."""
        return len(self._names), len(self._numbers), self._prefix

    def since(self, mark: tuple[int, int, str]) -> tuple[str, bytes, list[int], bool]:
        """The entries after `mark` (the prefix they were cut by, their names, their
        numbers), and whether the record is still trusted: what a forked reader hands
        back. Names made whole since the mark each grew by the prefix they had."""
        names, numbers, prefix = mark
        if prefix != self._prefix:
            names += numbers // _FIELDS * len(prefix.encode("utf-8", "surrogateescape"))
        return self._prefix, bytes(self._names[names:]), list(self._numbers[numbers:]), self.trusted

    def extend(self, prefix: str, names: bytes, numbers: list[int], trusted: bool) -> None:
        """Entries recorded by another process's reader of the same scan (which may
        have kept its names whole: a symlink there led out of the store's root)."""
        if len(numbers) != _FIELDS * names.count(b"\0"):
            self.trusted = False
            return
        if prefix != self._prefix:
            self._whole_names()
            if self._prefix:  # not made whole: a partial scan's (see _whole_names)
                return
            head = prefix.encode("utf-8", "surrogateescape")
            names = b"".join(head + name + b"\0" for name in names.split(b"\0")[:-1])
        self._names += names
        self._numbers.extend(numbers)
        self.trusted = self.trusted and trusted

    def distrust(self) -> None:
        """Something the record cannot see decided part of this scan (a symlink, a file
        that changed between its lstat and its read)."""
        self.trusted = False

    def record(self) -> bytearray | None:
        """The record to keep, or None when next pass must scan in full. Made once, at
        the scan's end, in the names' own buffer (so a 100,000-directory store's record
        is never held twice): the recorder is empty after."""
        kept_names, kept_numbers = self._kept or (b"", array("q"))
        if not self.trusted or not (self._names or kept_names):
            return None
        names = self._names
        self._names, self._kept = bytearray(), None
        # Each name ends in its separator: the last one must not.
        if names:
            del names[-1:]
            length = len(kept_names) + len(names)
        else:
            names += memoryview(kept_names)[:-1]
            kept_names, length = b"", len(names)
        head = self._prefix.encode("utf-8", "surrogateescape")
        names[:0] = _HEADER.pack(_MAGIC, len(head), length) + head + kept_names
        names += memoryview(kept_numbers).cast("B")
        names += memoryview(self._numbers).cast("B")
        self._numbers = array("q")
        return names


def changes(
    record: bytes | bytearray, delta: bytes | bytearray | None = None, *, first: bool = False
) -> list[tuple[str, bool]] | None:
    """The recorded paths that no longer lstat the same, each with whether it was a
    directory (only the first with `first`); None for a damaged record. `delta` (see
    Recorder.overlay) stands over the record's entries for the paths it names.
    Raises LinkChanged when a symlink on the way to a file, or its file, changed."""
    parsed = _parsed(record)
    over = _rows(delta) if delta is not None else ("", iter(()))
    if parsed is None or over is None:
        return None
    prefix, names, numbers = parsed
    overriding = list(over[1])  # a delta is small: at most an eighth of the record
    # The record's names the delta stands over, as the record names them (after its
    # prefix): one that does not start with it names no entry of the record.
    named = {
        path[len(prefix) :]
        for path in (over[0] + row[0] for row in overriding)
        if path.startswith(prefix)
    }
    found: list[tuple[str, bool]] = []
    cut = names.find("\0", len(names) // 2) if len(numbers) >= _FIELDS * BESIDE else -1
    if first or cut < 0:
        rows = _rows_of(names, numbers, named)
        if not (_compare(prefix, rows, found, first) and not (first and found)):
            return found
    else:  # the second half's lstat calls made by the other core (beside.py)
        index = _FIELDS * (names.count("\0", 0, cut) + 1)
        head, tail = names[:cut], names[cut + 1 :]

        def compared(names: str, numbers: Sequence[int]) -> list[tuple[str, bool]]:
            found: list[tuple[str, bool]] = []
            _compare(prefix, _rows_of(names, numbers, named), found, False)
            return found

        mine, theirs = beside.run(
            lambda: compared(tail, numbers[index:]), lambda: compared(head, numbers[:index])
        )
        found = mine + theirs
    _compare(over[0], (row for row in overriding if row[1] != TOMBSTONE), found, first)
    return found


BESIDE = 20_000
"""Entries from which the other core makes half of a comparison's lstat calls: below,
forking costs more than it saves (a few ms, against ~3 µs an entry)."""


def _rows_of(names: str, numbers: Sequence[int], named: Collection[str]) -> Iterator[_Row]:
    """The rows of NUL-separated `names` and their numbers, but those `named` (which a
    delta stands over; names after the record's prefix, as the rows hold them)."""
    six = iter(numbers)
    rows: Iterator[_Row] = zip(_split(names), six, six, six, six, six, six, strict=False)
    if named:
        rows = (row for row in rows if row[0] not in named)
    return rows


_Row = tuple[str, int, int, int, int, int, int]
"""A name after the record's prefix, and its six numbers."""


def _compare(prefix: str, rows: Iterable[_Row], found: list[tuple[str, bool]], first: bool) -> bool:
    """Add each row's path that no longer lstats the same to `found` (with whether it
    was a directory); False once `first` found one. One loop, no call per entry: a
    100,000-file store's rescan is this loop."""
    lstat = os.lstat
    for name, device, inode, size, mtime, ctime, mode in rows:
        path = prefix + name
        try:
            status = lstat(path)
        except OSError:
            pass
        else:
            if (
                status.st_mtime_ns == mtime
                and status.st_ctime_ns == ctime
                and status.st_ino == inode
                and status.st_size == size
                and status.st_dev == device
            ):
                continue
        if mode >= LINKED:
            raise LinkChanged(path)
        found.append((path, stat.S_ISDIR(mode)))
        if first:
            return False
    return True


def _rows(record: bytes | bytearray) -> tuple[str, Iterator[_Row]] | None:
    """The record's prefix and its rows, made as the walk goes (six numbers at a time
    from a view of the record's bytes)."""
    parsed = _parsed(record)
    if parsed is None:
        return None
    prefix, names, numbers = parsed
    six = iter(numbers)
    return prefix, zip(_split(names), six, six, six, six, six, six, strict=False)


def _split(names: str, block: int = 1 << 20) -> Iterator[str]:
    """The NUL-separated names one by one, split a block of about a MiB at a time:
    300,000 names split at once would be as many objects held together (lacme's
    100,000 directories: 25 MiB)."""
    start = 0
    while (end := names.find("\0", start + block)) >= 0:
        yield from names[start:end].split("\0")
        start = end + 1
    yield from names[start:].split("\0")


def _entries(record: bytes | bytearray) -> Iterator[tuple[str, Sequence[int], int]] | None:
    """(path, the numbers, where its six start) for each entry, walking the buffers (the
    numbers are a view of the record's bytes, not a copy)."""
    parsed = _parsed(record)
    if parsed is None:
        return None
    prefix, names, numbers = parsed

    def walk() -> Iterator[tuple[str, Sequence[int], int]]:
        at = index = 0
        while at <= len(names):
            end = names.find("\0", at)
            end = len(names) if end < 0 else end
            yield prefix + names[at:end], numbers, index
            at, index = end + 1, index + _FIELDS

    return walk()


def _parsed(record: bytes | bytearray) -> tuple[str, str, Sequence[int]] | None:
    """The record's prefix, its names (NUL-separated) and a view of its numbers."""
    layout = _layout(record)
    if layout is None:
        return None
    prefix, start, stop, numbers = layout
    return prefix, str(memoryview(record)[start:stop], "utf-8", "surrogateescape"), numbers


def size(record: bytes | bytearray) -> int:
    """How many entries the record holds (0 for a damaged one)."""
    layout = _layout(record)
    return 0 if layout is None else len(layout[3]) // _FIELDS


def _layout(record: bytes | bytearray) -> tuple[str, int, int, Sequence[int]] | None:
    """The record's prefix, where its names start and stop, and a view of its numbers:
    checked, nothing copied."""
    view = memoryview(record)
    try:
        magic, head, length = _HEADER.unpack_from(record)
        start = _HEADER.size + head
        prefix = str(view[_HEADER.size : start], "utf-8", "surrogateescape")
        tail = view[start + length :]
        numbers: Sequence[int] = tail.cast("q") if len(tail) % 8 == 0 else array("q")
    except (struct.error, ValueError, TypeError):
        return None
    if magic != _MAGIC or len(numbers) != _FIELDS * (
        record.count(b"\0", start, start + length) + 1
    ):
        return None
    return prefix, start, start + length, numbers
