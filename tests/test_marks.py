"""The `reported` marks, one row per certificate: every mark comes back as written,
a partial snapshot's marks leave the rows it did not load whole, and a schema 5
state dir (one row per mark) upgrades losing none."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lacme_watch.detection.detect import SourceSnapshot
from lacme_watch.run.passes import run_pass
from lacme_watch.statedb import SCHEMA_VERSION, SourceChange, StateStore
from lacme_watch.statedb.marks import pack, unpack
from lacme_watch.testing import RecordingSink

from .conftest import expiring, pem_config, write_leaves
from .factories import observation

NOW = datetime(2026, 3, 1, tzinfo=UTC)

_labels = st.sets(st.text(alphabet="abn\\\n%:d0", min_size=1, max_size=8), min_size=1)


@given(_labels)
def test_labels_come_back_as_packed_whatever_they_hold(labels: set[str]) -> None:
    """A label may hold a newline or a backslash (`mismatch:NAME`, the name as asked)."""
    assert sorted(unpack(pack(labels))) == sorted(labels)


def _commit(store: StateStore, before: SourceSnapshot | None, after: SourceSnapshot) -> None:
    store.commit_pass(
        [SourceChange(before=before, after=after, files_before={}, files_after={})], [], NOW
    )


def test_marks_come_back_as_written_and_a_partial_snapshot_adds_to_unloaded_rows(
    tmp_path: Path,
) -> None:
    """Marks are loaded by lineage: a snapshot that did not load a certificate's marks
    (a partial rescan's) adds its new ones to that row; one that did rewrites it."""
    a = observation(now=NOW, days_left=5, lineage="certs/a.test")
    b = observation(now=NOW, days_left=50, lineage="certs/b.test")
    fa, fb = a.fingerprint, b.fingerprint
    marks = frozenset(
        {
            ("certs/a.test", fa, "7d"),
            ("certs/a.test", fa, "14d"),
            ("certs/a.test", fa, "mismatch:we\\ird\nname"),
            ("certs/a.test", "older", "30d"),
            ("certs/b.test", fb, "33%"),
        }
    )
    first = SourceSnapshot(
        source="static:x", baselined=True, certificates={"certs/a.test": a, "certs/b.test": b},
        reported=marks,
    )  # fmt: skip
    with StateStore(tmp_path) as store:
        _commit(store, None, first)
        loaded = store.load_snapshot("static:x")
        assert loaded is not None
        assert loaded.reported == marks

        partial = store.load_snapshot("static:x", ["certs/b.test"], marks_of=["certs/b.test"])
        assert partial is not None
        assert partial.reported == {("certs/b.test", fb, "33%")}
        added = partial.reported | {("certs/a.test", fa, "3d"), ("certs/b.test", fb, "30d")}
        _commit(store, partial, replace(partial, reported=added))
        loaded = store.load_snapshot("static:x")
        assert loaded is not None
        assert loaded.reported == marks | {
            ("certs/a.test", fa, "3d"),
            ("certs/b.test", fb, "30d"),
        }

        whole = loaded
        kept = frozenset(m for m in whole.reported if m[1] != "older" and m[2] != "7d")
        _commit(store, whole, replace(whole, reported=kept))
        again = store.load_snapshot("static:x")
        assert again is not None
        assert again.reported == kept


def test_a_schema_5_state_dir_upgrades_losing_no_mark_and_resending_nothing(
    tmp_path: Path,
) -> None:
    """Schema 5 kept one `reported` row per mark: the upgrade packs them per
    certificate, so the pass after it sends nothing again, and the next threshold
    still comes, once."""
    certs = tmp_path / "certs"
    write_leaves(certs, {"a": 12, "b": 35, "c": 80}, now=NOW, lifetime_days=100)
    sink = RecordingSink()
    config = pem_config(tmp_path, certs, sink)
    source = config.stores[0].id
    later = NOW + timedelta(days=5, hours=6)  # a: 6.75 days left, past 7d; b: past 30d
    with StateStore(config.state_dir) as store:
        run_pass(config, store, NOW)  # the baseline announces a's 14d at once
        run_pass(config, store, later)
        snapshot = store.load_snapshot(source)
    assert snapshot is not None
    assert len({mark[:2] for mark in snapshot.reported}) < len(snapshot.reported)
    sent = [(e.domain, e.threshold) for e in expiring(sink)]
    assert sent == [("a.example", "14d"), ("a.example", "7d"), ("b.example", "30d")]
    path = config.state_dir / "state.sqlite3"
    _downgrade_to_schema_5(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM reported").fetchone() == (len(snapshot.reported),)
    db.close()

    with StateStore(config.state_dir) as store:
        assert store.load_snapshot(source) == snapshot
        assert not run_pass(config, store, later + timedelta(hours=1)).envelopes
        run_pass(config, store, later + timedelta(days=6))  # a: 0.75 days left
    assert [(e.domain, e.threshold) for e in expiring(sink)] == [*sent, ("a.example", "1d")]
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    columns = [row[1] for row in db.execute("PRAGMA table_info(reported)")]
    assert columns == ["source", "lineage", "fingerprint", "thresholds"]
    rows = db.execute("SELECT count(*), count(DISTINCT lineage) FROM reported").fetchone()
    assert rows[0] == rows[1]  # one row per certificate
    db.close()


def _downgrade_to_schema_5(path: Path) -> None:
    """`reported` as schema 5 wrote it: one WITHOUT ROWID row per mark."""
    db = sqlite3.connect(path)
    rows = [
        (source, lineage, fingerprint, label)
        for source, lineage, fingerprint, labels in db.execute("SELECT * FROM reported")
        for label in unpack(labels)
    ]
    db.executescript(
        """
        DROP TABLE reported;
        CREATE TABLE reported (
            source TEXT NOT NULL, lineage TEXT NOT NULL, fingerprint TEXT NOT NULL,
            threshold TEXT NOT NULL, PRIMARY KEY (source, lineage, fingerprint, threshold))
            WITHOUT ROWID;
        UPDATE meta SET value = '5' WHERE key = 'schema';
        """
    )
    db.executemany("INSERT INTO reported VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
