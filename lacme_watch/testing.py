"""For tests, ours and plugin authors': fakes, and the contracts every sink and source keeps.

- `RecordingSink`, `FailingSink`: sinks that record batches or raise SinkError;
- `StaticSource`: a source that reports a fixed ScanResult;
- `sample_envelopes()`: one event of every kind lacme-watch knows;
- `check_sink()`, `check_failing_sink()`, `check_source()`: the contracts our built-in
  sinks and sources pass; they raise AssertionError naming the broken rule;
- `TlsServer`: a real TLS server on loopback (from `lacme_watch.cli.loopback`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from .cli.loopback import TlsServer
from .errors import SinkError, SourceError
from .events import EVENT_TYPES, Change, Event
from .events.cloudevents import Envelope, wrap
from .observations import REASONS, ScanResult
from .options import Options
from .plugins import Sink, Source
from .reading.reader import CertificateReader

__all__ = [
    "FailingSink",
    "RecordingSink",
    "StaticSource",
    "TlsServer",
    "check_failing_sink",
    "check_sink",
    "check_source",
    "sample_envelopes",
]


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

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        return self.result


# -- sample events ------------------------------------------------------------------

_DOMAIN = "www.example.test"


def sample_envelopes(now: datetime | None = None, host: str = "test-host") -> list[Envelope]:
    """One envelope of every kind in EVENT_TYPES, with plausible fields, in that order.

    A sink must deliver every kind, including kinds added after it was written.
    """
    now = now or datetime.now(UTC).replace(microsecond=0)
    return [wrap(_sample(kind, now), host=host, time=now) for kind in EVENT_TYPES]


def _sample(kind: str, now: datetime) -> Event:
    cls = EVENT_TYPES[kind]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {
        "store": "pem:/etc/ssl/example",
        "lineage": f"/etc/ssl/example/{_DOMAIN}.pem",
        "path": f"/etc/ssl/example/{_DOMAIN}.pem",
        "fingerprint": "ab" * 32,
    }
    for field in dataclasses.fields(cls):
        if field.name in values or not field.init:
            continue
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            values[field.name] = _value(field.name, hints[field.name], now)
    return cls(**values)


def _value(name: str, hint: Any, now: datetime) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is datetime:
        return now + timedelta(days=30) if "expires" in name else now - timedelta(days=1)
    if hint is bool:
        return False
    if hint is int:
        return 7
    if hint is str:
        return {"reason": "bad_pem", "threshold": "7d"}.get(name, _DOMAIN)
    if typing.get_args(hint) == (Change, ...):  # certificate_changed: a name added
        return (Change(field="names", before=(_DOMAIN,), after=(_DOMAIN, f"api.{_DOMAIN}")),)
    if typing.get_origin(hint) is tuple:
        return (_DOMAIN,)
    raise TypeError(f"no sample value for {name}: {hint}")


# -- contracts ------------------------------------------------------------------------


def check_sink(sink: Sink, received: Callable[[], int] | None = None) -> None:
    """Assert that a working `sink` keeps the sink contract.

    `received` (optional) counts the events its destination holds now: an empty batch
    must add none, a batch of every kind must add one per event.
    """
    _check_name(sink, "name")
    _check_classmethod(sink, "from_options")
    before = received() if received else 0
    sink.deliver([])
    if received:
        _expect(received() == before, "an empty batch must send nothing")
    batch = sample_envelopes()
    try:
        sink.deliver(batch)
    except SinkError as exc:
        raise AssertionError(f"a working sink failed to deliver every kind: {exc}") from exc
    if received:
        got = received() - before
        _expect(got == len(batch), f"delivered {got} of {len(batch)} events")


def check_failing_sink(sink: Sink) -> SinkError:
    """Assert that a sink whose destination is broken raises SinkError naming itself
    (and nothing else, which would escape the outbox's retries); return the error."""
    try:
        sink.deliver(sample_envelopes())
    except SinkError as exc:
        _expect(exc.sink == sink.name, f"SinkError names {exc.sink!r}, not {sink.name!r}")
        return exc
    except Exception as exc:
        raise AssertionError(f"a failing delivery must raise SinkError, not {exc!r}") from exc
    raise AssertionError("delivery to a broken destination did not raise SinkError")


def check_source(source: Source, reader: CertificateReader | None = None) -> ScanResult:
    """Assert that `source` keeps the source contract; return its first scan.

    It has an `id`; scan() returns a ScanResult (or raises SourceError); observations
    have a lineage, a known role and facts; problems have a known reason; and a second
    scan, given the first one's file cache and cursor, sees the same certificates.
    """
    _check_name(source, "id")
    _check_classmethod(source, "from_options")
    reader = reader or CertificateReader()
    first = _scan(source, reader, None)
    for observation in first.observations:
        _expect(bool(observation.lineage), f"an observation without a lineage: {observation}")
        _expect(observation.role in ("leaf", "chain", "ca"), f"unknown role {observation.role!r}")
        _expect(isinstance(observation.domains, tuple), "domains must be a tuple")
        _expect(
            observation.certificate.not_before <= observation.certificate.not_after,
            "not_before must not be after not_after",
        )
    lineages = [o.lineage for o in first.observations if o.role != "chain"]  # chains repeat
    _expect(len(lineages) == len(set(lineages)), f"a lineage is reported twice: {lineages}")
    for problem in first.problems:
        _expect(problem.reason in REASONS, f"unknown problem reason {problem.reason!r}")
    again = CertificateReader(
        max_file_size=reader.max_file_size, chain=reader.chain, cache=reader.files
    )
    second = _scan(source, again, first.cursor)
    _expect(_inventory(second) == _inventory(first), "a second scan saw other certificates")
    return first


def _scan(source: Source, reader: CertificateReader, cursor: str | None) -> ScanResult:
    try:
        result = source.scan(reader, cursor)
    except SourceError:
        return ScanResult(failed=True)
    except Exception as exc:
        raise AssertionError(f"scan() may raise SourceError, not {exc!r}") from exc
    _expect(isinstance(result, ScanResult), f"scan() returned {type(result).__name__}")
    return result


def _inventory(scan: ScanResult) -> set[tuple[str, str]]:
    return {(o.lineage, o.fingerprint) for o in scan.observations}


def _check_name(plugin: object, attribute: str) -> None:
    value = getattr(plugin, attribute, None)
    _expect(isinstance(value, str) and bool(value), f"{attribute} must be a non-empty string")


def _check_classmethod(plugin: object, name: str) -> None:
    _expect(callable(getattr(type(plugin), name, None)), f"{type(plugin).__name__} has no {name}()")


def _expect(condition: bool, message: str) -> None:
    """assert that survives `python -O`: a contract check must never be skipped."""
    if not condition:
        raise AssertionError(message)
