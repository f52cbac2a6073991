"""A file store unchanged since the last pass keeps its outcome without being read; every
kind of change, and time, still reaches detection. Real files (trustme, lacme's
FileStore) on the real filesystem."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from lacme import FileStore

from lacme_watch.plugins import Source
from lacme_watch.reading import guarded, statrecord
from lacme_watch.run import rescans
from lacme_watch.run.passes import PassReport
from lacme_watch.sources.stores.lacme import LacmeStore
from lacme_watch.sources.stores.pem import PemStore
from lacme_watch.statedb import StateStore

from .conftest import PassWatch, kind_and_domain, save_acme_cert

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago are trusted (the racy rule has its own test)."""
    monkeypatch.setattr(statrecord, "RACY", -3600.0)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _write(ca: trustme.CA, path: Path, name: str, days_left: int) -> None:
    leaf = ca.issue_cert(
        name,
        not_before=NOW - timedelta(days=90 - days_left),
        not_after=NOW + timedelta(days=days_left),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(leaf.cert_chain_pems[0].bytes())


class _Watch(PassWatch):
    """run_pass over one store, with the events each pass recorded."""

    def __init__(self, tmp_path: Path, source: Source) -> None:
        super().__init__(tmp_path / "state", source)

    def run(self, at: datetime = NOW) -> tuple[PassReport, list[tuple[str, str]]]:
        report, envelopes = self.run_pass(at)
        return report, kind_and_domain(envelopes)

    def carried(self, at: datetime = NOW) -> bool:
        report, events = self.run(at)
        return self.source in report.carried and not events


@pytest.fixture
def tree(tmp_path: Path, ca: trustme.CA) -> tuple[Path, _Watch]:
    certs = tmp_path / "certs"
    for name in ("a", "b"):
        _write(ca, certs / name / "cert.pem", f"{name}.example", 60)
    (certs / "empty").mkdir()  # matched by the glob's directory part, no file yet
    watching = _Watch(tmp_path, PemStore((str(certs / "**" / "*.pem"),)))
    report, events = watching.run()
    assert (report.carried, report.certificates, events) == ((), 2, [])
    return certs, watching


def test_an_unchanged_store_is_carried_over_and_still_counted(
    tree: tuple[Path, _Watch],
) -> None:
    _, watching = tree
    report, events = watching.run()
    assert report.carried == (watching.source,)
    assert report.certificates == 2
    assert report.files_parsed == 0
    assert events == []
    assert report.exit_code == 0


def test_a_file_added_where_none_was_is_issued(tree: tuple[Path, _Watch], ca: trustme.CA) -> None:
    certs, watching = tree
    assert watching.carried()
    _write(ca, certs / "empty" / "cert.pem", "new.example", 60)
    report, events = watching.run()
    assert report.carried == ()
    assert events == [("certificate_issued", "new.example")]
    assert watching.carried()


def test_a_file_rewritten_in_place_is_renewed(tree: tuple[Path, _Watch], ca: trustme.CA) -> None:
    certs, watching = tree
    assert watching.carried()
    path = certs / "a" / "cert.pem"
    inode = path.stat().st_ino
    leaf = ca.issue_cert("a.example", not_after=NOW + timedelta(days=80))
    with open(path, "r+b") as stream:  # same inode, same directory entries
        stream.write(leaf.cert_chain_pems[0].bytes())
        stream.truncate()
    assert path.stat().st_ino == inode
    _, events = watching.run()
    assert ("certificate_renewed", "a.example") in events


def test_a_file_removed_is_removed(tree: tuple[Path, _Watch]) -> None:
    certs, watching = tree
    assert watching.carried()
    (certs / "b" / "cert.pem").unlink()
    _, events = watching.run()
    assert events == [("certificate_removed", "b.example")]


def test_a_chmod_alone_is_a_change_the_record_sees(tree: tuple[Path, _Watch]) -> None:
    """ctime moves on chmod (mtime does not): a permission fix is looked at again."""
    certs, watching = tree
    assert watching.carried()
    with StateStore(watching.config.state_dir) as store:
        kept = store.load_stat_record(watching.source)
    assert kept is not None
    assert statrecord.changes(kept.record) == []
    os.chmod(certs / "a" / "cert.pem", 0o600)
    assert statrecord.changes(kept.record) == [(str(certs / "a" / "cert.pem"), False)]
    os.utime(certs / "empty")
    assert sorted(statrecord.changes(kept.record) or []) == [
        (str(certs / "a" / "cert.pem"), False),
        (str(certs / "empty"), True),
    ]
    assert len(statrecord.changes(kept.record, first=True) or []) == 1


def test_time_alone_still_crosses_thresholds(tree: tuple[Path, _Watch]) -> None:
    _, watching = tree
    assert watching.carried(NOW + timedelta(days=1))
    report, events = watching.run(NOW + timedelta(days=31))  # 29 days left: 30d
    assert report.files_parsed == 0  # no file changed: the due certificates, from the database
    assert events == [
        ("certificate_expiring", "a.example"),
        ("certificate_expiring", "b.example"),
    ]
    assert watching.carried(NOW + timedelta(days=31, hours=1))


def test_a_problem_is_reported_every_pass_and_announced_once(
    tree: tuple[Path, _Watch],
) -> None:
    certs, watching = tree
    (certs / "empty" / "bad.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64!\n")
    first, events = watching.run()
    assert [kind for kind, _ in events] == ["certificate_unreadable"]
    again, events = watching.run()
    assert again.carried == (watching.source,)
    assert events == []
    assert [problem.reason for _, problem in again.problems] == ["bad_pem"]
    assert again.exit_code == first.exit_code == 1


def test_a_changed_configuration_reads_again(tmp_path: Path, ca: trustme.CA) -> None:
    _write(ca, tmp_path / "certs" / "a.pem", "a.example", 60)
    watching = _Watch(tmp_path, PemStore((str(tmp_path / "certs" / "*.pem"),)))
    watching.run()
    assert watching.carried()
    other = _Watch(tmp_path, PemStore((str(tmp_path / "certs" / "*.pem"),), follow_any=True))
    report, _ = other.run()
    assert report.carried == ()


def _relink(link: Path, target: str) -> None:
    """Point `link` elsewhere as certbot does: a new link renamed over the old one."""
    fresh = link.with_name(link.name + ".new")
    fresh.symlink_to(target)
    fresh.replace(link)


@pytest.fixture
def linked(tmp_path: Path, ca: trustme.CA) -> tuple[Path, _Watch]:
    """certbot's layout: live/NAME/cert.pem -> ../../archive/NAME/cert1.pem, read by a
    pem store that follows links anywhere."""
    root = tmp_path / "le"
    _write(ca, root / "archive" / "a" / "cert1.pem", "a.example", 60)
    _write(ca, root / "archive" / "b" / "cert1.pem", "b.example", 60)
    for name in ("a", "b"):
        (root / "live" / name).mkdir(parents=True)
        (root / "live" / name / "cert.pem").symlink_to(f"../../archive/{name}/cert1.pem")
    store = PemStore((str(root / "live" / "*" / "cert.pem"),), follow_any=True)
    watching = _Watch(tmp_path, store)
    watching.run()
    return root, watching


def _not_read(caplog: pytest.LogCaptureFixture) -> bool:
    said = [r.getMessage() for r in caplog.records if r.name == "lacme_watch.run.scans"]
    caplog.clear()
    return any(line.endswith("unchanged since the last pass, not read") for line in said)


def test_a_store_of_symlinks_unchanged_is_carried_without_a_read(
    linked: tuple[Path, _Watch], caplog: pytest.LogCaptureFixture
) -> None:
    """A link is only ever replaced, never changed in place: the links on the way and
    the file they lead to, unchanged, say the path leads to the same certificate."""
    caplog.set_level(logging.DEBUG, logger="lacme_watch")
    _, watching = linked
    report, events = watching.run()
    assert (report.carried, report.certificates, events) == ((watching.source,), 2, [])
    assert _not_read(caplog)


def test_a_link_pointed_at_a_renewal_is_seen(
    linked: tuple[Path, _Watch], ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lacme_watch")
    root, watching = linked
    assert watching.carried()
    _write(ca, root / "archive" / "a" / "cert2.pem", "a.example", 85)
    _relink(root / "live" / "a" / "cert.pem", "../../archive/a/cert2.pem")
    caplog.clear()
    _, events = watching.run()
    assert ("certificate_renewed", "a.example") in events
    assert not _not_read(caplog)
    assert watching.carried()


def test_a_linked_file_rewritten_in_place_is_seen(
    linked: tuple[Path, _Watch], ca: trustme.CA
) -> None:
    root, watching = linked
    assert watching.carried()
    leaf = ca.issue_cert("b.example", not_after=NOW + timedelta(days=85))
    with open(root / "archive" / "b" / "cert1.pem", "r+b") as stream:
        stream.write(leaf.cert_chain_pems[0].bytes())
        stream.truncate()
    _, events = watching.run()
    assert ("certificate_renewed", "b.example") in events


def test_a_directory_link_on_the_way_pointed_elsewhere_is_seen(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """live/a.pem -> ../releases/current/a.pem, current -> v1: current pointed at v2
    (v1 left as it was, and releases/ on no recorded path) leads the same link to
    another file, and the record says so."""
    root = tmp_path / "deploy"
    _write(ca, root / "releases" / "v1" / "a.pem", "a.example", 60)
    _write(ca, root / "releases" / "v2" / "a.pem", "a.example", 85)
    (root / "releases" / "current").symlink_to("v1")
    (root / "live").mkdir()
    (root / "live" / "a.pem").symlink_to("../releases/current/a.pem")
    watching = _Watch(tmp_path, PemStore((str(root / "live" / "*.pem"),), follow_any=True))
    watching.run()
    assert watching.carried()
    _relink(root / "releases" / "current", "v2")
    _, events = watching.run()
    assert ("certificate_renewed", "a.example") in events
    assert watching.carried()


def test_a_change_above_the_stores_root_leaves_it_carried(
    tmp_path: Path, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    """With follow_symlinks: any too, the directories above the root are only passed
    through: a file written in /tmp or /etc does not make the store be read again."""
    caplog.set_level(logging.DEBUG, logger="lacme_watch")
    certs = tmp_path / "outer" / "certs"
    _write(ca, certs / "a.pem", "a.example", 60)
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),), follow_any=True))
    watching.run()
    assert watching.carried()
    caplog.clear()
    (tmp_path / "outer" / "unrelated.txt").write_text("a neighbour's file")
    assert watching.carried()
    assert _not_read(caplog)


def test_a_broken_link_is_read_each_pass_until_it_leads_somewhere(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """A link to nothing yet: nothing recorded could say when its target appears."""
    certs = tmp_path / "certs"
    _write(ca, certs / "b.pem", "b.example", 60)
    (certs / "a.pem").symlink_to("archive/a1.pem")
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),)))
    watching.run()
    report, _ = watching.run()
    assert report.carried == ()
    _write(ca, certs / "archive" / "a1.pem", "a.example", 60)
    _, events = watching.run()
    assert ("certificate_issued", "a.example") in events
    assert watching.carried()


def test_a_link_loop_is_that_files_problem_and_is_read_each_pass(
    tmp_path: Path, ca: trustme.CA
) -> None:
    certs = tmp_path / "certs"
    _write(ca, certs / "c.pem", "c.example", 60)
    (certs / "a.pem").symlink_to("b.pem")
    (certs / "b.pem").symlink_to("a.pem")
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),)))
    report, _ = watching.run()
    assert {Path(problem.path).name for _, problem in report.problems} == {"a.pem", "b.pem"}
    assert report.certificates == 1
    again, events = watching.run()
    assert (again.carried, again.certificates, events) == ((), 1, [])


@pytest.mark.parametrize(("limit", "carried"), [(40, False), (100, True)])
def test_a_chain_of_links_past_the_limit_is_read_each_pass(
    tmp_path: Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, limit: int, carried: bool
) -> None:
    """45 links still lead to their certificate, but the walk gives up past
    guarded._MAX_LINKS: such a store keeps no record and is read every pass."""
    monkeypatch.setattr(guarded, "_MAX_LINKS", limit)
    certs = tmp_path / "certs"
    _write(ca, certs / "real" / "c.pem", "c.example", 60)
    links = certs / "chain"
    links.mkdir()
    for index in range(45):
        (links / f"l{index}").symlink_to(f"l{index + 1}" if index < 44 else "../real/c.pem")
    (certs / "c.pem").symlink_to("chain/l0")
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),)))
    _, events = watching.run()
    assert events == []
    report, _ = watching.run()
    assert (bool(report.carried), report.certificates) == (carried, 1)


def test_files_changed_just_before_a_scan_are_not_trusted_next_pass(
    tmp_path: Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change in the same clock tick as the scan's lstat could leave the same mtime:
    a store touched within RACY seconds is read again next pass (git's racy index)."""
    monkeypatch.setattr(statrecord, "RACY", 2.0)
    _write(ca, tmp_path / "certs" / "a.pem", "a.example", 60)
    watching = _Watch(tmp_path, PemStore((str(tmp_path / "certs" / "*.pem"),)))
    watching.run()
    report, _ = watching.run()
    assert report.carried == ()
    old = (NOW - timedelta(days=1)).timestamp()
    later = time.time_ns() + 10**10
    monkeypatch.setattr("time.time_ns", lambda: later)
    os.utime(tmp_path / "certs" / "a.pem", (old, old))
    os.utime(tmp_path / "certs", (old, old))
    watching.run()  # the files' ctimes are now; the scan's clock says 10 s later
    report, _ = watching.run()
    assert report.carried == (watching.source,)


def test_a_file_renewed_just_before_a_scan_is_read_again_alone(
    tmp_path: Path,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One racy file is looked at again next pass, and nothing else: a renewal landing
    a moment before a pass does not make the next one read the whole store."""
    monkeypatch.setattr(statrecord, "RACY", 2.0)
    caplog.set_level(logging.DEBUG, logger="lacme_watch")
    certs = tmp_path / "certs"
    for name in ("a", "b", "c"):
        _write(ca, certs / f"{name}.pem", f"{name}.example", 60)
    clock = time.time_ns() + 10**10  # the files are 10 s old by the scans' clock
    monkeypatch.setattr("time.time_ns", lambda: clock)
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),)))
    watching.run()
    assert watching.carried()
    path = certs / "c.pem"
    leaf = ca.issue_cert("c.example", not_after=NOW + timedelta(days=80))
    with open(path, "r+b") as stream:  # renewed in place, in the scans' last second
        stream.write(leaf.cert_chain_pems[0].bytes())
        stream.truncate()
    os.utime(path, ns=(clock - 10**9, clock - 10**9))
    _, events = watching.run()
    assert ("certificate_renewed", "c.example") in events

    def looked_at() -> list[str]:
        said = [r.getMessage() for r in caplog.records if r.name == "lacme_watch.run.rescans"]
        caplog.clear()
        return [line.partition(": ")[2] for line in said]

    looked_at()
    report, events = watching.run()  # c.pem looked at again (its cache row), alone
    assert looked_at() == ["stat record 1 changed"]
    assert (report.carried, report.files_parsed, events) == ((watching.source,), 0, [])
    assert report.certificates == 3
    clock += 10**10  # no longer racy: looked at once more, then trusted as it is
    watching.run()
    assert looked_at() == ["stat record 1 changed"]
    assert watching.carried()
    assert looked_at() == ["stat record 0 changed"]


def test_a_lacme_renewal_just_before_a_scan_is_read_again_alone(
    tmp_path: Path,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """lacme's FileStore renews into the certificate's own directory: renewed a moment
    before a pass, that directory (and only it) is read again by the next one."""
    monkeypatch.setattr(statrecord, "RACY", 0.3)
    caplog.set_level(logging.DEBUG, logger="lacme_watch.run.rescans")
    store = FileStore(tmp_path / "lacme")
    for name in ("one.example", "two.example", "three.example"):
        save_acme_cert(
            store,
            ca,
            [name],
            not_before=NOW - timedelta(days=60),
            not_after=NOW + timedelta(days=30),
        )
    real = time.time_ns
    clock = real() + 10**10
    monkeypatch.setattr("time.time_ns", lambda: clock)
    watching = _Watch(tmp_path, LacmeStore(str(tmp_path / "lacme")))
    watching.run()
    assert watching.carried()
    time.sleep(0.4)  # the store's other directories are older than RACY now
    save_acme_cert(
        store,
        ca,
        ["two.example"],
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=89),
    )
    clock = real()  # the renewal's files are younger than RACY by the scans' clock
    _, events = watching.run()
    assert ("certificate_renewed", "two.example") in events
    caplog.clear()
    report, events = watching.run()
    said = [record.getMessage().partition(": ")[2] for record in caplog.records]
    assert said[0].startswith("stat record ")
    changed = int(said[0].split()[2])
    assert 0 < changed <= 4  # the directory and its files, not the store's 3 directories
    assert (report.carried, report.files_parsed, events) == ((watching.source,), 0, [])
    clock += 10**10
    watching.run()
    caplog.clear()
    assert watching.carried()
    assert [r.getMessage().partition(": ")[2] for r in caplog.records] == ["stat record 0 changed"]


def test_a_store_most_of_which_changed_is_read_in_full(
    tree: tuple[Path, _Watch],
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """From WHOLE_AFTER changed paths that are an eighth of the record or more, a
    partial scan would hold the old record beside the new for little less reading."""
    certs, watching = tree
    monkeypatch.setattr(rescans, "WHOLE_AFTER", 2)
    caplog.set_level(logging.DEBUG, logger="lacme_watch.run.rescans")
    assert watching.carried()
    for name in ("a", "b"):
        leaf = ca.issue_cert(f"{name}.example", not_after=NOW + timedelta(days=80))
        with open(certs / name / "cert.pem", "r+b") as stream:
            stream.write(leaf.cert_chain_pems[0].bytes())
            stream.truncate()
    caplog.clear()
    report, events = watching.run()
    said = [r.getMessage().partition(": ")[2] for r in caplog.records]
    assert said == ["stat record 2 changed", "read in full, an eighth of it or more changed"]
    assert report.carried == ()
    assert {kind for kind, _ in events} >= {"certificate_renewed"}
    assert watching.carried()


def test_a_damaged_record_means_a_full_scan(tree: tuple[Path, _Watch]) -> None:
    _, watching = tree
    assert watching.carried()
    db = sqlite3.connect(watching.config.state_dir / "state.sqlite3")
    db.execute("UPDATE stat_records SET record = x'00ff'")
    db.commit()
    db.close()
    report, events = watching.run()
    assert (report.carried, events) == ((), [])
    assert watching.carried()


def test_a_lacme_store_is_carried_until_lacme_saves_a_certificate(
    tmp_path: Path, ca: trustme.CA
) -> None:
    store = FileStore(tmp_path / "lacme")
    save_acme_cert(
        store,
        ca,
        ["one.example"],
        not_before=NOW - timedelta(days=10),
        not_after=NOW + timedelta(days=80),
    )
    watching = _Watch(tmp_path, LacmeStore(str(tmp_path / "lacme")))
    watching.run()
    assert watching.carried()
    save_acme_cert(
        store,
        ca,
        ["two.example"],
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=89),
    )
    report, events = watching.run()
    assert report.carried == ()
    assert events == [("certificate_issued", "two.example")]
    assert watching.carried()
    assert watching.run()[0].certificates == report.certificates == 3  # and the ACME root


def test_one_file_renewed_in_place_is_read_alone(tmp_path: Path, ca: trustme.CA) -> None:
    """A partial rescan: the changed file is read, the rest is as last pass left it,
    a problem elsewhere stands, a threshold due elsewhere still speaks."""
    certs = tmp_path / "certs"
    for index in range(20):
        _write(ca, certs / f"site{index:02}.pem", f"site{index:02}.example", 60 + 2 * index)
    (certs / "zz-bad.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64!\n")
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),)))
    first, _ = watching.run()
    assert first.certificates == 20
    renewed = ca.issue_cert("site05.example", not_after=NOW + timedelta(days=90))
    with open(certs / "site05.pem", "r+b") as stream:
        stream.write(renewed.cert_chain_pems[0].bytes())
        stream.truncate()

    report, events = watching.run(NOW + timedelta(days=31))  # site00 now has 29 days
    assert report.files_parsed == 1
    assert set(events) == {
        ("certificate_expiring", "site00.example"),
        ("certificate_renewed", "site05.example"),
        ("certificate_changed", "site05.example"),  # trustme gave it another key
    }
    assert report.certificates == 20
    assert [problem.reason for _, problem in report.problems] == ["bad_pem"]
    again, events = watching.run(NOW + timedelta(days=31, hours=1))
    assert (again.files_parsed, events, again.certificates) == (0, [], 20)


def _lacme(tmp_path: Path, ca: trustme.CA, names: Sequence[str]) -> tuple[FileStore, _Watch]:
    """A lacme FileStore holding `names`, 30 days left each, and its watch."""
    store = FileStore(tmp_path / "lacme")
    for name in names:
        save_acme_cert(
            store,
            ca,
            [name],
            not_before=NOW - timedelta(days=60),
            not_after=NOW + timedelta(days=30),
        )
    return store, _Watch(tmp_path, LacmeStore(str(tmp_path / "lacme")))


def test_a_lacme_renewal_rereads_that_directory_only(tmp_path: Path, ca: trustme.CA) -> None:
    store, watching = _lacme(tmp_path, ca, ("one.example", "two.example", "three.example"))
    first, _ = watching.run()
    save_acme_cert(store, ca, ["two.example"], not_before=NOW, not_after=NOW + timedelta(days=90))
    report, events = watching.run()
    assert [kind for kind, domain in events if domain == "two.example"] == ["certificate_renewed"]
    assert {domain for _, domain in events} == {"two.example"}
    assert report.files_parsed <= 3  # its directory's files, not the store's
    assert report.certificates == first.certificates
    (tmp_path / "lacme" / "certs" / "three.example" / "meta.json").unlink()
    _, events = watching.run()
    assert events == [("certificate_removed", "three.example")]


def test_a_renewal_under_another_chain_is_decided_by_a_full_scan(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """A partial rescan cannot know that no other bundle still carries an intermediate:
    when a file read again carries other chain certificates, the store is read whole, so
    the old CA's certificate leaves the inventory with its last bundle."""
    names = ("one.example", "two.example")
    store, watching = _lacme(tmp_path, ca, names)
    first, _ = watching.run()
    assert first.certificates == 3  # two leaves and the CA they both carry
    other = trustme.CA()
    for name in names:
        save_acme_cert(store, other, [name], not_before=NOW, not_after=NOW + timedelta(days=90))
        watching.run()
    with StateStore(watching.config.state_dir) as store_db:
        chains = {o.certificate.issuer for o in store_db.inventory_of(watching.source).values()}
    assert len(chains) == 1  # every certificate now comes from the other CA alone
    assert watching.run()[0].certificates == 3


def test_a_store_reached_through_a_symlinked_parent_keeps_its_lineages(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """The record holds real paths, a pem store's lineages are its paths as written:
    under a symlinked directory a change is read by a full scan, never as a new file."""
    _write(ca, tmp_path / "real" / "certs" / "a.pem", "a.example", 60)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    watching = _Watch(tmp_path, PemStore((str(tmp_path / "link" / "certs" / "*.pem"),)))
    watching.run()
    renewed = ca.issue_cert("a.example", not_after=NOW + timedelta(days=90))
    with open(tmp_path / "real" / "certs" / "a.pem", "r+b") as stream:
        stream.write(renewed.cert_chain_pems[0].bytes())
        stream.truncate()
    report, events = watching.run()
    assert "certificate_issued" not in [kind for kind, _ in events]
    assert ("certificate_renewed", "a.example") in events
    assert report.certificates == 1


def test_a_chain_problem_is_not_said_again_when_its_file_is_rewritten_unchanged(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """A partial rescan reads the rewritten bundle with the marks of the lineages it read:
    the chain already reported incomplete stays reported, once."""
    for name in ("a", "b"):
        _write(ca, tmp_path / "certs" / name / "fullchain.pem", f"{name}.example", 60)
    watching = _Watch(tmp_path, PemStore((str(tmp_path / "certs" / "*" / "fullchain.pem"),)))
    _, events = watching.run()
    assert sorted(events) == [("chain_problem", "a.example"), ("chain_problem", "b.example")]
    path = tmp_path / "certs" / "a" / "fullchain.pem"
    path.write_bytes(path.read_bytes())  # the same bytes, a new mtime
    report, events = watching.run()
    assert (report.files_parsed, events, report.envelopes) == (1, [], [])  # not even sent
    assert watching.carried()


def test_a_lacme_directory_whose_meta_json_alone_changed_is_read_alone(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """Its fullchain.pem is read again beside the changed meta.json; its old payload is
    in the database, so its chain is known unchanged and the rescan stays partial."""
    _, watching = _lacme(tmp_path, ca, ("one.example", "two.example"))
    watching.run()
    os.chmod(tmp_path / "lacme" / "certs" / "one.example" / "meta.json", 0o600)
    report, events = watching.run()
    assert (report.carried, events) == ((watching.source,), [])  # partial, not full
    assert report.certificates == 3


def _record_rows(watching: _Watch) -> tuple[bytes, bytes | None]:
    """The stat record as stored, and the delta over it (None: none)."""
    with sqlite3.connect(watching.config.state_dir / "state.sqlite3") as db:
        (record,) = db.execute("SELECT record FROM stat_records").fetchone()
        delta = db.execute("SELECT delta FROM stat_deltas").fetchone()
    return bytes(record), None if delta is None else bytes(delta[0])


def _rewrite(ca: trustme.CA, path: Path, name: str, days: int = 90) -> None:
    """A renewal written over the file in place, as `cp` or a deploy hook does."""
    renewed = ca.issue_cert(name, not_after=NOW + timedelta(days=days))
    with open(path, "r+b") as stream:
        stream.write(renewed.cert_chain_pems[0].bytes())
        stream.truncate()


def test_a_few_changed_files_are_kept_as_a_delta_over_the_record(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """A large record is not written again for a few renewed files: what they lstat now
    stands over it, in a delta, until the delta outgrows an eighth of the record."""
    certs = tmp_path / "certs"
    for index in range(40):
        _write(ca, certs / f"site{index:02}.pem", f"site{index:02}.example", 60)
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),)))
    watching.run()
    record, delta = _record_rows(watching)
    assert delta is None

    _rewrite(ca, certs / "site03.pem", "site03.example")
    report, events = watching.run()
    assert ("certificate_renewed", "site03.example") in events
    assert report.files_parsed == 1
    assert _record_rows(watching)[0] == record  # not written again
    assert _record_rows(watching)[1] is not None
    assert watching.carried()  # the delta holds what site03 lstats now

    _rewrite(ca, certs / "site05.pem", "site05.example")
    _rewrite(ca, certs / "site03.pem", "site03.example", days=91)  # again: said once more
    _, events = watching.run()
    renewed = sorted(domain for kind, domain in events if kind == "certificate_renewed")
    assert renewed == ["site03.example", "site05.example"]
    assert _record_rows(watching)[0] == record
    assert watching.carried()

    for index in range(10, 16):  # the delta would pass an eighth: the record made whole
        _rewrite(ca, certs / f"site{index:02}.pem", f"site{index:02}.example")
    report, events = watching.run()
    assert report.files_parsed == 6
    assert len([kind for kind, _ in events if kind == "certificate_renewed"]) == 6
    whole, delta = _record_rows(watching)
    assert (whole != record, delta) == (True, None)
    assert watching.carried()
    assert statrecord.changes(whole) == []


def test_a_path_gone_from_a_directory_is_a_tombstone_in_the_delta(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """lacme ignores a directory without meta.json: its files leave the record by a
    tombstone in the delta, and are not looked at again until the directory changes."""
    names = [f"host{index:02}.example" for index in range(30)]
    store, watching = _lacme(tmp_path, ca, names)
    watching.run()
    record, _ = _record_rows(watching)
    (tmp_path / "lacme" / "certs" / "host07.example" / "meta.json").unlink()
    _, events = watching.run()
    assert events == [("certificate_removed", "host07.example")]
    assert _record_rows(watching)[0] == record
    assert watching.carried()
    save_acme_cert(
        store, ca, ["host07.example"], not_before=NOW, not_after=NOW + timedelta(days=90)
    )
    _, events = watching.run()
    assert ("certificate_issued", "host07.example") in events
    assert watching.carried()


def test_a_delta_stands_over_the_record_path_by_path(tmp_path: Path) -> None:
    """statrecord on its own, over real files: a delta holds what the paths a partial
    scan read lstat now, keeps an older delta's entries it did not read, tombstones a
    path gone, and may hold the store's root alone (its name is empty)."""
    files = [tmp_path / f"f{index:02}.pem" for index in range(40)]
    for path in files:
        path.write_text("x")
    old = time.time() - 3600
    for path in [tmp_path, *files]:
        os.utime(path, (old, old))

    def recorded(*paths: Path) -> statrecord.Recorder:
        recorder = statrecord.Recorder()
        recorder.root(str(tmp_path))
        for path in paths:
            recorder.saw(str(path), os.lstat(path))
        return recorder

    record = recorded(tmp_path, *files).record()
    assert record is not None
    assert statrecord.changes(record) == []
    files[5].write_text("renewed")
    assert statrecord.changes(record) == [(str(files[5]), False)]
    delta = recorded(files[5]).overlay(bytes(record), None, {str(files[5])})
    assert delta is not None
    assert statrecord.changes(record, delta) == []

    files[7].unlink()  # the directory changes with it
    gone = [(str(tmp_path), True), (str(files[7]), False)]
    assert statrecord.changes(record, delta) == gone
    tombstoned = recorded(tmp_path).overlay(bytes(record), delta, {path for path, _ in gone})
    assert tombstoned is not None
    assert statrecord.changes(record, tombstoned) == []  # f05 kept from the older delta
    files[5].write_text("renewed again")
    assert statrecord.changes(record, tombstoned) == [(str(files[5]), False)]

    root_only = recorded(tmp_path).overlay(bytes(record), None, set())
    assert root_only is not None
    assert recorded().overlay(bytes(record), root_only, set()) is not None

    many = recorded(*files[10:20]).overlay(bytes(record), None, set())
    assert many is None  # more than an eighth: the record is to be made whole


def _record_rowid(watching: _Watch) -> int:
    """The stat record's row: INSERT OR REPLACE (a record written again) gives a new one."""
    with sqlite3.connect(watching.config.state_dir / "state.sqlite3") as db:
        (rowid,) = db.execute("SELECT rowid FROM stat_records").fetchone()
    return int(rowid)


def test_a_pass_where_certificates_only_came_due_keeps_the_record_as_it_is(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """Nothing changed, nothing read: the record is not made whole and written again,
    and the next pass is carried by it."""
    certs = tmp_path / "certs"
    for index in range(20):
        _write(ca, certs / f"site{index:02}.pem", f"site{index:02}.example", 60)
    watching = _Watch(tmp_path, PemStore((str(certs / "*.pem"),)))
    watching.run()
    rows, rowid = _record_rows(watching), _record_rowid(watching)
    assert rows[1] is None

    report, events = watching.run(NOW + timedelta(days=31))  # all 20 come due (30d)
    assert report.files_parsed == 0
    assert len([kind for kind, _ in events if kind == "certificate_expiring"]) == 20
    assert (_record_rows(watching), _record_rowid(watching)) == (rows, rowid)
    assert watching.carried(NOW + timedelta(days=31, hours=1))
    _rewrite(ca, certs / "site07.pem", "site07.example")
    _, events = watching.run(NOW + timedelta(days=31, hours=2))
    assert ("certificate_renewed", "site07.example") in events
