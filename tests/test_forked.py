"""A first pass over many new files reads half of them in a forked child: the same
inventory, events, problems and stat record as one process alone, and nothing lost when
the child fails. Real files (trustme) on the real filesystem."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from lacme import FileStore

from lacme_watch.config import Config
from lacme_watch.dispatch.delivery import SinkRoute
from lacme_watch.events.cloudevents import Envelope
from lacme_watch.plugins import Source
from lacme_watch.reading import forked, statrecord
from lacme_watch.run.passes import PassReport, run_pass
from lacme_watch.sources.stores.lacme import LacmeStore
from lacme_watch.sources.stores.pem import PemStore
from lacme_watch.statedb import StateStore
from lacme_watch.testing import RecordingSink

from .conftest import save_acme_cert

NOW = datetime.now(UTC).replace(microsecond=0)
COUNT = forked.MIN_FILES + 20

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or (os.cpu_count() or 1) < 2, reason="needs fork and two CPUs"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COUNT certificates, some expiring, and one broken file in the child's half."""
    ca = trustme.CA()
    certs = tmp_path_factory.mktemp("forked") / "certs"
    certs.mkdir()
    for index in range(COUNT):
        days_left = 10 if index % 50 == 0 else 80
        leaf = ca.issue_cert(
            f"host{index:04}.example",
            not_before=NOW - timedelta(days=90 - days_left),
            not_after=NOW + timedelta(days=days_left),
        )
        (certs / f"host{index:04}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (certs / "host9999-broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64!\n")
    old = (NOW - timedelta(days=1)).timestamp()
    for path in [*certs.iterdir(), certs]:
        os.utime(path, (old, old))
    return certs


def _run(tmp_path: Path, source: Source, name: str) -> tuple[PassReport, list[Envelope], Config]:
    """One pass over `source` with state in tmp_path/name, and what it delivered."""
    sink = RecordingSink()
    config = Config(
        path=None,
        state_dir=tmp_path / name,
        host="test-host",
        stores=(source,),
        authorities=(),
        sinks=(SinkRoute(sink=sink),),
    )
    with StateStore(config.state_dir) as state:
        report = run_pass(config, state, NOW)
    return report, sink.envelopes, config


def _pass(tmp_path: Path, certs: Path, name: str) -> tuple[PassReport, list[str], Config]:
    report, delivered, config = _run(tmp_path, PemStore((str(certs / "*.pem"),)), name)
    events = sorted(f"{e.event.kind} {getattr(e.event, 'domain', '')}" for e in delivered)
    return report, events, config


def _inventory(config: Config) -> list[tuple[str, str]]:
    with StateStore(config.state_dir) as state:
        return sorted(
            (lineage, o.fingerprint)
            for found in state.inventory().values()
            for o in found
            for lineage in (o.lineage,)
        )


def test_a_forked_first_pass_equals_a_single_process_one(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statrecord, "RACY", -3600.0)
    forked_report, forked_events, forked_config = _pass(tmp_path, store, "forked")
    monkeypatch.setattr(forked, "MIN_FILES", 10**9)
    alone_report, alone_events, alone_config = _pass(tmp_path, store, "alone")

    assert forked_report.files_parsed == alone_report.files_parsed == COUNT
    assert forked_events == alone_events
    assert "certificate_unreadable " in forked_events
    assert len([e for e in forked_events if e.startswith("certificate_expiring")]) == 9
    assert _inventory(forked_config) == _inventory(alone_config)
    assert [p.reason for _, p in forked_report.problems] == ["bad_pem"]
    with StateStore(forked_config.state_dir) as state:
        kept = state.load_stat_record(forked_config.stores[0].id)
    assert kept is not None
    assert statrecord.changes(kept.record) == []  # the child's files are in the record


def test_a_change_in_the_childs_half_is_seen_next_pass(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statrecord, "RACY", -3600.0)
    _pass(tmp_path, store, "state")
    last = store / f"host{COUNT - 1:04}.pem"
    original = last.read_bytes()
    renewed = trustme.CA().issue_cert(f"host{COUNT - 1:04}.example")
    try:
        last.write_bytes(renewed.cert_chain_pems[0].bytes())
        report, events, _ = _pass(tmp_path, store, "state")
    finally:
        last.write_bytes(original)
    assert f"certificate_renewed host{COUNT - 1:04}.example" in events
    assert report.files_parsed == 1


def test_a_child_that_fails_costs_nothing_but_time(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child dies before writing (a fault not caused for real: a crash there would
    need a bug): this process reads its half itself, and keeps no stat record."""

    def crash(*_: object) -> None:
        os._exit(3)

    monkeypatch.setattr(statrecord, "RACY", -3600.0)
    monkeypatch.setattr(forked, "_child", crash)
    report, events, config = _pass(tmp_path, store, "crashed")
    assert report.files_parsed == COUNT
    assert len([e for e in events if e.startswith("certificate_expiring")]) == 9
    assert len(_inventory(config)) == COUNT
    with StateStore(config.state_dir) as state:
        assert state.load_stat_record(config.stores[0].id) is None  # next pass reads all


def test_links_out_of_the_root_in_the_childs_half_still_make_a_record(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child keeps its names whole once a link leads out of the store's root;
    this process takes them as they are, and the record holds every link and file."""
    monkeypatch.setattr(statrecord, "RACY", -3600.0)
    live = tmp_path / "live"
    live.mkdir()
    for target in sorted(store.iterdir()):
        (live / target.name).symlink_to(target)
    source = PemStore((str(live / "*.pem"),), follow_any=True)
    report, _, config = _run(tmp_path, source, "linked")
    with StateStore(config.state_dir) as state:
        kept = state.load_stat_record(source.id)
    assert report.files_parsed == COUNT
    assert kept is not None
    assert statrecord.changes(kept.record) == []
    recorded = {path for path, _, _ in statrecord._entries(kept.record) or ()}
    assert {
        str(live / f"host{COUNT - 1:04}.pem"),
        str(store / f"host{COUNT - 1:04}.pem"),
    } <= recorded
    again, _, _ = _run(tmp_path, source, "linked")
    assert again.carried == (source.id,)


def _lacme_pass(tmp_path: Path, root: Path, name: str) -> tuple[PassReport, list[str], Config]:
    report, delivered, config = _run(tmp_path, LacmeStore(str(root)), name)
    events = sorted(
        f"{e.event.kind} {getattr(e.event, 'domain', '')} {getattr(e.event, 'reason', '')}"
        for e in delivered
    )
    return report, events, config


def test_a_forked_lacme_first_pass_reads_meta_json_in_the_child_as_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child reads each of its directories' meta.json with its fullchain.pem: the
    names lacme keeps only there, a directory lacme is still writing (no meta.json), a
    damaged meta.json and a broken chain in the child's half say what one process says."""
    ca = trustme.CA()
    files = FileStore(tmp_path / "lacme")
    for index in range(16):
        days_left = 10 if index % 5 == 0 else 80
        save_acme_cert(
            files,
            ca,
            [f"*.host{index:02}.example", f"host{index:02}.example"],  # a hashed directory
            not_before=NOW - timedelta(days=90 - days_left),
            not_after=NOW + timedelta(days=days_left),
        )
    certs = sorted((tmp_path / "lacme" / "certs").iterdir())
    assert any(path.name.startswith("lacme-v2-") for path in certs)
    (certs[-1] / "meta.json").unlink()  # being written: lacme itself skips it
    (certs[-2] / "meta.json").write_text('{"domain": "x.example"}')  # no 'domains'
    (certs[-3] / "meta.json").write_text("{not json")
    impostor = trustme.CA().issue_cert("other.example").cert_chain_pems[0].bytes()
    fullchain = certs[-4] / "fullchain.pem"  # its leaf, then a CA that did not sign it
    fullchain.write_bytes(fullchain.read_bytes().split(b"-----END CERTIFICATE-----")[0])
    with fullchain.open("ab") as stream:
        stream.write(b"-----END CERTIFICATE-----\n" + impostor)
    monkeypatch.setattr(statrecord, "RACY", -3600.0)
    monkeypatch.setattr(forked, "MIN_FILES", 4)
    started: list[int] = []
    start = forked.start

    def counted(*args: Any, **kwargs: Any) -> forked.Batch | None:
        batch = start(*args, **kwargs)
        started.append(len(batch.paths) if batch is not None else 0)
        return batch

    monkeypatch.setattr(forked, "start", counted)
    forked_report, forked_events, forked_config = _lacme_pass(tmp_path, tmp_path / "lacme", "f")
    assert started == [16]  # half of the 16 directories: their meta.json and fullchain.pem
    monkeypatch.setattr(forked, "MIN_FILES", 10**9)
    alone_report, alone_events, alone_config = _lacme_pass(tmp_path, tmp_path / "lacme", "a")

    assert forked_events == alone_events
    broken = json.loads((certs[-4] / "meta.json").read_text())["domain"]
    assert f"chain_problem {broken} wrong_issuer" in forked_events
    assert [e for e in forked_events if e.startswith("certificate_expiring")]
    assert _inventory(forked_config) == _inventory(alone_config)
    assert sorted(map(str, forked_report.problems)) == sorted(map(str, alone_report.problems))
    assert sorted(p.reason for _, p in forked_report.problems) == ["bad_metadata"] * 2
    assert forked_report.files_parsed == alone_report.files_parsed == 13
    with StateStore(forked_config.state_dir) as state:
        kept = state.load_stat_record(forked_config.stores[0].id)
    assert kept is not None
    assert statrecord.changes(kept.record) == []  # the child's meta.json are in the record
    (certs[-5] / "meta.json").write_text(
        '{"domain": "renamed.example", "domains": ["renamed.example"]}'
    )
    with StateStore(forked_config.state_dir) as state:
        kept = state.load_stat_record(forked_config.stores[0].id)
    assert kept is not None
    assert statrecord.changes(kept.record) != []  # ... and a change to one is seen
