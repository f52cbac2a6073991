"""statedb/: created private, versioned, migrated; the outbox never loses an event."""

from __future__ import annotations

import json
import sqlite3
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.config import Config
from lacme_watch.detection.detect import SourceSnapshot
from lacme_watch.detection.renewal import BeforeExpiry, LifetimeLeft, RenewAt
from lacme_watch.dispatch.delivery import RetryPolicy, SinkRoute, drain
from lacme_watch.errors import StoreError
from lacme_watch.events import Heartbeat
from lacme_watch.events.cloudevents import wrap
from lacme_watch.observations import Observation
from lacme_watch.reading.reader import CertificateReader
from lacme_watch.run.passes import run_pass
from lacme_watch.sources.stores.pem import PemStore
from lacme_watch.statedb import SCHEMA_VERSION, SourceChange, StateStore, identity
from lacme_watch.statedb.files import create_database
from lacme_watch.statedb.rows import ROW_VERSION, decode_row, observation_row
from lacme_watch.testing import FailingSink, RecordingSink

from .conftest import store_config
from .factories import observation

NOW = datetime.now(UTC).replace(microsecond=0)


def test_state_dir_is_created_private(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    with StateStore(state):
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    with StateStore(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()

    with pytest.raises(StoreError, match="upgrade lacme-watch"):
        StateStore(tmp_path)


def test_a_fresh_database_has_the_schema_and_a_later_open_writes_nothing(
    tmp_path: Path,
) -> None:
    with StateStore(tmp_path):
        pass
    watcher = sqlite3.connect(tmp_path / "state.sqlite3")  # sees other connections' commits
    meta = dict(watcher.execute("SELECT key, value FROM meta WHERE key IN ('schema', 'id_salt')"))
    assert meta["schema"] == str(SCHEMA_VERSION)
    tables = {row[0] for row in watcher.execute("SELECT name FROM sqlite_master")}
    assert {"meta", "sources", "certificates", "lineage_index", "events", "outbox"} <= tables
    version = watcher.execute("PRAGMA data_version").fetchone()[0]

    with StateStore(tmp_path):  # cron's every start: the schema is current
        pass

    assert watcher.execute("PRAGMA data_version").fetchone()[0] == version  # nothing committed
    assert (
        dict(watcher.execute("SELECT key, value FROM meta WHERE key IN ('schema', 'id_salt')"))
        == meta
    )
    watcher.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")  # an older lacme-watch's
    watcher.commit()

    with StateStore(tmp_path):
        pass

    assert watcher.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    watcher.close()


def test_a_new_database_is_put_in_place_whole_in_wal_mode(tmp_path: Path) -> None:
    with StateStore(tmp_path):
        pass
    database = tmp_path / "state.sqlite3"
    assert database.read_bytes()[18:20] == b"\x02\x02"  # WAL, as the file's header keeps it
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.sqlite3"]  # nothing left over


def test_a_new_database_is_written_whole_before_it_is_put_in_place(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite3"

    def populate(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        assert not database.exists()  # built aside: nobody sees it half-written

    create_database(database, populate=populate)
    placed = sqlite3.connect(database)
    assert placed.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert placed.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    placed.close()

    def failing(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE t (x)")
        raise KeyError("populate failed")

    other = tmp_path / "other.sqlite3"
    with pytest.raises(KeyError):
        create_database(other, populate=failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.sqlite3"]


def test_an_unwritable_state_dir_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    expected = f"state_dir {blocker}/state is not a directory [(]{blocker} is a file"
    with pytest.raises(StoreError, match=expected) as caught:
        StateStore(blocker / "state")
    assert caught.value.exit_code == 2


def _certs(tmp_path: Path, days_left: int, lifetime: int = 90) -> Path:
    """A folder with one certificate for a.example expiring in `days_left` days."""
    certs = tmp_path / "certs"
    certs.mkdir()
    leaf = trustme.CA().issue_cert(
        "a.example",
        not_before=NOW + timedelta(days=days_left - lifetime),
        not_after=NOW + timedelta(days=days_left),
    )
    (certs / "a.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    return certs


def _config(tmp_path: Path, certs: Path, *sinks: RecordingSink) -> Config:
    return store_config(tmp_path / "state", PemStore((str(certs / "*.pem"),)), *sinks)


def test_a_failing_sink_keeps_its_events_queued_and_never_blocks_the_others(
    tmp_path: Path,
) -> None:
    certs = _certs(tmp_path, days_left=3)
    good = RecordingSink("good")
    bad = FailingSink("bad", failures=1)
    config = _config(tmp_path, certs, good, bad)

    with StateStore(config.state_dir) as store:
        first = run_pass(config, store, NOW)
        assert first.exit_code == 1
        assert first.delivery.failures == {"bad": "failure 1 of 1"}
        assert good.kinds == ["certificate_expiring"]
        assert [row.sink for row in store.pending()] == ["bad"]
        assert store.outbox_counts() == {("good", "delivered"): 1, ("bad", "retrying"): 1}

        # Not yet due: the retry waits for its backoff, and the pass says it is not done.
        second = run_pass(config, store, NOW + timedelta(seconds=1))
        assert (second.exit_code, bad.kinds) == (1, [])
        backlog = second.delivery.retrying["bad"]
        assert (backlog.events, backlog.last_error) == (1, "failure 1 of 1")
        assert backlog.next_attempt > NOW + timedelta(seconds=1)

        third = run_pass(config, store, NOW + timedelta(hours=2))
        assert third.exit_code == 0
        assert bad.envelopes == good.envelopes  # the same events, the same ids
        assert store.pending() == []


def test_undelivered_events_age_out_loudly(tmp_path: Path) -> None:
    certs = _certs(tmp_path, days_left=25)
    config = _config(tmp_path, certs, FailingSink("bad"))

    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)
        report = run_pass(config, store, NOW + timedelta(days=8))

        assert report.exit_code == 1
        assert [row.envelope.event.kind for row in report.delivery.expired] == [
            "certificate_expiring"
        ]
        assert store.pending() == []
        assert [
            {sink: d.state for sink, d in entry.deliveries.items()} for entry in store.history()
        ] == [{"bad": "expired"}]
        assert store.outbox_counts() == {("bad", "expired"): 1}


def test_snapshot_and_outbox_commit_together(tmp_path: Path) -> None:
    """If the transaction fails, neither the new state nor its events are kept."""
    certs = _certs(tmp_path, days_left=2)
    sink = RecordingSink("rec")
    config = _config(tmp_path, certs, sink)
    with StateStore(config.state_dir) as store:
        # A real fault inside the transaction: another connection holds the write lock.
        blocker = sqlite3.connect(config.state_dir / "state.sqlite3", timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        store._db.execute("PRAGMA busy_timeout = 100")
        with pytest.raises(StoreError):
            run_pass(config, store, NOW)
        blocker.rollback()
        blocker.close()
        assert store.history() == []
        assert store.load_snapshot(config.stores[0].id) is None

        report = run_pass(config, store, NOW)  # the pass repeats, nothing lost
        assert [e.event.kind for e in report.envelopes] == ["certificate_expiring"]
        assert sink.kinds == ["certificate_expiring"]


def test_schema_1_stale_deployment_marks_move_to_their_own_table(tmp_path: Path) -> None:
    """Schema 1 kept them in `reported` as "stale:<newer>"; they must not re-announce."""
    with StateStore(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.execute("DROP TABLE reported")  # schema 1's: one row per mark, with a rowid
    db.execute(
        "CREATE TABLE reported (source TEXT NOT NULL, lineage TEXT NOT NULL,"
        " fingerprint TEXT NOT NULL, threshold TEXT NOT NULL,"
        " PRIMARY KEY (source, lineage, fingerprint, threshold))"
    )
    db.execute("INSERT INTO sources VALUES ('tls:x', 1, 0, NULL)")
    db.executemany(
        "INSERT INTO reported VALUES ('tls:x', 'tls:h:443', 'old', ?)", [("stale:new",), ("30d",)]
    )
    db.commit()
    db.close()

    with StateStore(tmp_path) as store:
        snapshot = store.load_snapshot("tls:x")
    assert snapshot is not None
    assert snapshot.stale == {("tls:h:443", "old", "new")}
    assert snapshot.reported == {("tls:h:443", "old", "30d")}
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    db.close()


def test_a_batch_mixing_new_resent_and_clashing_ids_keeps_its_order(tmp_path: Path) -> None:
    """New ids go in one statement, known ones one by one: the outbox still holds the
    batch in its order, a resend once, a clash under its new id in its place."""

    def beat(events: int) -> Heartbeat:
        return Heartbeat(
            host="h", pass_at=NOW, certificates=1, sources=1, sources_failed=0, events=events,
            problems=0,
        )  # fmt: skip

    earlier = wrap(beat(1), host="h", time=NOW, id="earlier")
    batch = [
        wrap(beat(2), host="h", time=NOW, id="n1"),
        wrap(beat(1), host="h", time=NOW, id="earlier"),  # recorded last pass: a resend
        wrap(beat(3), host="h", time=NOW, id="n2"),
        wrap(beat(3), host="h", time=NOW, id="n2"),  # twice in this batch: once
        wrap(beat(4), host="h", time=NOW, id="n1"),  # n1's id, other content: a clash
        wrap(beat(5), host="h", time=NOW, id="n3"),
    ]
    with StateStore(tmp_path) as store:
        store.record_events([(earlier, ["a"])], NOW)
        store.mark_delivered("a", store.due("a", NOW), NOW)
        conflicts = store.record_events([(e, ["a"]) for e in batch], NOW)
        due = store.due("a", NOW)

    assert [c.id for c in conflicts] == ["n1"]
    clash = conflicts[0].recorded_as
    assert [row.envelope.id for row in due] == ["n1", "n2", clash, "n3"]
    assert [row.envelope.event.events for row in due] == [2, 3, 4, 5]  # type: ignore[attr-defined]


def test_each_sink_queues_exactly_the_events_routed_to_it_and_marks_those_it_had(
    tmp_path: Path,
) -> None:
    """A sink's outbox rows go in by runs of consecutive events: events routed to
    other sinks (or none) between them are not queued for it, and delivering some of
    its rows marks those only, once each (a row given twice counts one attempt)."""

    def beat(events: int) -> Heartbeat:
        return Heartbeat(
            host="h", pass_at=NOW, certificates=1, sources=1, sources_failed=0, events=events,
            problems=0,
        )  # fmt: skip

    sinks = [("a",), ("b",), ("a", "b"), (), ("a", "a"), ("a",), ("b",), ("a",)]
    routed = [(wrap(beat(n), host="h", time=NOW, id=f"e{n}"), s) for n, s in enumerate(sinks)]
    with StateStore(tmp_path) as store:
        store.record_events(routed, NOW)
        due_a = store.due("a", NOW)
        assert [row.envelope.id for row in due_a] == ["e0", "e2", "e4", "e5", "e7"]
        assert [row.envelope.id for row in store.due("b", NOW)] == ["e1", "e2", "e6"]
        store.mark_delivered("a", [due_a[4], due_a[0], due_a[2], due_a[3], due_a[3]], NOW)
        assert [row.envelope.id for row in store.due("a", NOW)] == ["e2"]
        assert len(store.due("b", NOW)) == 3
        deliveries = {e.envelope.id: e.deliveries for e in store.history()}
        counts = store.outbox_counts()
    assert deliveries["e3"] == {}
    assert deliveries["e5"]["a"].state == "delivered"
    assert deliveries["e5"]["a"].attempts == 1
    assert deliveries["e2"]["a"].state == "pending"
    assert counts == {("a", "delivered"): 4, ("a", "pending"): 1, ("b", "pending"): 3}


def test_an_event_recorded_twice_is_queued_once_and_delivered_as_first_recorded(
    tmp_path: Path,
) -> None:
    def beat(events: int) -> Heartbeat:
        return Heartbeat(
            host="h", pass_at=NOW, certificates=1, sources=1, sources_failed=0, events=events,
            problems=0,
        )  # fmt: skip

    first = wrap(beat(1), host="h", time=NOW, id="same-id")
    again = wrap(beat(1), host="h", time=NOW + timedelta(minutes=1), id="same-id")  # resent
    with StateStore(tmp_path) as store:
        store.record_events([(first, ["a", "b"]), (again, ["a", "b"])], NOW)
        store.record_events([(again, ["a"])], NOW)

        rows = store.due("a", NOW) + store.due("b", NOW)

    assert [(row.sink, row.envelope) for row in rows] == [("a", first), ("b", first)]


def test_certificates_come_back_equal_decoded_only_when_read(tmp_path: Path) -> None:
    """load_snapshot's rows stand for the observations written: equal, same hash, a
    dataclasses.replace() of one is whole; the fingerprint is there before the rest."""
    written = {
        o.lineage: o
        for o in (
            observation(now=NOW, days_left=20, lineage="certs/a.test"),
            observation(now=NOW, days_left=50, lineage="certs/b.test", role="chain"),
        )
    }
    after = SourceSnapshot(source="static:x", baselined=True, certificates=written)
    with StateStore(tmp_path) as store:
        store.commit_pass(
            [SourceChange(before=None, after=after, files_before={}, files_after={})], [], NOW
        )
        loaded = store.load_snapshot("static:x")
        assert loaded is not None
        a = loaded.certificates["certs/a.test"]
        assert a.fingerprint == written["certs/a.test"].fingerprint
        assert loaded.certificates == written
        assert written == loaded.certificates
        assert {hash(o) for o in loaded.certificates.values()} == {
            hash(o) for o in written.values()
        }
        renewed = replace(a, chain_length=3)
        assert renewed.fingerprint == a.fingerprint
        assert renewed == replace(written["certs/a.test"], chain_length=3)
        assert renewed != a
        assert store.load_index("static:x")["certs/a.test"].identity == identity(a)


def _odd_observations(tmp_path: Path) -> list[Observation]:
    """Every shape a snapshot row takes: each role, each renewal policy, no chain
    length, non-ASCII and control characters, quotes and backslashes, and the facts of
    a real certificate, profile included."""
    ca = trustme.CA()
    pem = tmp_path / "real.pem"
    pem.write_bytes(ca.issue_cert("réal.example", "b.example").cert_chain_pems[0].bytes())
    real = CertificateReader().read_certificates(str(pem))
    assert isinstance(real, tuple)
    odd = 'certs/"quoted"\t\\back\\-ümlaut-\u2028-'
    policies = [
        None,
        BeforeExpiry(before=timedelta(days=30), origin="store", spelled="30d"),
        LifetimeLeft(
            fraction=1 / 3, origin="lacme", short_fraction=0.5, short_below=timedelta(days=10)
        ),
        LifetimeLeft(fraction=0.25, origin="certbot"),
        RenewAt(at=NOW + timedelta(days=3), origin="ari"),
    ]
    made = [
        replace(
            observation(
                now=NOW,
                days_left=20 + index,
                lineage=odd + str(index),
                role=role,
                fingerprint=f"{index:02x}" * 32,
            ),
            chain_length=None if index % 2 else index,
            renewal=policy,
            domains=("ü.example", "x\x00.example"),
        )
        for index, (role, policy) in enumerate(
            zip(["leaf", "chain", "ca", "leaf", "chain"], policies, strict=True)
        )
    ]
    return [*made, replace(made[0], lineage=str(pem), certificate=real[0])]


def test_a_snapshot_row_is_its_observations_values_in_a_json_array(tmp_path: Path) -> None:
    """observation_row writes a JSON array of the observation's values (the lineage is
    the row's own column), read back equal, as the object rows of schema 7 still are;
    a layout it does not know is refused; and every such row is stored and loaded
    back equal."""
    made = _odd_observations(tmp_path)
    for one in made:
        row = observation_row(one)
        assert json.loads(row)[0] == ROW_VERSION
        assert decode_row(one.lineage, row) == one
        assert decode_row(one.lineage, json.dumps(one.to_json())) == one  # schema 7's
        with pytest.raises(ValueError, match="layout 2"):
            decode_row(one.lineage, json.dumps([2, *json.loads(row)[1:]]))
    after = SourceSnapshot(
        source="static:odd", baselined=True, certificates={o.lineage: o for o in made}
    )
    with StateStore(tmp_path / "state") as store:
        store.commit_pass(
            [SourceChange(before=None, after=after, files_before={}, files_after={})], [], NOW
        )
        loaded = store.load_snapshot("static:odd")
    assert loaded is not None
    assert dict(loaded.certificates) == after.certificates


def _downgrade_to_schema_6(path: Path) -> None:
    """`events` and `outbox` as schema 6 made them: events by their text id (rowid
    implicit), one outbox row per (event_id, sink) with a rowid; and one orphan row."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        DROP INDEX events_by_time;
        DROP INDEX outbox_pending;
        ALTER TABLE outbox RENAME TO outbox_7;
        ALTER TABLE events RENAME TO events_7;
        CREATE TABLE events (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, store TEXT,
            time REAL NOT NULL, cloudevent TEXT NOT NULL);
        CREATE INDEX events_by_time ON events (time);
        CREATE TABLE outbox (
            event_id TEXT NOT NULL REFERENCES events (id), sink TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'expired', 'rejected')),
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
            created_at REAL NOT NULL, delivered_at REAL, last_error TEXT,
            PRIMARY KEY (event_id, sink));
        CREATE INDEX outbox_pending ON outbox (sink, next_attempt) WHERE state = 'pending';
        INSERT INTO events (rowid, id, kind, subject, store, time, cloudevent)
            SELECT seq, id, kind, subject, store, time, cloudevent FROM events_7 ORDER BY seq;
        INSERT INTO outbox SELECT e.id, o.sink, o.state, o.attempts, o.next_attempt,
            o.created_at, o.delivered_at, o.last_error
            FROM outbox_7 o JOIN events_7 e ON e.seq = o.event ORDER BY o.event, o.sink;
        INSERT INTO outbox VALUES ('no-such-event', 'a', 'pending', 0, 0, 0, NULL, NULL);
        DROP TABLE outbox_7;
        DROP TABLE events_7;
        UPDATE meta SET value = '6' WHERE key = 'schema';
        """
    )
    db.close()


def test_a_schema_6_outbox_upgrades_with_every_delivery_state_kept(tmp_path: Path) -> None:
    """Schema 7 numbers the events and keys the outbox by (sink, seq): each event and
    each sink's state, attempts and error come through, the pending ones are delivered
    once after the upgrade, in their order, and new events queue after them."""

    def beat(events: int) -> Heartbeat:
        return Heartbeat(
            host="h", pass_at=NOW, certificates=1, sources=1, sources_failed=0, events=events,
            problems=0,
        )  # fmt: skip

    envelopes = [wrap(beat(number), host="h", time=NOW, id=f"e{number}") for number in range(6)]
    later = NOW + timedelta(hours=1)
    with StateStore(tmp_path) as store:
        store.record_events([(envelope, ("a", "b")) for envelope in envelopes], NOW)
        rows = {row.envelope.id: row for row in store.due("a", NOW)}
        store.mark_delivered("a", [rows["e0"], rows["e1"]], NOW)
        store.reject("a", [rows["e2"]], "HTTP 400")
        store.retry_later("a", [rows["e3"]], later, "timed out")
        store.expire("a", [rows["e4"]])
        history = store.history()
        counts = store.outbox_counts()
    assert counts == {("a", "delivered"): 2, ("a", "rejected"): 1, ("a", "retrying"): 1,
                      ("a", "expired"): 1, ("a", "pending"): 1, ("b", "pending"): 6}  # fmt: skip
    path = tmp_path / "state.sqlite3"
    _downgrade_to_schema_6(path)

    with StateStore(tmp_path) as store:
        assert store.history() == history
        assert store.outbox_counts() == counts  # the orphan row is not carried over
        assert [row.envelope.id for row in store.due("a", later)] == ["e3", "e5"]
        assert store.backlog("a") is not None
        fresh = wrap(beat(9), host="h", time=later, id="fresh")
        store.record_events([(fresh, ("a",))], later)
        sink = RecordingSink("a")
        report = drain(store, [SinkRoute(sink=sink)], later, RetryPolicy())
        assert report.delivered == 3
        assert [envelope.id for envelope in sink.envelopes] == ["e3", "e5", "fresh"]
        assert drain(store, [SinkRoute(sink=sink)], later, RetryPolicy()).delivered == 0
        assert store.history()[-1].deliveries["a"].state == "delivered"
        assert store.history()[0].deliveries == history[0].deliveries  # e0: as it was
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    assert [row[1] for row in db.execute("PRAGMA table_info(outbox)")][:2] == ["sink", "event"]
    db.close()
