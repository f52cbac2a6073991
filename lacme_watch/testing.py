"""Fakes for tests, ours and plugin authors': sinks that record or fail, a static source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from .certificates import CertificateReader
from .errors import SinkError
from .observations import ScanResult
from .options import Options
from .wire import Envelope


class RecordingSink:
    """Keeps every batch it is given."""

    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.batches: list[list[Envelope]] = []

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        return cls(name)

    def deliver(self, events: Sequence[Envelope]) -> None:
        self.batches.append(list(events))

    @property
    def envelopes(self) -> list[Envelope]:
        return [envelope for batch in self.batches for envelope in batch]

    @property
    def kinds(self) -> list[str]:
        return [envelope.event.kind for envelope in self.envelopes]


class FailingSink(RecordingSink):
    """Raises SinkError for the first `failures` deliveries, then records like RecordingSink."""

    def __init__(self, name: str = "failing", failures: int = 1_000_000) -> None:
        super().__init__(name)
        self.failures = failures
        self.attempts = 0

    def deliver(self, events: Sequence[Envelope]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise SinkError(self.name, f"failure {self.attempts} of {self.failures}")
        super().deliver(events)


class StaticSource:
    """A source that reports a fixed ScanResult (change `.result` between passes)."""

    def __init__(self, id: str, result: ScanResult | None = None) -> None:
        self.id = id
        self.result = result or ScanResult()

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(options.string("id"))

    def scan(self, reader: CertificateReader) -> ScanResult:
        return self.result
