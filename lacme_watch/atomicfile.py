"""A file written whole or not at all: a temporary file beside it, then a rename over
it, so a reader (the spool's collector, the next pass) never sees half of it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_whole(path: Path, data: bytes, *, fsync: bool, prefix: str = ".") -> None:
    """`data` at `path`, atomically; `fsync` first when it must survive a power cut (an
    event), not when it can be rebuilt (a compiled cache)."""
    import tempfile  # only where a file is written: never on a quiet pass

    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
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
