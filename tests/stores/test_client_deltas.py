"""A certbot or dehydrated store in which some lineages changed is read only there: each
pass is run twice, over the same files at the same instant, by a watch that goes by its
stat record and by one that reads in full (its record dropped before each pass), and
both say the same events. Every path the first one's reader looks up is counted: no
file of an unchanged lineage is among them. Real certbot and dehydrated against pebble."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lacme_watch.ari.settings import AriSettings
from lacme_watch.detection.renewal import BeforeExpiry
from lacme_watch.observations import Problem
from lacme_watch.plugins import Source
from lacme_watch.reading import guarded, statrecord
from lacme_watch.reading.guarded import GuardedReads
from lacme_watch.run.passes import PassReport
from lacme_watch.sources.stores.certbot import CertbotStore
from lacme_watch.sources.stores.dehydrated import DehydratedStore
from lacme_watch.statedb import StateStore

from ..acme import Certbot, Dehydrated, Pebble
from ..ari_server import AriServer
from ..conftest import PassWatch

pytestmark = pytest.mark.acme  # real certbot and dehydrated against pebble
NOW = datetime.now(UTC).replace(microsecond=0)
NAME = "delta.example.com"
OTHER = f"other.{NAME}"


class _Twin:
    """Two watches of one store: `partial` goes by its stat record, `full` reads it
    whole each pass. run() runs both and says what the first did and looked up."""

    def __init__(
        self,
        tmp_path: Path,
        pebble: Pebble,
        source: Source,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        ari: AriSettings | None = None,
    ) -> None:
        root = pebble.write_root(tmp_path / "pebble-root.pem")
        self.partial = PassWatch(tmp_path / "partial", source)
        self.full = PassWatch(tmp_path / "full", source)
        for watch in (self.partial, self.full):
            watch.config = replace(
                watch.config, ari=ari or AriSettings(enabled=False), trust=(str(root),)
            )
        self.source = source.id
        self.caplog = caplog
        caplog.set_level(logging.DEBUG, logger="lacme_watch")
        self.located: list[str] | None = None
        locate = GuardedReads._locate

        def counted(reader: GuardedReads, path: str) -> tuple[str, os.stat_result] | Problem:
            if self.located is not None:
                self.located.append(path)
            return locate(reader, path)

        monkeypatch.setattr(guarded.GuardedReads, "_locate", counted)

    def configure(self, change: Callable[[PassWatch], None]) -> None:
        for watch in (self.partial, self.full):
            change(watch)

    def settle(self) -> None:
        """The first pass reads the store in full; the second, nothing changed, reads none."""
        assert self.run()[0] == "full"
        assert self.run()[0] == "carried"

    def run(self, at: datetime = NOW) -> tuple[str, list[str], list[str]]:
        """How the first watch read the store (carried, partial, full), the events both
        said (the same: asserted), and the paths the first one's reader looked up."""
        self.caplog.clear()
        self.located = []
        report, envelopes = self.partial.run_pass(at)
        located, self.located = self.located, None
        carried = any(
            r.getMessage() == f"{self.source}: unchanged since the last pass, not read"
            for r in self.caplog.records
        )
        database = self.full.config.state_dir / "state.sqlite3"
        if database.exists():
            with sqlite3.connect(database) as db:
                db.execute("DELETE FROM stat_records")
                db.execute("DELETE FROM stat_deltas")
        whole, full_envelopes = self.full.run_pass(at)
        assert whole.carried == ()  # read in full
        events = sorted(repr(e.event) for e in envelopes)
        assert events == sorted(repr(e.event) for e in full_envelopes)
        assert _problems(report) == _problems(whole)
        assert report.certificates == whole.certificates
        how = "carried" if carried else "partial" if self.source in report.carried else "full"
        return (
            how,
            [e.event.kind + " " + str(getattr(e.event, "domain", "")) for e in envelopes],
            located,
        )


def _problems(report: PassReport) -> list[str]:
    return sorted(repr(problem) for _, problem in report.problems)


def _of(located: list[str], name: str) -> list[str]:
    """The looked-up paths that belong to lineage `name` (live/, archive/, renewal/, or
    dehydrated's domain directory)."""
    return [path for path in located if f"/{name}/" in path or path.endswith(f"/{name}.conf")]


@pytest.fixture(autouse=True)
def _no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago are trusted (the racy case below has it back)."""
    monkeypatch.setattr(statrecord, "RACY", -3600.0)


@pytest.fixture
def certbot(pebble: Pebble, tmp_path: Path) -> Certbot:
    client = Certbot(pebble, tmp_path / "certbot")
    for name in (NAME, OTHER):
        issued = client.issue(name)
        assert issued.returncode == 0, issued.stderr
    return client


@pytest.fixture
def twin(
    tmp_path: Path,
    certbot: Certbot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> _Twin:
    watching = _Twin(
        tmp_path, certbot.pebble, CertbotStore(str(certbot.config_dir)), monkeypatch, caplog
    )
    watching.settle()
    return watching


def test_a_certbot_renewal_reads_that_lineage_alone(certbot: Certbot, twin: _Twin) -> None:
    """archive/NAME/cert2.pem added, live/NAME/ re-pointed, renewal/NAME.conf replaced
    (renewal/ changed with it), .certbot.lock come and gone in the config directory."""
    before = os.stat(certbot.config_dir).st_mtime_ns
    assert certbot.renew(NAME).returncode == 0
    assert os.stat(certbot.config_dir).st_mtime_ns != before  # its lock file came and went
    how, events, located = twin.run()
    assert (how, events) == ("partial", [f"certificate_renewed {NAME}"])
    assert _of(located, NAME)
    assert not _of(located, OTHER)
    assert twin.run()[0] == "carried"


def test_a_renewal_conf_edited_in_place_moves_the_policy(certbot: Certbot, twin: _Twin) -> None:
    """renew_before_expiry lengthened past the certificate's life: renewal_overdue, as a
    full read says it, from NAME's lineage alone."""
    conf = certbot.config_dir / "renewal" / f"{NAME}.conf"
    text = conf.read_text().replace(
        "# renew_before_expiry = 30 days", "renew_before_expiry = 3650 days"
    )
    with open(conf, "r+") as stream:  # in place: renewal/ itself does not change
        stream.write(text)
        stream.truncate()
    how, events, located = twin.run(NOW + timedelta(days=2))
    assert (how, events) == ("partial", [f"renewal_overdue {NAME}"])
    assert not _of(located, OTHER)
    with StateStore(twin.partial.config.state_dir) as store:
        policy = store.inventory_of(twin.source)[NAME].renewal
    assert isinstance(policy, BeforeExpiry)
    assert policy.spelled == "3650 days"


def test_a_link_pointed_back_at_an_older_certificate_is_read(certbot: Certbot, twin: _Twin) -> None:
    """After a renewal, live/NAME/ pointed back at version 1 (a rollback): only the
    links changed, their targets are as old as they were."""
    assert certbot.renew(NAME).returncode == 0
    assert twin.run()[0] == "partial"
    live = certbot.config_dir / "live" / NAME
    for kind in ("cert", "chain", "fullchain", "privkey"):
        (live / f"{kind}.pem").unlink()
        (live / f"{kind}.pem").symlink_to(f"../../archive/{NAME}/{kind}1.pem")
    how, events, located = twin.run()
    assert how == "partial"
    assert f"certificate_renewed {NAME}" not in events  # an older one is no renewal
    assert not _of(located, OTHER)


def test_a_new_certbot_lineage_and_a_deleted_one_say_what_a_full_read_says(
    certbot: Certbot, twin: _Twin
) -> None:
    assert certbot.issue(f"new.{NAME}").returncode == 0
    _, events, _ = twin.run()
    assert events == [f"certificate_issued new.{NAME}"]
    assert twin.run()[0] == "carried"
    assert certbot.run("delete", "--cert-name", OTHER).returncode == 0
    how, events, located = twin.run()
    # The intermediate was observed in NAME's bundle (the first), which stays: read alone.
    assert (how, events) == ("partial", [f"certificate_removed {OTHER}"])
    assert not _of(located, NAME)
    assert certbot.run("delete", "--cert-name", NAME).returncode == 0
    how, events, _ = twin.run()  # the intermediate's bundle: a full read decides
    assert (how, events) == ("full", [f"certificate_removed {NAME}"])
    assert twin.run()[0] == "carried"


def test_certbot_lineages_without_chains_come_and_go_alone(certbot: Certbot, twin: _Twin) -> None:
    """With `chain: leaf` no bundle holds an intermediate: a new, a deleted and a renamed
    lineage are each read alone."""
    twin.configure(lambda watch: setattr(watch, "config", replace(watch.config, chain=False)))
    assert twin.run()[0] == "full"  # another configuration: another record key
    assert certbot.issue(f"new.{NAME}").returncode == 0
    how, events, located = twin.run()
    assert (how, events) == ("partial", [f"certificate_issued new.{NAME}"])
    assert not _of(located, OTHER)
    assert not _of(located, NAME)
    assert certbot.run("delete", "--cert-name", f"new.{NAME}").returncode == 0
    how, events, located = twin.run()
    assert (how, events) == ("partial", [f"certificate_removed new.{NAME}"])
    assert not _of(located, OTHER)

    # Renamed by hand: its three places moved, its links made anew to the new name.
    config = certbot.config_dir
    renamed = f"renamed.{NAME}"
    (config / "live" / NAME).rename(config / "live" / renamed)
    (config / "archive" / NAME).rename(config / "archive" / renamed)
    (config / "renewal" / f"{NAME}.conf").rename(config / "renewal" / f"{renamed}.conf")
    for link in (config / "live" / renamed).glob("*.pem"):
        target = os.readlink(link).replace(f"/{NAME}/", f"/{renamed}/")
        link.unlink()
        link.symlink_to(target)
    how, events, located = twin.run()
    assert how == "partial"  # a new lineage, and a gone one, of the same certificate
    assert sorted(events) == [f"certificate_issued {NAME}", f"certificate_removed {NAME}"]
    assert not _of(located, OTHER)

    orphan = config / "renewal" / "gone.example.com.conf"  # a conf without its lineage
    orphan.write_text((config / "renewal" / f"{OTHER}.conf").read_text())
    assert twin.run()[0] == "partial"
    orphan.unlink()
    how, _, located = twin.run()
    assert how == "partial"
    assert not _of(located, OTHER)


def test_a_renewal_just_before_a_pass_is_read_again_alone(
    certbot: Certbot, twin: _Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the racy window back: NAME's files changed within it are looked at again
    next pass (and said nothing more), other.NAME's are not."""
    monkeypatch.setattr(statrecord, "RACY", 2.0)
    assert twin.run()[0] in ("carried", "partial")
    assert certbot.renew(NAME).returncode == 0
    how, events, _ = twin.run()
    assert (how, events) == ("partial", [f"certificate_renewed {NAME}"])
    how, events, located = twin.run()
    assert (how, events) == ("partial", [])
    assert _of(located, NAME)
    assert not _of(located, OTHER)


def test_an_ari_enabled_certbot_store_reads_its_renewal_alone(
    tmp_path: Path,
    certbot: Certbot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The record's key holds the windows' ends of the store's certificates: unchanged
    by a renewal, so the renewed lineage is read alone; the new certificate's window,
    once the round learns it, is NAME's policy on the next (full) read."""
    ari = AriServer()
    try:
        for conf in (certbot.config_dir / "renewal").glob("*.conf"):
            text = conf.read_text()
            conf.write_text(text.replace(certbot.pebble.directory, ari.directory))
        for name in (NAME, OTHER):
            ari.add(certbot.config_dir / "live" / name / "cert.pem")
        watching = _Twin(
            tmp_path,
            certbot.pebble,
            CertbotStore(str(certbot.config_dir)),
            monkeypatch,
            caplog,
            AriSettings(),
        )
        watching.run()
        watching.run()  # the windows' ends are the leaves' policies now: read in full
        assert watching.run()[0] == "carried"
        renewed = certbot.run(
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--cert-name",
            NAME,
            "--http-01-port",
            str(certbot.pebble.http_port),
            "--server",
            certbot.pebble.directory,
        )
        assert renewed.returncode == 0, renewed.stderr
        how, events, located = watching.run()
        assert (how, events) == ("partial", [f"certificate_renewed {NAME}"])
        assert not _of(located, OTHER)
    finally:
        ari.stop()


@pytest.fixture
def dehydrated(pebble: Pebble, tmp_path: Path) -> Dehydrated:
    client = Dehydrated(pebble, tmp_path / "dehydrated")
    client.setup()
    for name in (NAME, OTHER):
        issued = client.issue(name)
        assert issued.returncode == 0, issued.stderr
    return client


def test_dehydrated_renewals_new_and_removed_domains_say_what_a_full_read_says(
    tmp_path: Path,
    dehydrated: Dehydrated,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watching = _Twin(
        tmp_path, dehydrated.pebble, DehydratedStore(str(dehydrated.certs)), monkeypatch, caplog
    )
    watching.settle()
    first = {
        link.name: os.readlink(link)
        for link in (dehydrated.certs / NAME).glob("*.pem")
        if link.is_symlink()
    }
    assert dehydrated.issue(NAME, extra=("--force",)).returncode == 0  # links re-pointed
    how, events, located = watching.run()
    assert (how, events) == ("partial", [f"certificate_renewed {NAME}"])
    assert _of(located, NAME)
    assert not _of(located, OTHER)
    assert watching.run()[0] == "carried"

    for name, target in first.items():  # pointed back at the first run's files
        link = dehydrated.certs / NAME / name
        link.unlink()
        link.symlink_to(target)
    how, events, located = watching.run()
    assert how == "partial"
    assert not _of(located, OTHER)

    assert dehydrated.issue(f"new.{NAME}").returncode == 0
    _, events, _ = watching.run()
    assert events == [f"certificate_issued new.{NAME}"]
    for directory in (dehydrated.certs / NAME).iterdir():
        directory.unlink()
    (dehydrated.certs / NAME).rmdir()
    how, events, located = watching.run()
    assert events == [f"certificate_removed {NAME}"]
    assert watching.run()[0] == "carried"


def test_a_link_into_another_lineage_is_no_lineage_of_its_own(
    certbot: Certbot, twin: _Twin
) -> None:
    """live/NAME/ pointed by hand into archive/other.NAME/: a later change to that file
    is no change of other.NAME alone, and the store is read in full."""
    live = certbot.config_dir / "live" / NAME
    for kind in ("cert", "fullchain"):
        (live / f"{kind}.pem").unlink()
        (live / f"{kind}.pem").symlink_to(f"../../archive/{OTHER}/{kind}1.pem")
    assert twin.run()[0] == "partial"  # live/NAME/ changed: NAME read again
    assert twin.run()[0] == "carried"
    os.chmod(certbot.config_dir / "archive" / OTHER / "fullchain1.pem", 0o640)
    assert twin.run()[0] == "full"


def test_a_dehydrated_store_with_its_config_in_basedir_reads_a_renewal_alone(
    tmp_path: Path,
    dehydrated: Dehydrated,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`config:` in BASEDIR, where each dehydrated run leaves and removes its lock
    file: a renewal is still read alone; RENEW_DAYS edited there is every domain's
    policy, read in full."""
    config = dehydrated.root / "config"
    source = DehydratedStore(str(dehydrated.certs), str(config))
    watching = _Twin(tmp_path, dehydrated.pebble, source, monkeypatch, caplog)
    watching.settle()
    assert dehydrated.issue(NAME, extra=("--force",)).returncode == 0
    how, events, located = watching.run()
    assert (how, events) == ("partial", [f"certificate_renewed {NAME}"])
    assert not _of(located, OTHER)
    with open(config, "a") as stream:
        stream.write("RENEW_DAYS=3650\n")
    how, events, _ = watching.run(NOW + timedelta(days=2))
    assert how == "full"
    assert sorted(events) == [f"renewal_overdue {NAME}", f"renewal_overdue {OTHER}"]
    assert watching.run(NOW + timedelta(days=2))[0] == "carried"
