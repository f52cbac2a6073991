"""A file written whole or not at all: a temporary file beside it, then a rename over
it, so a reader (the spool's collector, the next pass) never sees half of it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_ATTEMPTS = 100


def write_whole(path: Path, data: bytes, *, fsync: bool, prefix: str = ".") -> None:
    """`data` at `path`, atomically; `fsync` first when it must survive a power cut (an
    event), not when it can be rebuilt (a compiled cache)."""
    fd, temporary = _create_beside(path, prefix)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _create_beside(path: Path, prefix: str) -> tuple[int, str]:
    """A new file (0600, never an existing name or a symlink) in `path`'s directory, as
    tempfile.mkstemp makes one, without importing tempfile (and its random, shutil):
    a cron pass's first start writes the parsed configuration (config/cache.py)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_ATTEMPTS):
        temporary = os.path.join(path.parent, f"{prefix}{os.urandom(6).hex()}.tmp")
        try:
            return os.open(temporary, flags, 0o600), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")
