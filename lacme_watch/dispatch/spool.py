"""The spool: a directory where other processes drop CloudEvent JSON files.

Writers (the lacme bridge, scripts) write a temporary name and rename it into place,
so a reader never sees half a file. Each pass validates every `*.json` file, records
the good ones in the same transaction as the pass and only then removes them (a crash
in between re-reads them, and their ids make the second recording a no-op). A file
that is not a valid event moves to `rejected/` with a `.reason` beside it: never
lost, never retried in a loop.

An entry is hostile input from whoever can write the directory. It is read only if
it is a regular file (not a symlink, FIFO or device), owned by the spool directory's
owner or by root, and at most MAX_EVENT_SIZE bytes; it is parsed with bounded depth.
Anything else is set aside without being opened, and never blocks the entries after it.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomicfile import write_whole
from ..errors import EventFormatError
from ..events.cloudevents import Envelope, from_json, to_json

REJECTED = "rejected"
MAX_EVENT_SIZE = 1024 * 1024


def write(spool: str | Path, envelope: Envelope) -> Path:
    """Drop one event into the spool atomically (temporary file, fsync, rename)."""
    directory = Path(spool)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / f"{time.time_ns()}-{envelope.id}.json"
    write_whole(final, to_json(envelope).encode("utf-8"), fsync=True)
    return final


@dataclass(slots=True)
class Collected:
    """What one look at the spool found."""

    envelopes: list[Envelope] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    unreadable: str | None = None
    """Why the spool directory itself could not be listed; its files wait there."""

    def remove_ingested(self) -> None:
        """Call after the events are committed."""
        for path in self.files:
            path.unlink(missing_ok=True)


def collect(spool: str | Path) -> Collected:
    """Every valid event waiting in the spool, oldest first; invalid files set aside."""
    directory = Path(spool)
    found = Collected()
    try:
        owner = os.stat(directory).st_uid
        names = sorted(
            n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith(".")
        )
    except FileNotFoundError:
        return found
    except OSError as exc:
        found.unreadable = (
            f"cannot list {directory}: {exc.strerror}; make it readable and searchable"
            " by the user lacme-watch runs as (the events in it wait there)"
        )
        return found
    for name in names:
        path = directory / name
        try:
            envelope = from_json(_read_entry(path, owner))
        except FileNotFoundError:
            continue  # taken by another reader (a daemon's between-pass look) meanwhile
        except Exception as exc:  # whatever one entry does is its own problem
            reason = str(exc) if isinstance(exc, EventFormatError) else _describe(exc)
            found.rejected.append(_reject(path, reason))
            continue
        found.envelopes.append(envelope)
        found.files.append(path)
    return found


def _read_entry(path: Path, owner: int) -> bytes:
    """The bytes of a spool entry that passed every check (EventFormatError says which not)."""
    status = os.lstat(path)
    if stat.S_ISLNK(status.st_mode):
        raise EventFormatError("a symlink: spool entries must be regular files")
    if not stat.S_ISREG(status.st_mode):
        raise EventFormatError("not a regular file (a FIFO, socket or device): not opened")
    if status.st_uid not in (owner, 0):
        raise EventFormatError(
            f"owned by uid {status.st_uid}, neither the spool's owner (uid {owner}) nor root"
        )
    if status.st_size > MAX_EVENT_SIZE:
        raise EventFormatError(f"larger than {MAX_EVENT_SIZE} bytes")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (status.st_dev, status.st_ino):
            raise EventFormatError("replaced while being read")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            content = stream.read(MAX_EVENT_SIZE + 1)
    finally:
        os.close(fd)
    if len(content) > MAX_EVENT_SIZE:
        raise EventFormatError(f"larger than {MAX_EVENT_SIZE} bytes")
    return content


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _reject(path: Path, reason: str) -> tuple[Path, str]:
    """Move a bad entry out of the way: into rejected/, or, when that is not a directory
    of ours, to `NAME.rejected` beside it, which no pass collects again."""
    rejected = path.parent / REJECTED
    try:
        rejected.mkdir(mode=0o700, exist_ok=True)
        status = os.lstat(rejected)
        if not stat.S_ISDIR(status.st_mode) or status.st_uid not in (
            os.stat(path.parent).st_uid,
            0,
        ):
            raise NotADirectoryError(f"{rejected} is not a directory of the spool's owner")
        target = rejected / path.name
        os.replace(path, target)
    except OSError as exc:
        target = path.with_name(path.name + ".rejected")
        reason += f"; {REJECTED}/ unusable ({_describe(exc)}), left beside it as {target.name}"
        try:
            os.replace(path, target)
        except OSError as again:
            return path, f"{reason}; cannot move it either: {_describe(again)}"
    _write_reason(target.with_name(target.name + ".reason"), reason)
    return target, reason


def _write_reason(path: Path, reason: str) -> None:
    """Best effort, and never through a symlink someone planted under that name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(reason + "\n")
