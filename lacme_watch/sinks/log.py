"""The log sink: one CloudEvent JSON per line, or one human line per event.

Each line reaches `path` whole or not at all: lines go out whole, many to one write(2)
(about 64 KiB), on a file opened with O_APPEND, and a write that fails part-way (a
full disk) is cut back to where it began, so a retry never glues a new line onto a
broken one; the events of a write that was cut back are retried, none twice. Text
lines show control characters as escapes: a name in a certificate cannot forge a
log line or send escape sequences to the terminal that shows the log.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from typing import Self

from ..errors import SinkError
from ..events.cloudevents import Envelope, format_time, to_json
from ..options import Options
from ..printable import printable

_CHUNK = 64 * 1024
"""Bytes of whole lines per write(2): 5,000 events cost a hundred writes, not 5,000."""


class LogSink:
    """Writes events to a file or to stderr."""

    def __init__(self, name: str, *, format: str = "text", path: str | None = None) -> None:
        self.name = name
        self.format = format
        self.path = path

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        path = options.path("path") if options.node("path") is not None else None
        return cls(name, format=options.choice("format", ("text", "json"), "text"), path=path)

    def deliver(self, events: Sequence[Envelope]) -> None:
        if self.path is None:
            for envelope in events:
                sys.stderr.write(self.render(envelope) + "\n")
                sys.stderr.flush()
            return
        delivered: list[str] = []
        try:
            fd = _open_append(self.path)
        except OSError as exc:
            raise SinkError(self.name, f"cannot write {self.path}: {exc.strerror}") from exc
        # A pipe or device cannot be cut back after a short write: one line per write(2)
        # there, so a failure leaves at most that line behind (and it alone is resent).
        chunk = _CHUNK if stat.S_ISREG(os.fstat(fd).st_mode) else 1
        try:
            for lines, ids in self._chunks(events, chunk):
                try:
                    _append_whole(fd, lines)
                except OSError as exc:
                    raise SinkError(
                        self.name, f"cannot write {self.path}: {exc.strerror}", delivered=delivered
                    ) from exc
                delivered += ids
        finally:
            os.close(fd)

    def _chunks(self, events: Sequence[Envelope], chunk: int) -> Iterator[tuple[bytes, list[str]]]:
        """Whole lines, about `chunk` bytes at a time, and the ids of their events: one
        write(2) for many lines (a line is never split between two)."""
        lines: list[bytes] = []
        ids: list[str] = []
        size = 0
        for envelope in events:
            line = (self.render(envelope) + "\n").encode()
            lines.append(line)
            ids.append(envelope.id)
            size += len(line)
            if size >= chunk:
                yield b"".join(lines), ids
                lines, ids, size = [], [], 0
        if lines:
            yield b"".join(lines), ids

    def render(self, envelope: Envelope) -> str:
        if self.format == "json":
            return to_json(envelope)  # JSON escapes control characters itself
        return printable(f"{format_time(envelope.time)} {envelope.event.summary()}")


def _open_append(path: str) -> int:
    flags = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(path, os.O_RDWR | flags, 0o640)  # read: to see how the file ends
    except PermissionError:
        return os.open(path, os.O_WRONLY | flags, 0o640)


def _append_whole(fd: int, line: bytes) -> None:
    """Append `line` (whole lines) in one piece, or leave the file as it was and raise
    OSError."""
    start = os.fstat(fd).st_size
    with contextlib.suppress(OSError):  # EBADF: opened write-only, cannot look
        if start and os.pread(fd, 1, start - 1) != b"\n":
            line = b"\n" + line  # a broken line left by an older version or another writer
    written = 0
    try:
        while written < len(line):
            written += os.write(fd, line[written:])
    except OSError:
        if written:
            # Only our own partial line is cut; a line another writer appended after
            # ours started cannot be told apart, which is why one write(2) is the norm.
            os.ftruncate(fd, start)
        raise
