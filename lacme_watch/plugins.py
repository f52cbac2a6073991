"""The two seams plugin authors implement: a Source reads, a Sink delivers.

Both are built from their YAML mapping by `from_options`, and are unaware of each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

from .certificates import CertificateReader
from .observations import ScanResult
from .options import Options
from .wire import Envelope


class Source(Protocol):
    """A store or authority: scan() reports what is there now, and never judges."""

    id: str
    """Stable identity in the state database, e.g. `lacme:/etc/lacme`."""

    @classmethod
    def from_options(cls, options: Options) -> Self: ...

    def scan(self, reader: CertificateReader) -> ScanResult: ...


class Sink(Protocol):
    """Delivers events to a place where an operator will see them.

    deliver() gets one pass's due events as a batch; it returns or raises SinkError.
    """

    name: str

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self: ...

    def deliver(self, events: Sequence[Envelope]) -> None: ...
