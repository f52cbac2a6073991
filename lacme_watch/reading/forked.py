"""A large batch of new certificate files read by a second process: on a first pass, or
when a store changed whole, the machine's other core reads, parses and describes a
share of the files (half, or more while this process has other work: slices.py) while
this process does the rest, through the very same reader code (every guard of
reader.py holds in the child as it does here), with the JSON document beside each
file that the store's scan reads first (lacme's meta.json).

Only where it is safe and pays: with fork and more than one CPU, in a process running
one thread (a child forked from a threaded process can inherit a lock held mid-way),
and for at least MIN_FILES files. The child touches no database: it writes what it
found, pickled, to an anonymous temporary file that only the two processes hold, and
exits. Whatever it did not deliver (it died, it was killed) is read here afterwards.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any, Protocol

from ..observations import Problem
from . import beside
from .statrecord import Recorder


class Reader(Protocol):
    """What this needs of reader.CertificateReader (which imports this module)."""

    parsed: int
    stat_record: Recorder

    @property
    def files(self) -> Mapping[str, Any]: ...

    @property
    def structures(self) -> Mapping[str, Any]: ...

    def read_certificates(self, path: str) -> Any: ...

    def read_json(self, path: str) -> Any: ...

    def without_database(self) -> None: ...


MIN_FILES = 400
"""Below this, forking and handing results back costs more than the second core gives."""


class Batch:
    """The child's share of the files, and what it found once it is done."""

    def __init__(
        self, output: IO[bytes], pid: int, paths: frozenset[str], forked_at: float
    ) -> None:
        self.paths = paths
        self._output = output
        self._pid = pid
        self._found: dict[str, tuple[Any, Any, Any]] | None = None
        self._parsed: frozenset[str] = frozenset()
        self.parsed = 0
        """The files it parsed that were taken (what it read for nothing is not counted)."""
        self._forked_at = forked_at
        self.took: float | None = None
        """The seconds from the fork to its results written, by the system's monotonic
        clock (the fork and the pages it copied included; None: it delivered nothing)."""
        self.asked: float | None = None
        """When this process first asked for what it found (the same clock)."""
        self.recorded: tuple[str, bytes, list[int], bool] = ("", b"", [], False)

    def take(self, path: str) -> tuple[Any, Any, Any] | None:
        """(the read_certificates() result, the CachedFile, the chain's structure) the
        child found for `path`, each at most once; None when it delivered nothing."""
        if self._found is None:
            self._found = self._collect()
        found = self._found.pop(path, None)
        if found is not None and path in self._parsed:
            self.parsed += 1
        return found

    def _collect(self) -> dict[str, tuple[Any, Any, Any]]:
        import pickle  # with a child to hear from: a pass under MIN_FILES never forks

        self.asked = time.monotonic()
        whole = beside.reap(self._pid)
        try:
            if not whole:
                return {}
            self._output.seek(0)
            found, self._parsed, self.recorded, done = _load(self._output)
            self.took = done - self._forked_at
        except (OSError, EOFError, pickle.UnpicklingError):
            return {}
        finally:
            self._output.close()
        return {path: (result, cached, judged) for path, result, cached, judged in found}


def _load(output: IO[bytes]) -> Any:
    """What the child wrote, with the cyclic garbage collector paused: unpickling a
    share's objects (several per file, none of them garbage) would otherwise run its
    full collections again and again, doubling the time it takes."""
    import pickle

    enabled = gc.isenabled()
    gc.disable()
    try:
        # Our own child wrote this file, which nobody else can open (it has no name).
        return pickle.load(output)  # noqa: S301
    finally:
        if enabled:
            gc.enable()


def start(
    reader: Reader, paths: Sequence[str], share: float = 0.5, metadata: str | None = None
) -> Batch | None:
    """Fork a child to read the last `share` of `paths` (this process reads from the
    start, so it reaches the child's part about when the child is done), each after
    the JSON document `metadata` names beside it, if given; None where a second
    process is not worth it or not safe."""
    if len(paths) < MIN_FILES or not beside.possible():
        return None
    import tempfile  # a first pass's: cron's quiet passes never fork

    theirs = list(paths[len(paths) - int(len(paths) * share) :])
    documents = (
        [os.path.join(os.path.dirname(path), metadata) for path in theirs] if metadata else []
    )
    output = tempfile.TemporaryFile()  # noqa: SIM115  # handed to the child, closed by Batch
    forked_at = time.monotonic()  # one clock for the system: the child reads it too
    try:  # the collector leaves shared pages alone until Batch._collect reaps it
        pid = beside.fork(lambda: _child(reader, theirs, documents, output))
    except OSError:
        output.close()
        raise
    return Batch(output, pid, frozenset((*theirs, *documents)), forked_at)


def _child(
    reader: Reader, share: Sequence[str], documents: Sequence[str], output: IO[bytes]
) -> None:
    import pickle

    reader.without_database()  # the parent's SQLite connection is not the child's to use
    mark = reader.stat_record.mark()
    found = []
    parsed: set[str] = set()
    for at, path in enumerate(share):
        if documents:  # read first, as the store's scan does (the stat record's order)
            document = documents[at]
            described = reader.read_json(document)
            found.append((document, described, reader.files.get(document), None))
            if isinstance(described, Problem):
                continue  # the scan reads no certificate where its document is missing or bad
        before = reader.parsed
        result = reader.read_certificates(path)
        found.append((path, result, reader.files.get(path), reader.structures.get(path)))
        if reader.parsed != before:
            parsed.add(path)
    recorded = reader.stat_record.since(mark)
    written = (found, frozenset(parsed), recorded)
    pickle.dump((*written, time.monotonic()), output, pickle.HIGHEST_PROTOCOL)
    output.flush()
