"""One writer per state_dir: an advisory lock on `state_dir/lock`, released by the kernel
when the process dies (so a kill -9 never leaves a stale lock behind)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StoreError


class StateLock:
    """flock(2) on state_dir/lock; the holder's pid is written in the file for messages."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another process holds it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
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
