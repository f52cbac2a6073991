"""Shared fixtures: real lacme stores and CAs, trustme certificates, the CLI in-process."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from lacme import CertificateAuthority, FileStore
from lacme._types import CertBundle

from lacme_watch.cli.commands import main
from lacme_watch.config import Config
from lacme_watch.dispatch.delivery import SinkRoute
from lacme_watch.events import CertificateExpiring
from lacme_watch.events.cloudevents import Envelope
from lacme_watch.plugins import Sink, Source
from lacme_watch.run.passes import PassReport, run_pass
from lacme_watch.sources.stores.pem import PemStore
from lacme_watch.statedb import StateStore
from lacme_watch.testing import RecordingSink

from .acme import Pebble, start_pebble


@pytest.fixture
def now() -> datetime:
    """The real time, to the second: lacme's CA stamps certificates with the real clock."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "lacme"


@pytest.fixture
def file_store(store_dir: Path) -> FileStore:
    return FileStore(store_dir)


@pytest.fixture
def lacme_ca(file_store: FileStore) -> CertificateAuthority:
    ca = CertificateAuthority(file_store, name="root")
    ca.init(cn="Test Internal CA", validity_days=3650)
    return ca


@pytest.fixture
def acme_ca() -> trustme.CA:
    """Stands in for a public ACME CA: not watched, signs 'ACME-issued' certificates."""
    return trustme.CA()


def save_acme_cert(
    store: FileStore,
    ca: trustme.CA,
    names: list[str],
    *,
    not_before: datetime,
    not_after: datetime,
) -> CertBundle:
    """Save a certificate into a lacme FileStore exactly as lacme's Client.issue() does."""
    leaf = ca.issue_cert(*names, not_before=not_before, not_after=not_after)
    chain = [blob.bytes() for blob in leaf.cert_chain_pems]
    bundle = CertBundle(
        domain=names[0],
        domains=tuple(names),
        cert_pem=chain[0],
        fullchain_pem=b"".join(chain) + ca.cert_pem.bytes(),
        key_pem=leaf.private_key_pem.bytes(),
        issued_at=datetime.now(UTC),
        expires_at=not_after,
    )
    return store.save_cert(bundle)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


CliRunner = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[CliRunner]:
    """Run `lacme-watch ARGS` in-process; returns exit code, stdout and stderr. The
    root logger's level and handlers (which `--log-level` sets) are put back after the
    test: left at debug, they would change what a later test's caplog records."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]

    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run
    root.setLevel(level)
    root.handlers[:] = handlers


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def read_events(path: Path) -> list[dict[str, object]]:
    """The CloudEvents a json log sink wrote, one per line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def kinds(events: list[dict[str, object]]) -> list[str]:
    return [str(event["type"]).removeprefix("lacme.") for event in events]


def data(event: dict[str, object]) -> dict[str, object]:
    """A CloudEvent's `data` object."""
    found = event["data"]
    assert isinstance(found, dict)
    return found


def watch(
    cli: CliRunner, config: Path, log: Path, *extra: str
) -> tuple[int, list[dict[str, object]]]:
    """One `watch --once`; its exit code and the events it appended to the JSON log."""
    before = len(read_events(log))
    result = cli("--config", str(config), *extra, "watch", "--once")
    return result.code, read_events(log)[before:]


@pytest.fixture
def watched(tmp_path: Path, store_dir: Path, acme_ca: trustme.CA) -> tuple[Path, Path]:
    """A config watching the lacme store and its CA, logging JSON lines; yields (config, log).

    The ACME CA's root is a `trust:` bundle, as a public CA's root is in the system store."""
    log = tmp_path / "events.jsonl"
    acme_ca.cert_pem.write_to_path(str(tmp_path / "acme-root.pem"))
    config = write_config(
        tmp_path / "lacme-watch.yaml",
        f"""
state_dir: {tmp_path / "state"}
trust: [{tmp_path / "acme-root.pem"}]
stores:
  - type: lacme
    path: {store_dir}
authorities:
  - type: lacme
    path: {store_dir}
    name: root
sinks:
  - type: log
    format: json
    path: {log}
""",
    )
    return config, log


def write_leaves(
    certs: Path, days_left: dict[str, int], *, now: datetime, lifetime_days: int = 90
) -> None:
    """`certs/NAME.pem` for each name: a leaf of one CA for NAME.example, `lifetime_days`
    long, with its given days left at `now`."""
    ca = trustme.CA()
    certs.mkdir(parents=True, exist_ok=True)
    for name, left in days_left.items():
        leaf = ca.issue_cert(
            f"{name}.example",
            not_before=now + timedelta(days=left - lifetime_days),
            not_after=now + timedelta(days=left),
        )
        (certs / f"{name}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())


def store_config(state_dir: Path, source: Source, *sinks: Sink) -> Config:
    """One store, its state in `state_dir`, delivering to `sinks`."""
    return Config(
        path=None,
        state_dir=state_dir,
        host="test-host",
        stores=(source,),
        authorities=(),
        sinks=tuple(SinkRoute(sink=sink) for sink in sinks),
    )


def pem_config(tmp_path: Path, certs: Path, sink: Sink) -> Config:
    """One pem store over `certs/*.pem`, state in tmp_path/state, delivering to `sink`."""
    return store_config(tmp_path / "state", PemStore((str(certs / "*.pem"),)), sink)


class PassWatch:
    """run_pass over one store in its own state_dir, every event delivered to a
    recording sink; each pass's report and the envelopes it delivered."""

    def __init__(self, state_dir: Path, source: Source) -> None:
        self.sink = RecordingSink()
        self.config = store_config(state_dir, source, self.sink)
        self.source = source.id

    def run_pass(self, at: datetime) -> tuple[PassReport, list[Envelope]]:
        seen = len(self.sink.envelopes)
        with StateStore(self.config.state_dir) as store:
            report = run_pass(self.config, store, at)
        return report, self.sink.envelopes[seen:]


def kind_and_domain(envelopes: list[Envelope]) -> list[tuple[str, str]]:
    """(kind, domain) of each event: what a pass said, briefly."""
    return [(e.event.kind, str(getattr(e.event, "domain", ""))) for e in envelopes]


def expiring(sink: RecordingSink) -> list[CertificateExpiring]:
    """The certificate_expiring events `sink` received, in order."""
    return [e.event for e in sink.envelopes if isinstance(e.event, CertificateExpiring)]


def days(n: float) -> timedelta:
    return timedelta(days=n)


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """A real ACME server (Debian's pebble) on loopback, shared by the session."""
    server = start_pebble(tmp_path_factory.mktemp("pebble"))
    yield server
    server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts pebble (and so certbot, dehydrated or lacme's client) must say so
    with the `acme` marker, or `pytest -m "not acme"` would not stay quick."""
    unmarked = [
        item.nodeid
        for item in items
        if "pebble" in getattr(item, "fixturenames", ()) and item.get_closest_marker("acme") is None
    ]
    if unmarked:
        raise pytest.UsageError("mark these @pytest.mark.acme: " + ", ".join(unmarked))
