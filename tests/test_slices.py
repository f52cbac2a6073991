"""A large store's first pass is read and committed a slice at a time (slices.py): it
says exactly what a whole first pass says, the next pass keeps it by its stat record,
and a pass stopped between slices is taken up by the next one without an event lost,
repeated, or a certificate announced as new. Real files: trustme certificates in a PEM
directory and in lacme's FileStore; the slice is made small instead of the store large."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from lacme import FileStore

from lacme_watch.plugins import Source
from lacme_watch.reading import forked, statrecord
from lacme_watch.run import slices
from lacme_watch.run.passes import PassReport
from lacme_watch.sources.stores.lacme import LacmeStore
from lacme_watch.sources.stores.pem import PemStore
from lacme_watch.statedb import StateStore

from .conftest import PassWatch, save_acme_cert

NOW = datetime.now(UTC).replace(microsecond=0)
DAYS_LEFT = (3, 10, 20, 45, 60, 80, 5, 12, 25, 70, 2)
"""Eleven certificates: some inside each expiry threshold at first sight, some not."""


@pytest.fixture(autouse=True)
def _no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago are trusted (the racy rule has its own test)."""
    monkeypatch.setattr(statrecord, "RACY", -3600.0)


class _Watch(PassWatch):
    """run_pass over one store in its own state_dir, with every event delivered."""

    def run(self) -> tuple[PassReport, list[tuple[str, str]]]:
        report, envelopes = self.run_pass(NOW)
        return report, [
            (e.event.kind, str(getattr(e.event, "domain", "") or getattr(e.event, "path", "")))
            for e in envelopes
        ]


def _pem_store(tmp_path: Path) -> PemStore:
    ca = trustme.CA()
    certs = tmp_path / "certs"
    certs.mkdir()
    for number, days in enumerate(DAYS_LEFT):
        leaf = ca.issue_cert(
            f"host{number}.example",
            not_before=NOW - timedelta(days=90 - days),
            not_after=NOW + timedelta(days=days),
        )
        (certs / f"host{number:02}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (certs / "host99.pem").write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    return PemStore((str(certs / "*.pem"),))


def _lacme_store(tmp_path: Path) -> LacmeStore:
    ca = trustme.CA()
    store = FileStore(tmp_path / "lacme")
    for number, days in enumerate(DAYS_LEFT):
        save_acme_cert(
            store,
            ca,
            [f"host{number}.example"],
            not_before=NOW - timedelta(days=90 - days),
            not_after=NOW + timedelta(days=days),
        )
    return LacmeStore(str(tmp_path / "lacme"))


def _whole(tmp_path: Path, source: Source) -> tuple[PassReport, list[tuple[str, str]]]:
    """What one first pass over the store says when it is read whole."""
    return _Watch(tmp_path / "whole-state", source).run()


@pytest.mark.parametrize("fork", [False, True], ids=["alone", "forked"])
@pytest.mark.parametrize("make", [_pem_store, _lacme_store], ids=["pem", "lacme"])
def test_a_first_pass_in_slices_says_what_a_whole_one_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: type[Source], fork: bool
) -> None:
    """Also when a forked child reads ahead a share of each next slice, balanced by the
    time the two processes took on the slice before."""
    source = make(tmp_path)  # type: ignore[call-arg]
    whole, whole_events = _whole(tmp_path, source)
    assert whole.carried == ()  # read whole: smaller than a slice
    monkeypatch.setattr(slices, "SLICE", 3)
    if fork:
        if not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
            pytest.skip("needs fork and two CPUs")
        monkeypatch.setattr(forked, "MIN_FILES", 2)
    watching = _Watch(tmp_path / "state", source)
    report, events = watching.run()
    assert watching.source in report.carried  # committed slice by slice
    assert Counter(events) == Counter(whole_events)
    assert ("certificate_expiring", "host0.example") in events
    assert not any(kind == "certificate_issued" for kind, _ in events)
    assert report.certificates == whole.certificates  # the leaves (and lacme's CA)
    assert sorted(map(str, report.problems)) == sorted(map(str, whole.problems))
    assert report.files_parsed == whole.files_parsed
    with StateStore(watching.config.state_dir) as store:
        assert store.baselined(watching.source)
        assert store.load_stat_record(watching.source) is not None
    again, repeated = watching.run()
    assert (again.carried, again.files_parsed, repeated) == ((watching.source,), 0, [])
    assert again.certificates == whole.certificates


class _Stopped(BaseException):
    """The process dies here (as a kill would): nothing after it runs."""


def test_a_pass_stopped_between_slices_is_taken_up_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _pem_store(tmp_path)
    _, whole_events = _whole(tmp_path, source)
    monkeypatch.setattr(slices, "SLICE", 3)
    watching = _Watch(tmp_path / "state", source)
    commit = StateStore.commit_pass
    calls: list[int] = []

    def dies_at_the_third(self: StateStore, *args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise _Stopped
        return commit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(StateStore, "commit_pass", dies_at_the_third)
    with pytest.raises(_Stopped):
        watching.run()
    with StateStore(watching.config.state_dir) as store:
        assert not store.baselined(watching.source)  # two slices in, no baseline yet
        assert store.count_certificates(watching.source) == 6
    monkeypatch.setattr(StateStore, "commit_pass", commit)
    report, events = watching.run()
    # The two committed slices' events were in the outbox: delivered now, once; the
    # rest said as a first pass says it, with nothing announced as newly issued.
    assert Counter(events) == Counter(whole_events)
    assert report.certificates == len(DAYS_LEFT)
    _, repeated = watching.run()
    assert repeated == []


def test_a_store_that_fits_in_one_slice_is_read_whole(tmp_path: Path) -> None:
    watching = _Watch(tmp_path / "state", _pem_store(tmp_path))
    report, _ = watching.run()
    assert report.carried == ()
    assert len(report.inventory) == len(DAYS_LEFT)


def test_a_baselined_store_is_never_read_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slices keep a first pass quiet: a store with a baseline is scanned as ever, so
    a certificate added to it is announced."""
    source = _pem_store(tmp_path)
    watching = _Watch(tmp_path / "state", source)
    watching.run()
    monkeypatch.setattr(slices, "SLICE", 3)
    ca = trustme.CA()
    leaf = ca.issue_cert("new.example", not_before=NOW - timedelta(days=1))
    (tmp_path / "certs" / "new.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    report, events = watching.run()
    assert ("certificate_issued", "new.example") in events
    assert report.certificates == len(DAYS_LEFT) + 1


def test_a_rescan_that_declines_part_way_leaves_the_store_to_a_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault no real store causes (its rescan raising after two slices, which
    rescans.rescan turns into "read it in full"): the pass reads the store whole, on
    top of what the two slices committed, and says everything exactly once."""
    source = _pem_store(tmp_path)
    _, whole_events = _whole(tmp_path, source)
    monkeypatch.setattr(slices, "SLICE", 3)
    rescan = PemStore.rescan
    calls: list[int] = []

    def fails_third(self: PemStore, *args: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("the disk went away")
        return rescan(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(PemStore, "rescan", fails_third)
    watching = _Watch(tmp_path / "state", source)
    report, events = watching.run()
    assert watching.source not in report.carried  # read whole, in the end
    assert Counter(events) == Counter(whole_events)
    assert len(report.envelopes) == len(whole_events)
    assert report.certificates == len(DAYS_LEFT)
    _, repeated = watching.run()
    assert repeated == []


def test_the_child_is_given_the_share_that_would_have_had_both_done_at_once() -> None:
    """Half each when an entry costs both the same and nothing else is to do; more for
    the child while this process commits; less for a child slower per entry; a short
    last slice is mostly the child's."""
    even = slices._Cycle(share=0.5, size=3000, committed=0.0, reading=0.3, child=0.3)
    assert slices._balanced(even, 3000) == pytest.approx(0.5)
    committing = even._replace(committed=0.2)  # 0.2 s + 3,000 x 200 us = 3,000 x 400 us x share
    assert slices._balanced(committing, 3000) == pytest.approx(2 / 3)
    slower = committing._replace(child=0.6)  # 0.2 s + 3,000 x 200 us = 3,000 x 600 us x share
    assert slices._balanced(slower, 3000) == slices.AHEAD_RANGE[0]
    assert slices._balanced(slower._replace(committed=0.5), 3000) == pytest.approx(11 / 18)
    assert slices._balanced(committing, 500) == slices.AHEAD_RANGE[1]
