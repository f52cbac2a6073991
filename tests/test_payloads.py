"""PayloadStream answers every path as the one-row query would, in any order asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from lacme_watch.reading import payloads
from lacme_watch.reading.payloads import PayloadStream
from lacme_watch.statedb import StateStore, snapshots


def _store(tmp_path: Path, paths: list[str]) -> StateStore:
    store = StateStore(tmp_path / "state")
    with store.connection:
        store.connection.executemany(
            "INSERT INTO files VALUES (?, ?, 1, 2, 3, 4, 'x', ?)",
            [("src", path, f"payload of {path}") for path in paths]
            + [("other", path, "another source's") for path in paths],
        )
    return store


def test_every_path_in_the_order_a_lacme_store_asks(tmp_path: Path) -> None:
    directories = [f"/s/certs/host{index:03d}" for index in range(200)]
    paths = [f"{d}/{name}" for d in directories for name in ("fullchain.pem", "meta.json")]
    stream = PayloadStream(_store(tmp_path, paths).connection, "src")
    asked = [f"{d}/{name}" for d in directories for name in ("meta.json", "fullchain.pem")]
    assert [stream(path) for path in asked] == [f"payload of {path}" for path in asked]


def test_out_of_order_missing_and_far_ahead_paths(tmp_path: Path) -> None:
    paths = [f"/s/{index:04d}.pem" for index in range(500)]
    stream = PayloadStream(_store(tmp_path, paths).connection, "src")
    assert stream("/s/0400.pem") == "payload of /s/0400.pem"  # beyond the look-ahead
    assert stream("/s/0001.pem") == "payload of /s/0001.pem"  # behind the cursor
    assert stream("/s/0250.5.pem") is None  # never cached
    assert stream("/s/0499.pem") == "payload of /s/0499.pem"
    assert stream("/s/0499.pem") == "payload of /s/0499.pem"  # asked twice
    assert stream("/t/none.pem") is None  # after every row
    stream.close()
    assert stream("/s/0002.pem") == "payload of /s/0002.pem"


def test_a_partial_rescan_loads_its_few_payloads_with_their_rows(tmp_path: Path) -> None:
    """The paths a stat record says changed, and what lies under a changed directory,
    come with their payloads: scattered over a large store, the stream would step
    through (and hold) the rows between them. A full scan's rows leave them to it."""
    paths = [f"/s/{index:04d}.pem" for index in range(300)] + ["/s/d/a.pem", "/s/d/b.pem"]
    store = _store(tmp_path, paths)
    partial = store.load_files("src", paths=["/s/0007.pem", "/s/0250.pem"], under=["/s/d"])
    assert {path: cached.payload for path, cached in partial.items()} == {
        path: f"payload of {path}"
        for path in ("/s/0007.pem", "/s/0250.pem", "/s/d/a.pem", "/s/d/b.pem")
    }
    whole = store.load_files("src")
    assert len(whole) == 302
    assert {cached.payload for cached in whole.values()} == {None}


def test_many_changed_paths_are_left_to_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PAYLOADS_WITH_ROWS (a store all written just before its last scan), the
    payloads are not loaded at once with the rows: the stream reads them in order."""
    monkeypatch.setattr(snapshots, "PAYLOADS_WITH_ROWS", 2)
    paths = [f"/s/{index:04d}.pem" for index in range(10)]
    store = _store(tmp_path, paths)
    loaded = store.load_files("src", paths=paths[:3])
    assert sorted(loaded) == paths[:3]
    assert {cached.payload for cached in loaded.values()} == {None}
    assert [cached.payload for cached in store.load_files("src", paths=paths[:2]).values()] == [
        "payload of /s/0000.pem",
        "payload of /s/0001.pem",
    ]


def test_the_stream_holds_a_bounded_number_of_rows_whatever_it_is_asked(
    tmp_path: Path,
) -> None:
    """Every 50th of 5,000 files asked (a partial rescan's scattered changes): each
    answered as the one-row query would, never more than _WAITING rows held."""
    paths = [f"/s/{index:05d}.pem" for index in range(5000)]
    stream = PayloadStream(_store(tmp_path, paths).connection, "src")
    held = 0
    for path in paths[::50]:
        assert stream(path) == f"payload of {path}"
        held = max(held, len(stream._waiting))
    assert 0 < held <= payloads._WAITING
    assert stream("/s/00001.pem") == "payload of /s/00001.pem"  # stepped over, dropped
