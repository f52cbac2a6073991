"""The spool: a directory where other processes drop CloudEvent JSON files.

Writers (the lacme bridge, scripts) write a temporary name and rename it into place,
so a reader never sees half a file. Each pass validates every `*.json` file, records
the good ones in the same transaction as the pass and only then removes them (a crash
in between re-reads them, and their ids make the second recording a no-op). A file
that is not a valid event moves to `rejected/` with a `.reason` beside it: never
lost, never retried in a loop.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cloudevents import Envelope, from_json, to_json
from .errors import EventFormatError

REJECTED = "rejected"
MAX_EVENT_SIZE = 1024 * 1024


def write(spool: str | Path, envelope: Envelope) -> Path:
    """Drop one event into the spool atomically (temporary file, fsync, rename)."""
    directory = Path(spool)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(to_json(envelope))
            stream.flush()
            os.fsync(stream.fileno())
        final = directory / f"{time.time_ns()}-{envelope.id}.json"
        os.replace(temporary, final)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
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
            if path.stat().st_size > MAX_EVENT_SIZE:
                raise EventFormatError(f"larger than {MAX_EVENT_SIZE} bytes")
            envelope = from_json(path.read_bytes())
        except (EventFormatError, OSError) as exc:
            found.rejected.append((_reject(path, str(exc)), str(exc)))
            continue
        found.envelopes.append(envelope)
        found.files.append(path)
    return found


def _reject(path: Path, reason: str) -> Path:
    rejected = path.parent / REJECTED
    rejected.mkdir(mode=0o700, exist_ok=True)
    target = rejected / path.name
    os.replace(path, target)
    target.with_name(target.name + ".reason").write_text(reason + "\n", encoding="utf-8")
    return target
