"""The files in state_dir and what can go wrong with them: modes, faults, corruption.

Every storage fault becomes one `StoreError` line that names the file and says what
to do: a read-only file system, a database or a leftover `-shm` file that is not
writable, `state_dir` that is a regular file, `lock` that is a directory, a full disk.
A database that is empty, truncated or not SQLite at all is moved aside (kept for
inspection) and a new one is created; the caller reports that loudly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from ..errors import StoreError

DATABASE_NAME = "state.sqlite3"
_HEADER = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm", "-journal")
_CONFIG_EXIT = 2
"""state_dir set up wrongly (permissions, read-only, not a directory) is a configuration
problem: exit 2, as the spec says for usage and configuration errors."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateReset:
    """A damaged state database was moved aside and a new, empty one took its place."""

    path: Path
    moved_to: Path
    reason: str


def state_dir_error(
    path: Path, exc: OSError, doing: str, state_dir: Path | None = None
) -> StoreError:
    """One line for an OSError on `path` (state_dir or a file in it), saying what to do."""
    directory = state_dir or path
    if exc.errno == errno.EROFS:
        return StoreError(
            f"cannot {doing} {path}: read-only file system; remount it read-write,"
            " or set state_dir to a writable directory",
            exit_code=_CONFIG_EXIT,
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(
            f"cannot {doing} {path}: permission denied; run lacme-watch as the user who owns"
            f" {directory}, fix its ownership, or set state_dir to a directory this user can write",
            exit_code=_CONFIG_EXIT,
        )
    if exc.errno == errno.EISDIR:
        return StoreError(
            f"{path} is a directory; remove it (lacme-watch keeps a file of that name there)",
            exit_code=_CONFIG_EXIT,
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next(
            (p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()),
            directory,
        )
        where = "" if blocker == directory else f" ({blocker} is a file)"
        return StoreError(
            f"state_dir {directory} is not a directory{where}; remove or rename that file,"
            " or set state_dir to a directory",
            exit_code=_CONFIG_EXIT,
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"cannot {doing} {path}: no space left on the device; free some space"
            " (nothing is lost: the pass runs again)"
        )
    return StoreError(f"cannot {doing} {path}: {exc.strerror or exc}")


def make_state_dir(state_dir: Path) -> None:
    """Create state_dir 0700 (and its parents), or raise a StoreError saying what to do."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise state_dir_error(state_dir, exc, "create") from exc
    if not state_dir.is_dir():
        raise state_dir_error(state_dir, NotADirectoryError(errno.ENOTDIR, "x"), "use")


def database_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """One line for a failed SQLite call on the database at `path`, with what to do."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return _unwritable(path, exc)
    if name.startswith("SQLITE_FULL") or (name.startswith("SQLITE_IOERR") and _full(path)):
        return StoreError(
            f"cannot write {path}: the disk is full; free some space"
            " (nothing is lost: the pass runs again)"
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return StoreError(
            f"{path} is damaged ({exc}); stop lacme-watch and run it again: it moves the file"
            " aside, keeps it, and takes a new baseline"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(f"{path} is locked by another process ({exc}); try again")
    if name.startswith("SQLITE_IOERR"):
        return StoreError(f"cannot use {path}: I/O error ({exc}); check the disk and its space")
    return StoreError(f"{path}: {exc}")


def _full(path: Path) -> bool:
    """Whether the file system holding `path` has (almost) no space left for us."""
    try:
        found = os.statvfs(path.parent)
    except OSError:
        return False
    return found.f_bavail * found.f_frsize < 256 * 1024


def _unwritable(path: Path, exc: sqlite3.Error) -> StoreError:
    """Find which file stops SQLite from writing, and say it."""
    directory = path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return StoreError(
                f"cannot write {path}: read-only file system; remount it read-write, or set"
                " state_dir to a writable directory (status, check and events still work)",
                exit_code=_CONFIG_EXIT,
            )
    if path.exists() and not os.access(path, os.W_OK):
        return StoreError(
            f"cannot write {path}: permission denied (mode {_mode(path)}); run lacme-watch as"
            " its owner or make it writable (chmod u+w), and its -wal and -shm if present",
            exit_code=_CONFIG_EXIT,
        )
    for suffix in ("-shm", "-wal"):
        side = path.with_name(path.name + suffix)
        if side.exists() and not os.access(side, os.R_OK | os.W_OK):
            return StoreError(
                f"cannot write {path}: the leftover {side} is not writable"
                f" (mode {_mode(side)}); with lacme-watch stopped, make it writable"
                f" (chmod 600 {side}) or remove it",
                exit_code=_CONFIG_EXIT,
            )
    if not os.access(directory, os.W_OK | os.X_OK):
        return StoreError(
            f"cannot write in {directory}: permission denied (mode {_mode(directory)});"
            " run lacme-watch as its owner or make it writable (chmod u+rwx)",
            exit_code=_CONFIG_EXIT,
        )
    return StoreError(
        f"cannot write {path} ({exc}); check its permissions and those of -wal and -shm beside it",
        exit_code=_CONFIG_EXIT,
    )


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def damage(path: Path) -> str | None:
    """Why the file at `path` cannot be a usable SQLite database, or None if it may be.

    Cheap checks only (no full scan): empty, not SQLite, shorter than its header says.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            header = stream.read(100)
    except OSError:
        return None  # unreadable is a permission problem, reported when opening
    if size == 0:
        return "the file is empty"
    if len(header) < 100 or not header.startswith(_HEADER):
        return "not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    wal = path.with_name(path.name + "-wal")
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    # The header's page count is trusted when it matches the change counter (offset 92).
    if wal_empty and header[24:28] == header[92:96] and size < pages * page_size:
        return f"truncated: {size} bytes, the header says {pages * page_size}"
    return None


def move_aside(path: Path, reason: str, now: datetime | None = None) -> StateReset:
    """Rename the damaged database (and its -wal/-shm) out of the way, keeping them."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    moved_to = path.with_name(f"{path.name}.damaged-{stamp}")
    counter = 1
    while moved_to.exists():
        moved_to = path.with_name(f"{path.name}.damaged-{stamp}-{counter}")
        counter += 1
    try:
        for suffix in _SIDE_FILES:
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(moved_to.with_name(moved_to.name + suffix))
        path.rename(moved_to)
    except OSError as exc:
        raise state_dir_error(path, exc, "move aside the damaged", path.parent) from exc
    return StateReset(path=path, moved_to=moved_to, reason=reason)


def create_database(
    path: Path,
    reset: StateReset | None = None,
    populate: Callable[[sqlite3.Connection], None] | None = None,
) -> None:
    """A new database file, mode 0600, put in place whole (never a 0-byte file of ours).

    SQLite gives -wal and -shm the database's own mode, so they are 0600 too. A `reset`
    is written into the new file itself (meta `reset`), so a crash before it is reported
    cannot make it silent: it stays there until `StateStore.clear_reset()`. `populate`
    writes the rest of a new database (its tables, its first rows) in the same
    transaction, so the file put in place is complete and its first open writes nothing.
    """
    fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
    for leftover in (fresh, *(fresh.with_name(fresh.name + s) for s in _SIDE_FILES)):
        leftover.unlink(missing_ok=True)
    try:
        os.close(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        db = sqlite3.connect(fresh, isolation_level=None)
        try:
            # No process knows this file before link(2) below, and a crash leaves only a
            # leftover of ours: it is written with no journal file and no sync, then
            # synced once, whole, before it is put in place (SQLite's journal and WAL
            # commits cost ~8 fsyncs of a first start, for a file nobody can see yet).
            db.execute("PRAGMA journal_mode = MEMORY")
            db.execute("PRAGMA synchronous = OFF")
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            if populate is not None:
                populate(db)
            if reset is not None:
                db.execute("INSERT INTO meta VALUES ('reset', ?)", (reset_note(reset),))
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode = WAL")  # kept in the file's header
        finally:
            db.close()
        _sync_file(fresh)
        # link(2), not rename(2): if another process put a database there meanwhile, it
        # wins and ours is dropped, instead of replacing one that may already hold events.
        try:
            os.link(fresh, path)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):
                raise
            fresh.rename(path)  # a file system without hard links
            return
        fresh.unlink()
    except OSError as exc:
        fresh.unlink(missing_ok=True)
        raise state_dir_error(path, exc, "create", path.parent) from exc
    except sqlite3.Error as exc:
        fresh.unlink(missing_ok=True)
        raise database_error(path, exc) from exc
    except BaseException:  # `populate` failed otherwise: no leftover of ours stays
        fresh.unlink(missing_ok=True)
        raise


def _sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def reset_note(reset: StateReset) -> str:
    return json.dumps(
        {"path": str(reset.path), "moved_to": str(reset.moved_to), "reason": reset.reason}
    )


def read_reset_note(text: str) -> StateReset:
    note = json.loads(text)
    return StateReset(
        path=Path(note["path"]), moved_to=Path(note["moved_to"]), reason=note["reason"]
    )


def tighten_mode(path: Path) -> None:
    """Databases made by older versions were 0644: make them 0600 (they hold names)."""
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & 0o700)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open for reading only, with no lock: works on a read-only mount and a 0400 file.

    A WAL database needs its -shm to read; where that cannot be created (a read-only
    file system), SQLite's `immutable` mode reads the file as it is.
    """
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        with contextlib.suppress(NameError):
            db.close()
    try:
        db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise database_error(path, exc) from exc
    return db
