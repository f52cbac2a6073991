"""run_pass: one source that raises is that source's problem, never the whole pass's."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import pytest
import trustme

from lacme_watch import CertificateReader, Options, ScanResult, SourceError
from lacme_watch.config import Config
from lacme_watch.config.routes import SinkRoute
from lacme_watch.run.passes import run_pass
from lacme_watch.sources.stores.pem import PemStore
from lacme_watch.statedb import StateStore
from lacme_watch.testing import RecordingSink

NOW = datetime.now(UTC).replace(microsecond=0)


class FlakySource:
    """A third-party source: reads one PEM file through the reader, or raises `fault`."""

    def __init__(self, id: str, path: Path) -> None:
        self.id, self.path = id, path
        self.fault: Exception | None = None

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(options.string("id"), Path(options.path("path")))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        if self.fault is not None:
            raise self.fault
        return PemStore((str(self.path),)).scan(reader)


def _pem(directory: Path, name: str, days_left: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    leaf = trustme.CA().issue_cert(
        name,
        not_before=NOW + timedelta(days=days_left - 90),
        not_after=NOW + timedelta(days=days_left),
    )
    path = directory / f"{name}.pem"
    path.write_bytes(leaf.cert_chain_pems[0].bytes())
    return path


def _world(tmp_path: Path) -> tuple[Config, FlakySource, RecordingSink, Path]:
    """pem store (before) → the flaky plugin → pem store (after), one recording sink."""
    _pem(tmp_path / "first", "first.example", days_left=60)
    flaky = FlakySource("flaky:plugin", _pem(tmp_path / "plugin", "plugin.example", 60))
    _pem(tmp_path / "last", "last.example", days_left=60)
    sink = RecordingSink("rec")
    config = Config(
        path=None,
        state_dir=tmp_path / "state",
        host="test-host",
        stores=(
            PemStore((str(tmp_path / "first" / "*.pem"),)),
            flaky,
            PemStore((str(tmp_path / "last" / "*.pem"),)),
        ),
        authorities=(),
        sinks=(SinkRoute(sink=sink),),
    )
    return config, flaky, sink, tmp_path / "last"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (SourceError("/plugin/api", "unreachable", "connection refused"), "unreachable"),
        (RuntimeError("plugin bug"), "source_error"),
    ],
)
def test_a_source_that_raises_mid_pass_is_its_own_problem(
    tmp_path: Path, fault: Exception, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    config, flaky, sink, last = _world(tmp_path)
    with StateStore(config.state_dir) as store:
        assert run_pass(config, store, NOW).exit_code == 0  # the baseline, all three read

        flaky.fault = fault
        _pem(last, "new.example", days_left=5)  # news in the source after the broken one
        with caplog.at_level(logging.DEBUG, logger="lacme_watch.run.scans"):
            report = run_pass(config, store, NOW + timedelta(hours=1))

        assert report.exit_code == 1
        assert report.failed_sources == {"flaky:plugin"}
        assert [(source, problem.reason) for source, problem in report.problems] == [
            ("flaky:plugin", reason)
        ]
        # The other sources' events are committed and delivered.
        assert sink.kinds == [
            "certificate_unreadable",  # the broken source's problem, reported once
            "certificate_issued",
            "certificate_expiring",
        ]
        assert {e.event.store for e in sink.envelopes[1:]} == {config.stores[2].id}
        assert store.pending() == []
        # The broken source's inventory carries over: nothing is reported removed.
        assert {o.domain for source, o in report.inventory if source == "flaky:plugin"} == {
            "plugin.example"
        }
        snapshot = store.load_snapshot("flaky:plugin")
        assert snapshot is not None
        assert {o.domain for o in snapshot.certificates.values()} == {"plugin.example"}

        # Only an unexpected exception is a bug worth a traceback, and only at debug level.
        tracebacks = [r for r in caplog.records if r.exc_info]
        if isinstance(fault, SourceError):
            assert tracebacks == []
        else:
            assert [(r.levelno, r.exc_info[1]) for r in tracebacks if r.exc_info] == [
                (logging.DEBUG, fault)
            ]

        # It recovers: the next good scan reads the plugin again and removes nothing.
        flaky.fault = None
        recovered = run_pass(config, store, NOW + timedelta(hours=2))
        assert recovered.exit_code == 0
        assert "certificate_removed" not in sink.kinds


def test_a_source_without_a_cursor_parameter_still_scans(tmp_path: Path) -> None:
    """Sources written for `scan(reader)` keep working."""
    _pem(tmp_path / "certs", "old.example", days_left=5)

    class OldStyle:
        id = "old:style"

        def scan(self, reader: CertificateReader) -> ScanResult:
            return PemStore((str(tmp_path / "certs" / "*.pem"),)).scan(reader)

    sink = RecordingSink("rec")
    config = Config(
        path=None,
        state_dir=tmp_path / "state",
        host="test-host",
        stores=(OldStyle(),),  # type: ignore[arg-type]  # the old protocol, on purpose
        authorities=(),
        sinks=(SinkRoute(sink=sink),),
    )
    with StateStore(config.state_dir) as store:
        assert run_pass(config, store, NOW).exit_code == 0
    assert sink.kinds == ["certificate_expiring"]
