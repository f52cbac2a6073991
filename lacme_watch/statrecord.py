"""A file store's stat record: every directory and file one scan looked at, with what
`lstat` said, so that a rescan of an unchanged store costs its `lstat` calls and no more.

The reader records each directory before the store lists it or looks for a file in it,
and each file as it is read, with device, inode, size, mtime and ctime (ctime moves on
chmod, chown and every write). Next pass, when the same calls return the same answers
and nothing else could make the scan differ (see scans.py), the scan would read exactly
what it read last time: its outcome is last pass's, kept in the state database.

A record is only kept when it can be trusted: no symlink was on the way (a link's
target can change under an unchanged link), and no time recorded is within `RACY` of
the scan (a change in the same clock tick as the `lstat` would leave the same mtime:
git's "racily clean" index entries). Such a store is simply scanned in full next time.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from array import array

RACY = 2.0
"""Seconds: a directory or file changed this close to the scan is not trusted as
unchanged next pass (filesystems with one-second timestamps included)."""

_HEADER = struct.Struct("<4sQ")
_MAGIC = b"lws1"
"""Layout: magic, the paths' byte length; the paths, NUL-separated (a path holds no
NUL); then five signed 64-bit numbers per path. Plain bytes: nothing is unpickled."""

Stat = tuple[int, int, int, int, int]
"""(device, inode, size, mtime_ns, ctime_ns)."""


def stat_of(status: os.stat_result) -> Stat:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class Recorder:
    """What one scan's reader looked at (`paths`), and whether it can be trusted."""

    def __init__(self) -> None:
        self.paths: dict[str, Stat] = {}
        self.trusted = True
        self._racy_after = time.time_ns() - int(RACY * 1e9)

    def saw(self, path: str, status: os.stat_result) -> None:
        """A directory or regular file as lstat (or fstat, once opened) reports it."""
        if stat.S_ISLNK(status.st_mode):
            self.trusted = False
            return
        if max(status.st_mtime_ns, status.st_ctime_ns) >= self._racy_after:
            self.trusted = False
        self.paths[path] = stat_of(status)

    def distrust(self) -> None:
        """Something the record cannot see decided part of this scan (a symlink)."""
        self.trusted = False

    def record(self) -> bytes | None:
        """The record to keep, or None when next pass must scan in full."""
        if not self.trusted or not self.paths:
            return None
        names = "\0".join(self.paths).encode("utf-8", "surrogateescape")
        numbers = array("q", [number for entry in self.paths.values() for number in entry])
        return _HEADER.pack(_MAGIC, len(names)) + names + numbers.tobytes()


def unchanged(record: bytes) -> bool:
    """Whether every directory and file in the record still lstats the same (each
    one call; the first difference ends the check)."""
    entries = _entries(record)
    if entries is None:
        return False  # damaged or of another layout: scan in full
    lstat = os.lstat
    for path, (dev, ino, size, mtime_ns, ctime_ns) in entries:
        try:
            status = lstat(path)
        except OSError:
            return False
        if (
            status.st_mtime_ns != mtime_ns
            or status.st_ctime_ns != ctime_ns
            or status.st_ino != ino
            or status.st_size != size
            or status.st_dev != dev
        ):
            return False
    return True


def _entries(record: bytes) -> list[tuple[str, Stat]] | None:
    try:
        magic, length = _HEADER.unpack_from(record)
        names = record[_HEADER.size : _HEADER.size + length].decode("utf-8", "surrogateescape")
        numbers = array("q")
        numbers.frombytes(record[_HEADER.size + length :])
    except (struct.error, ValueError):
        return None
    paths = names.split("\0")
    if magic != _MAGIC or len(numbers) != 5 * len(paths):
        return None
    values = iter(numbers)
    rows: list[Stat] = list(zip(values, values, values, values, values, strict=False))
    return list(zip(paths, rows, strict=True))
