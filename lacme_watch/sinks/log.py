"""The log sink: one CloudEvent JSON per line, or one human line per event.

`path` is opened in append mode and flushed after every event, so a crash loses
at most the line being written and log shippers see events at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Self, TextIO

from ..cloudevents import Envelope, format_time, to_json
from ..errors import SinkError
from ..options import Options


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
            self._write(sys.stderr, events)
            return
        try:
            with open(self.path, "a", encoding="utf-8") as stream:
                self._write(stream, events)
        except OSError as exc:
            raise SinkError(self.name, f"cannot write {self.path}: {exc.strerror}") from exc

    def _write(self, stream: TextIO, events: Sequence[Envelope]) -> None:
        for envelope in events:
            stream.write(self.render(envelope) + "\n")
            stream.flush()

    def render(self, envelope: Envelope) -> str:
        if self.format == "json":
            return to_json(envelope)
        return f"{format_time(envelope.time)} {envelope.event.summary()}"
