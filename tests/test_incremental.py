"""Rescans that look only at what changed: the same events as detecting over everything."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from lacme_watch.config import Config
from lacme_watch.detection import renewal
from lacme_watch.detection.detect import SourceSnapshot, detect
from lacme_watch.detection.ratelimits import RateLimits
from lacme_watch.detection.thresholds import Policy
from lacme_watch.dispatch.delivery import SinkRoute
from lacme_watch.events import Event
from lacme_watch.observations import Observation, Problem, ScanResult
from lacme_watch.run.passes import run_pass
from lacme_watch.statedb import SCHEMA_VERSION, StateStore, identity
from lacme_watch.statedb.rows import decode_row
from lacme_watch.testing import FailingSink, RecordingSink, StaticSource

from .conftest import CliRunner, data, expiring, pem_config, watch, write_config, write_leaves
from .factories import observation

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_threshold_crossed_with_no_file_changed_is_found_by_the_index(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    write_leaves(certs, {"a": 40, "b": 60, "c": 80}, now=NOW)
    sink = RecordingSink()
    config = pem_config(tmp_path, certs, sink)
    later = NOW + timedelta(days=10, hours=6)  # a.example: 29.75 days left, past 30d only
    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)
        source = config.stores[0].id
        assert store.thresholds_due(source, later) == [str(certs / "a.pem")]

        report = run_pass(config, store, later)

        assert report.files_parsed == 0
        assert [(e.kind, e.domain, e.threshold) for e in expiring(sink)] == [
            ("certificate_expiring", "a.example", "30d")
        ]
        assert store.thresholds_due(source, later) == []
        again = run_pass(config, store, later + timedelta(hours=1))
        assert not again.envelopes  # reported once


def test_a_database_of_the_old_layout_is_migrated_and_its_thresholds_rearmed(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    certs = tmp_path / "certs"
    certs.mkdir()
    leaf = ca.issue_cert(
        "a.example", not_before=NOW - timedelta(days=50), not_after=NOW + timedelta(days=40)
    )
    (certs / "a.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    sink = RecordingSink()
    config = pem_config(tmp_path, certs, sink)
    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)
    _downgrade_to_schema_1(config.state_dir / "state.sqlite3")

    later = NOW + timedelta(days=10, hours=6)
    with StateStore(config.state_dir) as store:
        source = config.stores[0].id
        assert store.thresholds_due(source, NOW) == [str(certs / "a.pem")]
        report = run_pass(config, store, later)

        assert [(e.kind, e.threshold) for e in expiring(sink)] == [("certificate_expiring", "30d")]
        assert "certificate_issued" not in [e.event.kind for e in report.envelopes]
        assert store.thresholds_due(source, later) == []
    db = sqlite3.connect(config.state_dir / "state.sqlite3")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    db.close()


def _downgrade_to_schema_1(path: Path) -> None:
    """The certificates table as lacme-watch 0.1 wrote it: no identity, no next threshold."""
    db = sqlite3.connect(path)
    _unpack_reported(db, "")
    db.execute("DROP TABLE lineage_index")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.execute("DELETE FROM meta WHERE key = 'policy'")
    db.commit()
    db.close()


def _owing_before_an_upgrade(
    tmp_path: Path,
) -> tuple[Config, RecordingSink, FailingSink, str, datetime]:
    """Three leaves a, b and c, a recording sink and one that fails both passes before
    an upgrade; the config, both sinks, the store's id and the second pass's instant
    (b: 29.75 days left, past 30d; a: 19.75)."""
    certs = tmp_path / "certs"
    write_leaves(certs, {"a": 25, "b": 35, "c": 80}, now=NOW, lifetime_days=100)
    sink = RecordingSink()
    owing = FailingSink("owing", failures=2)
    config = replace(
        pem_config(tmp_path, certs, sink), sinks=(SinkRoute(sink=sink), SinkRoute(sink=owing))
    )
    return config, sink, owing, config.stores[0].id, NOW + timedelta(days=5, hours=6)


def test_a_schema_4_state_dir_upgrades_losing_no_mark_and_resending_nothing(
    tmp_path: Path,
) -> None:
    """Schema 4 kept the identity and next threshold in the wide certificates rows,
    `reported` with a rowid, and every outbox row in its index: the upgrade moves them
    as they are, so the pass after it sends nothing again (what a failing sink still
    owes it delivers, once) and the next threshold still comes, once."""
    config, sink, owing, source, later = _owing_before_an_upgrade(tmp_path)
    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)  # the baseline announces a's 30d at once
        run_pass(config, store, later)
        index = store.load_index(source)
        snapshot = store.load_snapshot(source)
        history = [(e.envelope.id, e.deliveries) for e in store.history()]
    sent = [(e.domain, e.threshold) for e in expiring(sink)]
    assert sent == [("a.example", "30d"), ("b.example", "30d")]
    _downgrade_to_schema_4(config.state_dir / "state.sqlite3")

    with StateStore(config.state_dir) as store:
        assert store.load_index(source) == index
        assert store.load_snapshot(source) == snapshot
        assert [(e.envelope.id, e.deliveries) for e in store.history()] == history
        assert not run_pass(config, store, later + timedelta(hours=1)).envelopes
        assert [[e.event.kind for e in batch] for batch in owing.batches] == [
            ["certificate_expiring", "certificate_expiring"]
        ]
        run_pass(config, store, later + timedelta(days=6))  # a: 13.75 days left
    assert [(e.domain, e.threshold) for e in expiring(sink)] == [*sent, ("a.example", "14d")]
    assert [len(batch) for batch in owing.batches] == [2, 1]
    db = sqlite3.connect(config.state_dir / "state.sqlite3")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
    assert columns == {"source", "lineage", "fingerprint", "observation"}
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "outbox_pending" in indexes
    assert not {"outbox_due", "certificates_due"} & indexes
    db.close()


def _downgrade_to_schema_4(path: Path) -> None:
    """The tables schema 4 kept otherwise, as lacme-watch wrote them: identity and next
    threshold in the certificates rows (indexed), `reported` with a rowid."""
    db = sqlite3.connect(path)
    _unpack_reported(db, "")
    db.executescript(
        """
        CREATE TABLE certificates_4 (
            source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
            observation TEXT NOT NULL, identity BLOB, next_threshold REAL,
            PRIMARY KEY (source, lineage));
        INSERT INTO certificates_4 SELECT c.*, i.identity, i.next_threshold
            FROM certificates c JOIN lineage_index i USING (source, lineage);
        DROP TABLE certificates;
        ALTER TABLE certificates_4 RENAME TO certificates;
        CREATE INDEX certificates_due ON certificates (source, next_threshold);
        DROP TABLE lineage_index;
        DROP INDEX outbox_pending;
        CREATE INDEX outbox_due ON outbox (state, sink, next_attempt);
        UPDATE meta SET value = '4' WHERE key = 'schema';
        """
    )
    db.commit()
    db.close()


def test_a_schema_7_state_dir_upgrades_every_row_losing_no_mark_and_resending_nothing(
    tmp_path: Path,
) -> None:
    """Schema 7 kept each observation as an object of named values: the upgrade
    rewrites every row as the array of schema 8, every row, mark, index entry and
    pending delivery kept, so the pass after it sends nothing again (what a failing
    sink still owes is delivered once) and the next threshold still comes, once."""
    config, sink, owing, source, later = _owing_before_an_upgrade(tmp_path)
    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)  # the baseline announces a's 30d at once
        run_pass(config, store, later)
        index = store.load_index(source)
        snapshot = store.load_snapshot(source)
        inventory = store.inventory()
        history = [(e.envelope.id, e.deliveries) for e in store.history()]
    sent = [(e.domain, e.threshold) for e in expiring(sink)]
    assert sent == [("a.example", "30d"), ("b.example", "30d")]
    path = config.state_dir / "state.sqlite3"
    _downgrade_to_schema_7(path)

    with StateStore(config.state_dir) as store:
        assert store.load_index(source) == index
        assert store.load_snapshot(source) == snapshot
        assert store.inventory() == inventory
        assert [(e.envelope.id, e.deliveries) for e in store.history()] == history
        assert not run_pass(config, store, later + timedelta(hours=1)).envelopes
        assert [[e.event.kind for e in batch] for batch in owing.batches] == [
            ["certificate_expiring", "certificate_expiring"]
        ]
        run_pass(config, store, later + timedelta(days=6))  # a: 13.75 days left
    assert [(e.domain, e.threshold) for e in expiring(sink)] == [*sent, ("a.example", "14d")]
    assert [len(batch) for batch in owing.batches] == [2, 1]
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    rows = [raw for (raw,) in db.execute("SELECT observation FROM certificates")]
    assert len(rows) == 3
    assert all(raw.startswith("[") for raw in rows)
    db.close()


def _downgrade_to_schema_7(path: Path) -> None:
    """Every certificate row as schema 7 wrote it: `Observation.to_json()`'s object."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT rowid, lineage, observation FROM certificates").fetchall()
    db.executemany(
        "UPDATE certificates SET observation = ? WHERE rowid = ?",
        [(json.dumps(decode_row(lineage, raw).to_json()), rowid) for rowid, lineage, raw in rows],
    )
    db.execute("UPDATE meta SET value = '7' WHERE key = 'schema'")
    db.commit()
    db.close()


def _unpack_reported(db: sqlite3.Connection, layout: str) -> None:
    """`reported` as schemas 1 to 5 kept it, one row per mark (`layout`: "" for the
    rowid table of schemas 1 to 4, "WITHOUT ROWID" for schema 5's)."""
    rows = [
        (source, lineage, fingerprint, label)
        for source, lineage, fingerprint, labels in db.execute("SELECT * FROM reported")
        for label in labels.split("\n")
    ]
    db.execute("DROP TABLE reported")
    db.execute(
        "CREATE TABLE reported (source TEXT NOT NULL, lineage TEXT NOT NULL,"
        " fingerprint TEXT NOT NULL, threshold TEXT NOT NULL,"
        f" PRIMARY KEY (source, lineage, fingerprint, threshold)) {layout}"
    )
    db.executemany("INSERT INTO reported VALUES (?, ?, ?, ?)", rows)


# -- the property: incremental passes tell what detect() over everything tells --------

LINEAGES = ("certs/a.test", "certs/b.test", "certs/c.test", "certs/d.test")

_steps = st.lists(
    st.tuples(
        st.sampled_from(("wait", "renew", "remove", "add", "unreadable", "fail")),
        st.integers(min_value=0, max_value=len(LINEAGES) - 1),
        st.integers(min_value=0, max_value=40),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(_steps)
def test_incremental_passes_report_what_detection_over_everything_reports(
    steps: list[tuple[str, int, int]],
) -> None:
    held: dict[str, Observation] = {
        lineage: observation(now=NOW, days_left=20 + 15 * n, lineage=lineage)
        for n, lineage in enumerate(LINEAGES[:2])
    }
    now = NOW
    reference: SourceSnapshot | None = None
    source = StaticSource("static:test")
    policy = Policy()
    with tempfile.TemporaryDirectory() as state:
        config = Config(
            path=None,
            state_dir=Path(state),
            host="test-host",
            stores=(source,),
            authorities=(),
            rate_limits=RateLimits(enabled=False),
        )
        with StateStore(Path(state)) as store:
            for action, which, amount in [("wait", 0, 0), *steps]:
                lineage = LINEAGES[which]
                scan, now = _step(action, lineage, amount, held, now)
                source.result = scan
                reference, expected = detect(
                    reference, scan, source=source.id, now=now, policy=policy
                )
                report = run_pass(config, store, now)

                assert _sorted([e.event for e in report.envelopes]) == _sorted(expected)
                assert sorted(o.lineage for _, o in report.inventory) == sorted(
                    reference.certificates
                )
            snapshot = store.load_snapshot(source.id)
            assert snapshot is not None
            assert reference is not None
            assert snapshot.reported == reference.reported
            assert dict(snapshot.certificates) == dict(reference.certificates)


def _step(
    action: str, lineage: str, amount: int, held: dict[str, Observation], now: datetime
) -> tuple[ScanResult, datetime]:
    problems: tuple[Problem, ...] = ()
    if action == "wait":
        now += timedelta(days=amount)
    elif action == "renew" and lineage in held:
        fresh = observation(now=now, days_left=60 + amount, lineage=lineage)
        held[lineage] = replace(fresh, domain=held[lineage].domain)
    elif action == "add":
        held.setdefault(lineage, observation(now=now, days_left=5 + amount, lineage=lineage))
    elif action == "remove":
        held.pop(lineage, None)
    elif action == "unreadable" and lineage in held:
        problems = (Problem(held[lineage].path, "bad_pem", "truncated", lineage=lineage),)
        return ScanResult(
            observations=tuple(o for o in held.values() if o.lineage != lineage),
            problems=problems,
        ), now
    elif action == "fail":
        return ScanResult(problems=(Problem("/store", "not_found"),), failed=True), now
    return ScanResult(observations=tuple(held.values())), now


def _sorted(events: list[Event]) -> list[str]:
    return sorted(repr(event) for event in events)


def test_challenge_failures_emitted_between_passes_are_counted_by_the_next_one(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Nothing in the stores changed, but `emit` recorded failures: the rate limits are
    evaluated again (they are skipped only when nothing they count can have moved)."""
    (tmp_path / "certs").mkdir()
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{tmp_path / 'certs'}/*.pem']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    at = ("--config", str(config), "--now", NOW.isoformat())
    assert watch(cli, config, log, "--now", NOW.isoformat())[1] == []
    for _ in range(4):
        emitted = cli(*at, "emit", "challenge_failed", "--domain", "a.example",
                      "--challenge-type", "http-01", "--error", "unauthorized")  # fmt: skip
        assert emitted.code == 0

    _, events = watch(cli, config, log, "--now", (NOW + timedelta(minutes=5)).isoformat())

    warnings = [data(e) for e in events if e["type"] == "lacme.rate_limit_warning"]
    assert [(w["rule"], w["registered_domain"], w["current_count"]) for w in warnings] == [
        ("failed_authorizations", "a.example", 4)
    ]


def test_a_new_expiry_policy_makes_every_certificate_due_once(tmp_path: Path) -> None:
    """No file changed, no threshold came due under the old policy: the new one's
    45-day threshold is reported at once, not when something else touches the row."""
    ca = trustme.CA()
    certs = tmp_path / "certs"
    certs.mkdir()
    leaf = ca.issue_cert(
        "a.example", not_before=NOW - timedelta(days=50), not_after=NOW + timedelta(days=40)
    )
    (certs / "a.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    sink = RecordingSink()
    config = pem_config(tmp_path, certs, sink)
    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)
        assert expiring(sink) == []

        stricter = replace(config, policy=Policy(thresholds_days=(45,), thresholds_percent=()))
        run_pass(stricter, store, NOW + timedelta(hours=1))

    assert [(e.domain, e.threshold) for e in expiring(sink)] == [("a.example", "45d")]


def test_a_row_whose_identity_is_stale_is_rewritten_by_the_next_pass(tmp_path: Path) -> None:
    """A row whose identity another version computed differently (the observation is
    the same) is looked at once and then carries this version's identity."""
    certs = tmp_path / "certs"
    certs.mkdir()
    leaf = trustme.CA().issue_cert("a.example")
    (certs / "a.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    config = pem_config(tmp_path, certs, RecordingSink())
    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)
    db = sqlite3.connect(config.state_dir / "state.sqlite3")
    db.execute("UPDATE lineage_index SET identity = x'00'")
    db.commit()
    db.close()

    with StateStore(config.state_dir) as store:
        report = run_pass(config, store, NOW + timedelta(minutes=1))
        (_, observation), = report.inventory  # fmt: skip
        index = store.load_index(config.stores[0].id)

    assert index[observation.lineage].identity == identity(observation)
    assert not report.envelopes


def test_renewal_overdue_with_no_file_changed_is_found_by_the_index() -> None:
    """Time alone makes a certificate overdue (its owner's renewal point plus the grace,
    long before any expiry threshold): the indexed instant covers that too."""
    owner = renewal.BeforeExpiry(before=timedelta(days=50), origin="test renew_before")
    leaf = replace(observation(now=NOW, days_left=60, lineage="certs/a.test"), renewal=owner)
    source = StaticSource("static:overdue", ScanResult(observations=(leaf,)))
    overdue_at = renewal.overdue_since(owner, leaf.certificate)
    with tempfile.TemporaryDirectory() as state:
        config = Config(
            path=None,
            state_dir=Path(state),
            host="test-host",
            stores=(source,),
            authorities=(),
            rate_limits=RateLimits(enabled=False),
        )
        with StateStore(Path(state)) as store:
            assert not run_pass(config, store, NOW).envelopes
            assert not run_pass(config, store, overdue_at - timedelta(minutes=1)).envelopes

            report = run_pass(config, store, overdue_at + timedelta(minutes=1))

    assert [e.event.kind for e in report.envelopes] == ["renewal_overdue"]
