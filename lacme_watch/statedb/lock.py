"""One writer per state_dir: an advisory lock on `state_dir/lock`, released by the kernel
when the process dies (so a kill -9 never leaves a stale lock behind)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StoreError
from .files import make_state_dir, state_dir_error


class StateLock:
    """flock(2) on state_dir/lock; the holder's pid is written in the file for messages."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another process holds it.

        Raises StoreError (one line, what to do) when state_dir cannot be created or the
        lock file cannot be opened: no permission, a read-only file system, `lock` a
        directory, state_dir a regular file.
        """
        make_state_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise state_dir_error(self.path, exc, "open the lock file", self.path.parent) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: the pid is only for messages, the lock holds anyway
            pass
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def require(self) -> None:
        """Take the lock or raise, naming the process that holds it."""
        if not self.acquire():
            raise StoreError(
                f"another lacme-watch (pid {self.holder()}) is using {self.path.parent};"
                " stop it first, or give this one its own state_dir"
            )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.require()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
