"""Storage faults, caused for real: one clear line, the spec's exit code, nothing lost.

Permission faults need a process that the kernel refuses: as root, the CLI runs under
`setpriv` without CAP_DAC_OVERRIDE. Read-only and full file systems are a bind mount
remounted read-only and a small tmpfs, mounted here when the tests run as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.statedb import SCHEMA_VERSION

from .conftest import CliRunner, kinds, read_events

ROOT = os.geteuid() == 0


def _write_cert(directory: Path, name: str, days: int = 60) -> None:
    now = datetime.now(UTC)
    leaf = trustme.CA().issue_cert(
        name, not_before=now - timedelta(days=90 - days), not_after=now + timedelta(days=days)
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())


def _config(tmp_path: Path, state_dir: Path, extra: str = "", name: str = "lacme-watch") -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        f"state_dir: {state_dir}\n"
        f"stores:\n  - type: pem\n    paths: ['{tmp_path}/certs/*.pem']\n"
        f"sinks:\n  - {{type: log, format: json, path: {tmp_path / 'events.jsonl'}}}\n" + extra
    )
    return config


def _unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """`lacme-watch ARGS` as a process the kernel holds to file modes (root loses DAC)."""
    command = [sys.executable, "-m", "lacme_watch", *args]
    if ROOT:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permission errors as root"
        command = [
            setpriv,
            "--bounding-set=-dac_override,-dac_read_search,-fowner,-chown",
            *command,
        ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _one_clean_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_state_dir_that_is_a_regular_file(tmp_path: Path, cli: CliRunner) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    config = _config(tmp_path, blocker)

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 2
    line = _one_clean_line(result.err)
    assert f"state_dir {blocker} is not a directory" in line
    assert "remove or rename that file" in line


def test_a_lock_that_is_a_directory(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "state" / "lock").mkdir(parents=True)
    config = _config(tmp_path, tmp_path / "state")

    for command in (["watch", "--once"], ["emit", "challenge_failed", "--domain", "a.example",
                    "--challenge-type", "http-01", "--error", "x"]):  # fmt: skip
        result = cli("--config", str(config), *command)
        assert result.code == 2, command
        assert f"{tmp_path / 'state' / 'lock'} is a directory; remove it" in _one_clean_line(
            result.err
        )


@pytest.mark.parametrize("command", [["watch", "--once"], ["emit", "challenge_failed",
    "--domain", "a.example", "--challenge-type", "http-01", "--error", "x"]])  # fmt: skip
def test_a_state_dir_that_cannot_be_created(tmp_path: Path, command: list[str]) -> None:
    parent = tmp_path / "var-lib"
    parent.mkdir()
    parent.chmod(0o555)
    config = _config(tmp_path, parent / "lacme-watch")
    _write_cert(tmp_path / "certs", "a.example")

    done = _unprivileged("--config", str(config), *command)

    assert done.returncode == 2, done.stderr
    line = _one_clean_line(done.stderr)
    assert f"cannot create {parent / 'lacme-watch'}: permission denied" in line
    assert "set state_dir to a directory this user can write" in line


def _seeded(tmp_path: Path, cli: CliRunner) -> Path:
    """A state_dir after one good pass over one certificate; returns the config."""
    _write_cert(tmp_path / "certs", "first.example")
    config = _config(tmp_path, tmp_path / "state")
    assert cli("--config", str(config), "watch", "--once").code == 0
    return config


def test_the_database_is_created_0600_in_a_0700_directory(tmp_path: Path, cli: CliRunner) -> None:
    _seeded(tmp_path, cli)
    state = tmp_path / "state"

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "state.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "lock").stat().st_mode) == 0o600


def test_a_0400_database_is_explained_reads_still_work_and_nothing_is_lost(
    tmp_path: Path, cli: CliRunner
) -> None:
    config = _seeded(tmp_path, cli)
    database = tmp_path / "state" / "state.sqlite3"
    database.chmod(0o400)
    _write_cert(tmp_path / "certs", "second.example")

    done = _unprivileged("--config", str(config), "watch", "--once")

    assert done.returncode == 2, done.stderr
    line = _one_clean_line(done.stderr)
    assert f"cannot write {database}: permission denied (mode 0400)" in line
    for command in (["status"], ["events"], ["check"]):
        reading = _unprivileged("--config", str(config), *command)
        assert reading.returncode == 0, (command, reading.stderr)
        assert "Traceback" not in reading.stderr
    assert "first.example" in _unprivileged("--config", str(config), "status").stdout

    database.chmod(0o600)
    # SQLite made the -shm with the database's mode: the message now names that file.
    shm = database.with_name("state.sqlite3-shm")
    if shm.exists() and not stat.S_IMODE(shm.stat().st_mode) & 0o200:
        done = _unprivileged("--config", str(config), "watch", "--once")
        assert f"the leftover {shm} is not writable (mode 0400)" in _one_clean_line(done.stderr)
        shm.chmod(0o600)
    assert _unprivileged("--config", str(config), "watch", "--once").returncode == 0
    assert kinds(read_events(tmp_path / "events.jsonl")) == ["certificate_issued"]


def test_a_leftover_shm_at_0400_is_named_in_the_message(tmp_path: Path, cli: CliRunner) -> None:
    config = _seeded(tmp_path, cli)
    shm = tmp_path / "state" / "state.sqlite3-shm"
    shm.write_bytes(b"")
    shm.chmod(0o400)
    if ROOT:  # left by another user (root's own file SQLite would simply chmod back)
        os.chown(shm, 12345, 12345)
    _write_cert(tmp_path / "certs", "second.example")

    done = _unprivileged("--config", str(config), "watch", "--once")

    assert done.returncode == 2, done.stderr
    line = _one_clean_line(done.stderr)
    assert f"the leftover {shm} is not writable (mode 0400)" in line
    assert f"chmod 600 {shm}" in line

    shm.unlink()
    assert _unprivileged("--config", str(config), "watch", "--once").returncode == 0
    assert kinds(read_events(tmp_path / "events.jsonl")) == ["certificate_issued"]


def test_an_unreadable_spool_directory_is_a_problem_not_a_traceback(
    tmp_path: Path, cli: CliRunner
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    _write_cert(tmp_path / "certs", "first.example")
    config = _config(tmp_path, tmp_path / "state", f"spool: {spool}\n")
    assert cli("--config", str(config), "watch", "--once").code == 0
    spool.chmod(0o000)

    done = _unprivileged("--config", str(config), "watch", "--once")
    spool.chmod(0o700)

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"spool: {spool}: permission_denied (cannot list {spool}: Permission denied" in (
        done.stderr
    )


@contextlib.contextmanager
def _mounted(*arguments: str) -> Iterator[None]:
    target = arguments[-1]
    subprocess.run(["mount", *arguments], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", target], check=False)


@pytest.mark.skipif(not ROOT, reason="mounting a read-only bind mount needs root")
def test_a_read_only_mount_is_explained_and_status_check_events_still_work(
    tmp_path: Path, cli: CliRunner
) -> None:
    config = _seeded(tmp_path, cli)
    view = tmp_path / "ro-state"
    view.mkdir()
    ro_config = _config(tmp_path, view, name="read-only")
    with _mounted("--bind", str(tmp_path / "state"), str(view)):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        _write_cert(tmp_path / "certs", "second.example")

        result = cli("--config", str(ro_config), "watch", "--once")
        assert result.code == 2
        assert "read-only file system; remount it read-write" in _one_clean_line(result.err)

        status = cli("--config", str(ro_config), "status")
        assert status.code == 0, status.err
        assert "first.example" in status.out
        assert cli("--config", str(ro_config), "check").code == 0
        events = cli("--config", str(ro_config), "events", "--json")
        assert events.code == 0, events.err

    assert cli("--config", str(config), "watch", "--once").code == 0
    assert kinds(read_events(tmp_path / "events.jsonl")) == ["certificate_issued"]


@pytest.mark.skipif(not ROOT, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_explained_and_the_next_pass_loses_nothing(
    tmp_path: Path, cli: CliRunner
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    with _mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)):
        _write_cert(tmp_path / "certs", "first.example")
        config = _config(tmp_path, small / "state")
        assert cli("--config", str(config), "watch", "--once").code == 0
        filler = small / "filler"
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
        for index in range(30):
            _write_cert(tmp_path / "certs", f"n{index}.example")

        result = cli("--config", str(config), "watch", "--once")
        assert result.code == 1
        assert "no space left" in result.err or "disk is full" in result.err
        assert "Traceback" not in result.err
        assert read_events(tmp_path / "events.jsonl") == []

        filler.unlink()
        assert cli("--config", str(config), "watch", "--once").code == 0
    issued = read_events(tmp_path / "events.jsonl")
    assert sorted(str(e["subject"]) for e in issued) == sorted(f"n{i}.example" for i in range(30))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: os.truncate(p, p.stat().st_size // 2), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b"\x89PNG not a database" * 500), id="not-sqlite"),
    ],
)
def test_a_damaged_database_is_kept_aside_and_the_reset_is_loud(
    tmp_path: Path, cli: CliRunner, damage: object
) -> None:
    config = _seeded(tmp_path, cli)
    database = tmp_path / "state" / "state.sqlite3"
    db = sqlite3.connect(database)  # grow it past one page, so truncation cuts something
    db.execute("CREATE TABLE padding (x)")
    db.executemany("INSERT INTO padding VALUES (?)", [("x" * 500,)] * 100)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    before = database.read_bytes()
    assert callable(damage)
    damage(database)
    damaged = database.read_bytes()
    assert damaged != before

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1
    assert "Traceback" not in result.err
    assert f"error: the state database {database} was unusable" in result.err
    kept = list((tmp_path / "state").glob("state.sqlite3.damaged-*"))
    assert [path.read_bytes() for path in kept if not path.name.endswith(("-wal", "-shm"))] == [
        damaged
    ]
    events = read_events(tmp_path / "events.jsonl")
    assert kinds(events) == ["state_reset"]
    assert events[0]["data"]["moved_to"] == str(kept[0])  # type: ignore[index]

    # The new database is a baseline: the next pass is quiet, and no reset is repeated.
    again = cli("--config", str(config), "watch", "--once")
    assert again.code == 0, again.err
    assert kinds(read_events(tmp_path / "events.jsonl")) == ["state_reset"]


def test_status_of_a_damaged_database_says_what_watch_will_do(
    tmp_path: Path, cli: CliRunner
) -> None:
    config = _seeded(tmp_path, cli)
    (tmp_path / "state" / "state.sqlite3").write_bytes(b"")

    result = cli("--config", str(config), "status")

    assert result.code == 1
    assert "is damaged (the file is empty); the next `lacme-watch watch` moves it aside" in (
        _one_clean_line(result.err)
    )
    assert (tmp_path / "state" / "state.sqlite3").read_bytes() == b""  # status changes nothing


def test_status_on_an_older_schema_says_how_to_upgrade(tmp_path: Path, cli: CliRunner) -> None:
    config = _seeded(tmp_path, cli)
    db = sqlite3.connect(tmp_path / "state" / "state.sqlite3")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION - 1),))
    db.commit()
    db.close()

    result = cli("--config", str(config), "status")

    assert result.code == 1
    expected = f"has schema {SCHEMA_VERSION - 1}, this lacme-watch reads {SCHEMA_VERSION}: run"
    assert expected in _one_clean_line(result.err)
    assert cli("--config", str(config), "watch", "--once").code == 0
    assert cli("--config", str(config), "status").code == 0


def test_emit_beside_a_running_watcher_never_moves_a_damaged_database(
    tmp_path: Path, cli: CliRunner
) -> None:
    config = _seeded(tmp_path, cli)
    database = tmp_path / "state" / "state.sqlite3"
    database.write_bytes(b"")
    holder = subprocess.Popen(  # holds the lock, as a running daemon does
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path / "state" / "lock")],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"

        result = cli("--config", str(config), "emit", "challenge_failed", "--domain",
                     "a.example", "--challenge-type", "http-01", "--error", "x")  # fmt: skip
    finally:
        holder.kill()
        holder.communicate()

    assert result.code == 1
    assert "the lacme-watch that holds the lock moves it aside" in _one_clean_line(result.err)
    assert database.read_bytes() == b""
    assert list((tmp_path / "state").glob("*.damaged-*")) == []


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""
