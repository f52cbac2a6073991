"""beside.run: the other core's half of the work, and nothing lost when it fails.
Real forks of this process (the faults are caused for real: a child that dies)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trustme

from lacme_watch.reading import beside, statrecord
from lacme_watch.reading.reader import CertificateReader

pytestmark = pytest.mark.skipif(not beside.possible(), reason="needs fork and two CPUs")


def test_both_answers_come_back_from_both_processes() -> None:
    parent = os.getpid()
    mine, theirs = beside.run(lambda: os.getpid(), lambda: os.getpid())
    assert mine == parent
    assert theirs != parent  # computed in the child


def test_an_exception_in_the_child_is_raised_here_after_this_half() -> None:
    done: list[str] = []

    def theirs() -> int:
        raise statrecord.LinkChanged("/a/link")

    with pytest.raises(statrecord.LinkChanged, match="/a/link"):
        beside.run(theirs, lambda: done.append("mine"))
    assert done == ["mine"]


def test_a_child_that_dies_costs_time_not_the_answer() -> None:
    parent = os.getpid()

    def theirs() -> str:
        if os.getpid() != parent:
            os._exit(3)  # killed mid-way: nothing written
        return "done here"

    assert beside.run(theirs, lambda: "mine") == ("mine", "done here")


def test_a_threaded_process_does_not_fork() -> None:
    parent = os.getpid()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not beside.possible()
        assert beside.run(os.getpid, lambda: 1) == (1, parent)
    finally:
        stop.set()
        other.join()


def _record(tmp_path: Path, count: int) -> tuple[list[Path], bytes]:
    """A stat record of `count` real files, as a reader's guarded reads make it."""
    ca = trustme.CA()
    files = []
    for index in range(count):
        path = tmp_path / f"f{index:03d}.pem"
        path.write_bytes(ca.issue_cert(f"h{index}.example").cert_chain_pems[0].bytes())
        files.append(path)
    reads = CertificateReader()
    reads.confine(str(tmp_path))
    reads.will_list(str(tmp_path))
    for path in files:
        reads.read_bytes(str(path))
    record = reads.stat_record_bytes()
    assert record is not None
    return files, bytes(record)


def test_a_large_records_halves_are_compared_by_two_processes_as_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statrecord, "RACY", -3600.0)
    files, record = _record(tmp_path, 40)
    os.chmod(files[3], 0o600)  # in the first half
    os.chmod(files[37], 0o600)  # in the second
    alone = statrecord.changes(record)
    monkeypatch.setattr(statrecord, "BESIDE", 4)
    forked = statrecord.changes(record)
    assert forked == alone == [(str(files[3]), False), (str(files[37]), False)]
