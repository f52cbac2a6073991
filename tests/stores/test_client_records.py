"""certbot and dehydrated stores keep a stat record: unchanged, a pass reads none of
their files; every change a real client makes (a renewal, a new lineage, a removed
one, a rewritten renewal conf) is read and reported on the next pass. Real certbot
and dehydrated against pebble; ARI answers from tests/ari_server.py."""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import trustme
from lacme import FileStore

from lacme_watch.ari.settings import AriSettings
from lacme_watch.detection.renewal import BeforeExpiry, RenewAt
from lacme_watch.detection.thresholds import Policy
from lacme_watch.plugins import Source
from lacme_watch.reading import statrecord
from lacme_watch.run.passes import PassReport
from lacme_watch.sources.stores.certbot import CertbotStore
from lacme_watch.sources.stores.dehydrated import DehydratedStore
from lacme_watch.sources.stores.lacme import LacmeStore
from lacme_watch.statedb import StateStore

from ..acme import Certbot, Dehydrated, Pebble
from ..ari_server import AriServer
from ..conftest import PassWatch, kind_and_domain, save_acme_cert

pytestmark = pytest.mark.acme  # real certbot and dehydrated against pebble
NOW = datetime.now(UTC).replace(microsecond=0)
NAME = "record.example.com"


@pytest.fixture(autouse=True)
def _no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago are trusted (statrecord's racy rule has its own test)."""
    monkeypatch.setattr(statrecord, "RACY", -3600.0)


class _Watch(PassWatch):
    """run_pass over one store, with the events each pass recorded and whether the
    store was read."""

    def __init__(
        self,
        tmp_path: Path,
        source: Source,
        caplog: pytest.LogCaptureFixture,
        ari: AriSettings | None = None,
        trust: Path | None = None,
    ) -> None:
        super().__init__(tmp_path / "state", source)
        self.config = replace(
            self.config,
            ari=ari or AriSettings(enabled=False),
            trust=(str(trust),) if trust else (),
        )
        self.caplog = caplog
        self.said: list[str] = []
        """What the last pass logged of its scans."""
        caplog.set_level(logging.DEBUG, logger="lacme_watch")

    def run(self, at: datetime = NOW) -> tuple[PassReport, list[tuple[str, str]], bool]:
        """The report, the events (kind, domain) and whether the store went unread."""
        self.caplog.clear()
        report, envelopes = self.run_pass(at)
        said = [r.getMessage() for r in self.caplog.records if r.name == "lacme_watch.run.scans"]
        self.said = said
        unread = f"{self.source}: unchanged since the last pass, not read" in said
        return report, kind_and_domain(envelopes), unread

    def shown_again(self, report: PassReport, windows: int) -> bool:
        """Whether the last pass showed detect() `windows` leaves again whose CA's window
        moved, from the state database, reading no file."""
        moved = f"{self.source}: {windows} renewal windows moved, shown again"
        return moved in self.said and report.files_parsed == 0 and self.source in report.carried

    def carried(self, at: datetime = NOW) -> bool:
        report, _, unread = self.run(at)
        assert report.exit_code == 0, report.problems
        return unread and report.carried == (self.source,) and report.files_parsed == 0


def _watch(
    tmp_path: Path,
    pebble: Pebble,
    source: Source,
    caplog: pytest.LogCaptureFixture,
    ari: AriSettings | None = None,
) -> _Watch:
    """A watch that trusts pebble's root, as its leaves' chains need."""
    root = pebble.write_root(tmp_path / "pebble-root.pem")
    return _Watch(tmp_path, source, caplog, ari, root)


_Client = TypeVar("_Client", Certbot, Dehydrated)


def _issued_both(client: _Client) -> _Client:
    """The client, having issued NAME and other.NAME from pebble."""
    for name in (NAME, f"other.{NAME}"):
        issued = client.issue(name)
        assert issued.returncode == 0, issued.stderr
    return client


@pytest.fixture
def certbot(pebble: Pebble, tmp_path: Path) -> Certbot:
    return _issued_both(Certbot(pebble, tmp_path / "certbot"))


def test_an_unchanged_certbot_store_is_not_read_and_a_renewal_is(
    tmp_path: Path, certbot: Certbot, caplog: pytest.LogCaptureFixture
) -> None:
    watching = _watch(tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), caplog)
    report, events, unread = watching.run()
    assert (report.certificates, events, unread) == (3, [], False)  # pebble's intermediate
    assert watching.carried()
    report, _, _ = watching.run()
    assert report.certificates == 3  # counted from the state database

    idle = certbot.run("renew", "--no-random-sleep-on-renew")  # nothing due: no change
    assert idle.returncode == 0, idle.stderr
    assert "No renewals were attempted" in idle.stdout + idle.stderr
    assert watching.carried()  # its lock file came and went in the config directory

    renewed = certbot.renew(NAME)  # archive/NAME/cert2.pem, live/NAME/*.pem re-pointed
    assert renewed.returncode == 0, renewed.stderr
    _, events, unread = watching.run()
    assert events == [("certificate_renewed", NAME)]
    assert not unread
    assert watching.carried()


def test_a_new_and_a_deleted_certbot_lineage_are_noticed(
    tmp_path: Path, certbot: Certbot, caplog: pytest.LogCaptureFixture
) -> None:
    watching = _watch(tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), caplog)
    watching.run()
    assert watching.carried()

    assert certbot.issue(f"new.{NAME}").returncode == 0
    report, events, unread = watching.run()
    assert (events, unread, report.certificates) == (
        [("certificate_issued", f"new.{NAME}")],
        False,
        4,  # with pebble's intermediate
    )
    assert watching.carried()

    deleted = certbot.run("delete", "--cert-name", f"other.{NAME}")
    assert deleted.returncode == 0, deleted.stderr
    report, events, unread = watching.run()
    assert (events, unread, report.certificates) == (
        [("certificate_removed", f"other.{NAME}")],
        False,
        3,
    )
    assert watching.carried()

    # live/ emptied: no lineage's path leads through it, yet a new one there is seen.
    for name in (NAME, f"new.{NAME}"):
        assert certbot.run("delete", "--cert-name", name).returncode == 0
    report, _, _ = watching.run()
    assert report.certificates == 0
    assert watching.carried()
    assert certbot.issue(NAME).returncode == 0
    _, events, unread = watching.run()
    assert (events, unread) == ([("certificate_issued", NAME)], False)


def test_a_rewritten_renewal_conf_is_read_and_its_policy_applied(
    tmp_path: Path, certbot: Certbot, caplog: pytest.LogCaptureFixture
) -> None:
    """renew_before_expiry moved in renewal/NAME.conf: the next pass reads the store and
    the leaf's renewal policy is the conf's (renewal_overdue follows it)."""
    watching = _watch(tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), caplog)
    watching.run()
    assert watching.carried()
    conf = certbot.config_dir / "renewal" / f"{NAME}.conf"
    text = conf.read_text()
    conf.write_text(text.replace("# renew_before_expiry = 30 days", "renew_before_expiry = 9 days"))
    _, _, unread = watching.run()
    assert not unread
    with StateStore(watching.config.state_dir) as store:
        policy = store.inventory_of(watching.source)[NAME].renewal
    assert policy == BeforeExpiry(
        before=timedelta(days=9), origin="certbot renew_before_expiry", spelled="9 days"
    )
    assert watching.carried()
    orphan = certbot.config_dir / "renewal" / "gone.example.com.conf"
    orphan.write_text(text)  # a conf without its live/ lineage: reported
    report, _, unread = watching.run()
    assert not unread
    assert any(problem.lineage == "gone.example.com" for _, problem in report.problems)


def test_a_certbot_store_with_its_log_keeps_no_record(
    tmp_path: Path, certbot: Certbot, caplog: pytest.LogCaptureFixture
) -> None:
    """certbot appends to letsencrypt.log at every run: such a store is read each pass."""
    source = CertbotStore(str(certbot.config_dir), str(certbot.log))
    watching = _watch(tmp_path, certbot.pebble, source, caplog)
    watching.run()
    report, _, unread = watching.run()
    assert not unread
    assert report.carried == ()
    assert any(
        r.getMessage() == f"{source.id}: read in full, it keeps no stat record"
        for r in caplog.records
    )


@pytest.fixture
def dehydrated(pebble: Pebble, tmp_path: Path) -> Dehydrated:
    client = Dehydrated(pebble, tmp_path / "dehydrated")
    client.setup()
    return _issued_both(client)


def test_an_unchanged_dehydrated_store_is_not_read_and_a_renewal_is(
    tmp_path: Path, dehydrated: Dehydrated, caplog: pytest.LogCaptureFixture
) -> None:
    watching = _watch(tmp_path, dehydrated.pebble, DehydratedStore(str(dehydrated.certs)), caplog)
    report, events, _ = watching.run()
    assert (report.certificates, events) == (3, [])  # with pebble's intermediate
    assert watching.carried()

    renewed = dehydrated.issue(NAME, extra=("--force",))  # cert.pem re-pointed
    assert renewed.returncode == 0, renewed.stderr
    _, events, unread = watching.run()
    assert (events, unread) == ([("certificate_renewed", NAME)], False)
    assert watching.carried()

    assert dehydrated.issue(f"new.{NAME}").returncode == 0
    _, events, unread = watching.run()
    assert (events, unread) == ([("certificate_issued", f"new.{NAME}")], False)
    shutil.rmtree(dehydrated.certs / f"other.{NAME}")
    _, events, unread = watching.run()
    assert (events, unread) == ([("certificate_removed", f"other.{NAME}")], False)
    assert watching.carried()


def test_a_dehydrated_domain_whose_first_run_failed_is_read_once_it_succeeds(
    tmp_path: Path, dehydrated: Dehydrated, caplog: pytest.LogCaptureFixture
) -> None:
    """A domain directory with no cert.pem yet (a failed first run) is looked in:
    the cert.pem a later run links there is seen, though nothing else changed."""
    pending = dehydrated.certs / f"pending.{NAME}"
    pending.mkdir()
    (pending / "cert-1.pem").write_bytes(b"")  # what a failed run leaves
    watching = _watch(tmp_path, dehydrated.pebble, DehydratedStore(str(dehydrated.certs)), caplog)
    watching.run()
    assert watching.carried()
    source = dehydrated.certs / NAME
    for name in ("cert.pem", "fullchain.pem"):
        (pending / name).symlink_to(source / name)
    _, events, unread = watching.run()
    assert not unread
    assert ("certificate_issued", NAME) in events  # the same certificate, a second lineage


# ARI: the CA's answers for a carried store are still asked for, judged and kept.


@pytest.fixture
def ari() -> Iterator[AriServer]:
    server = AriServer()
    yield server
    server.stop()


def _asking(certbot: Certbot, server: str) -> None:
    """Every renewal conf's `server =` set to `server` (the ARI server's directory)."""
    for conf in (certbot.config_dir / "renewal").glob("*.conf"):
        text = conf.read_text()
        conf.write_text(re.sub(r"^server = .*$", f"server = {server}", text, flags=re.MULTILINE))


def _ari_rows(watching: _Watch) -> int:
    with sqlite3.connect(watching.config.state_dir / "state.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM ari_certificates").fetchone()[0])


def test_a_carried_certbot_store_is_still_asked_and_its_windows_judged(
    tmp_path: Path, certbot: Certbot, ari: AriServer, caplog: pytest.LogCaptureFixture
) -> None:
    _asking(certbot, ari.directory)
    identifier = ari.add(certbot.config_dir / "live" / NAME / "cert.pem")
    other = ari.add(certbot.config_dir / "live" / f"other.{NAME}" / "cert.pem")
    ari.retry_after = None  # asked again after `interval`
    settings = AriSettings(interval=timedelta(hours=1))
    watching = _watch(
        tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), caplog, settings
    )

    report, events, unread = watching.run()  # read in full; both asked, windows learnt
    assert (events, unread, report.ari_requests) == ([], False, 3)  # the directory too
    report, events, _ = watching.run()  # the windows become the leaves' renewal policy:
    assert watching.shown_again(report, 2)  # from the database, no file read
    assert events == []
    assert watching.carried()
    assert _ari_rows(watching) == 2  # a carried store's records are kept

    # Due again: asked although the store is not read. The CA moved the window, and
    # it closed a day ago: renewal_window_moved and renewal_overdue (policy ari), by
    # the round, of a store no file of which was read.
    ari.move(identifier, NOW - timedelta(days=3), NOW - timedelta(days=2), "https://ca/why")
    later = NOW + timedelta(hours=2)
    report, events, unread = watching.run(later)
    assert unread
    assert report.carried == (watching.source,)
    assert report.ari_requests == 2
    assert sorted(events) == [("renewal_overdue", NAME), ("renewal_window_moved", NAME)]
    overdue = next(e.event for e in watching.sink.envelopes if e.event.kind == "renewal_overdue")
    assert getattr(overdue, "policy", None) == "ari"
    assert _ari_rows(watching) == 2

    # The moved window's end is NAME's renewal policy from the next pass (NAME alone is
    # shown to detect() again, no file read); nothing is said twice.
    report, events, _ = watching.run(later)
    assert watching.shown_again(report, 1)
    assert events == []
    with StateStore(watching.config.state_dir) as store:
        policy = store.inventory_of(watching.source)[NAME].renewal
    assert isinstance(policy, RenewAt)
    assert (policy.origin, policy.at) == ("ari", NOW - timedelta(days=2))
    assert watching.carried(later)
    _, events, _ = watching.run(later + timedelta(hours=3))  # asked again: the same window
    assert events == []
    assert watching.carried(later + timedelta(hours=3))
    assert _ari_rows(watching) == 2
    assert ari.windows[other].end > later  # the other lineage's: nothing to say


def _record_rowid(watching: _Watch) -> int:
    """The stat record's row: INSERT OR REPLACE (a record written again) gives a new one."""
    with sqlite3.connect(watching.config.state_dir / "state.sqlite3") as db:
        (rowid,) = db.execute("SELECT rowid FROM stat_records").fetchone()
    return int(rowid)


def test_a_certbot_store_whose_certificates_only_came_due_is_not_read(
    tmp_path: Path, certbot: Certbot, caplog: pytest.LogCaptureFixture
) -> None:
    """A threshold crossed, nothing changed: certificate_expiring from the state
    database, no file read, the stat record kept as it is (a full read writes it anew)."""
    watching = _watch(tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), caplog)
    watching.run()
    rowid = _record_rowid(watching)
    with StateStore(watching.config.state_dir) as store:
        expires = store.inventory_of(watching.source)[NAME].certificate.not_after
    due = expires - timedelta(days=29, hours=12)  # both cross 30 days, not yet overdue
    report, events, unread = watching.run(due)
    assert not unread  # came due: not carried as it is
    assert sorted(events) == [
        ("certificate_expiring", f"other.{NAME}"),
        ("certificate_expiring", NAME),
    ]
    assert report.files_parsed == 0
    assert _record_rowid(watching) == rowid  # no reader: the record stands as loaded
    assert watching.carried(due + timedelta(hours=1))


def test_a_window_that_closes_between_questions_is_overdue_in_a_pass_that_reads_nothing(
    tmp_path: Path, certbot: Certbot, ari: AriServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Not due to be asked again (Retry-After: 6 h), the window closes and its grace
    passes: renewal_overdue (policy ari) once, no file read and no request made."""
    _asking(certbot, ari.directory)
    identifier = ari.add(certbot.config_dir / "live" / NAME / "cert.pem")
    ari.add(certbot.config_dir / "live" / f"other.{NAME}" / "cert.pem")
    ari.move(identifier, NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    watching = _watch(
        tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), caplog, AriSettings()
    )
    watching.config = replace(watching.config, policy=Policy(overdue_grace=timedelta(hours=1)))
    _, events, _ = watching.run()
    assert events == [("renewal_window_moved", NAME)]  # early: before two thirds
    report, _, _ = watching.run()  # the windows' ends are the leaves' policies now
    assert watching.shown_again(report, 2)
    assert watching.carried()

    report, events, _ = watching.run(NOW + timedelta(hours=3))
    assert events == [("renewal_overdue", NAME)]
    assert (report.files_parsed, report.ari_requests) == (0, 0)
    overdue = watching.sink.envelopes[-1].event
    assert getattr(overdue, "policy", None) == "ari"
    assert watching.carried(NOW + timedelta(hours=4))  # said once
    assert _ari_rows(watching) == 2


def test_another_stores_new_windows_leave_a_store_carried(
    tmp_path: Path, certbot: Certbot, ari: AriServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A lacme store beside the certbot store whose CA answers: the windows certbot's
    leaves get are not the lacme store's, which stays unread while certbot's leaves are
    shown again."""
    _asking(certbot, ari.directory)
    for name in (NAME, f"other.{NAME}"):
        ari.add(certbot.config_dir / "live" / name / "cert.pem")
    lacme = tmp_path / "lacme"
    save_acme_cert(
        FileStore(lacme),
        trustme.CA(),
        ["lacme.example.com"],
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=89),
    )
    beside = LacmeStore(str(lacme))
    watching = _watch(
        tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), caplog, AriSettings()
    )
    watching.config = replace(watching.config, stores=(*watching.config.stores, beside))
    report, _, _ = watching.run()  # both read; certbot's leaves get their windows
    assert report.carried == ()
    report, _, _ = watching.run()  # certbot's leaves' policies moved: shown again
    assert watching.shown_again(report, 2)
    assert report.carried == (watching.source, beside.id)
    report, _, _ = watching.run()
    assert report.carried == (watching.source, beside.id)
