"""Following an ACME client's log across passes: from where the last pass stopped.

The position (inode, offset) is the source's cursor, committed with the pass. Both
rotation styles certbot users meet are handled: upstream renames the log at every
run (`letsencrypt.log` -> `.1` -> `.2` ..., the inode moves with the name), so the
unread tail is found by inode among the numbered files; Debian appends and lets
logrotate rotate weekly, so the file simply grows between passes. The last record is
held back until another follows it, so a record being written is never read half.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ...observations import Problem

MAX_READ = 64 * 1024 * 1024
"""Most new log read in one pass; the rest waits for the next."""


@dataclass(frozen=True, slots=True)
class Position:
    inode: int
    offset: int

    def dump(self) -> str:
        return json.dumps({"inode": self.inode, "offset": self.offset})

    @classmethod
    def load(cls, text: str | None) -> Position | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(int(raw["inode"]), int(raw["offset"]))
        except (ValueError, KeyError, TypeError):
            return None


def follow(
    path: str, cursor: str | None, record_start: Callable[[str], bool]
) -> tuple[str, str | None] | Problem:
    """New complete records since `cursor`, and the cursor to keep.

    With no cursor (the first pass) nothing is returned: the position is recorded.
    A missing log is not a problem (the client has not run yet).
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "", cursor
    except PermissionError:
        return Problem(path, "permission_denied")
    position = Position.load(cursor)
    if position is None:
        return "", Position(status.st_ino, status.st_size).dump()
    texts: list[str] = []
    offset = position.offset
    if status.st_ino != position.inode or status.st_size < position.offset:
        texts += _rotated_tail(path, position)
        offset = 0
    text, consumed = _complete_records(path, offset, record_start)
    texts.append(text)
    return "".join(texts), Position(status.st_ino, offset + consumed).dump()


def _rotated_tail(path: str, position: Position) -> list[str]:
    """What the last pass did not read of the rotated file, and any whole newer ones."""
    numbered: list[tuple[int, str]] = []
    directory, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.(\d+)$")
    for entry in os.listdir(directory or "."):
        if match := pattern.match(entry):
            numbered.append((int(match.group(1)), os.path.join(directory, entry)))
    numbered.sort()
    for index, (_, candidate) in enumerate(numbered):
        try:
            if os.stat(candidate).st_ino != position.inode:
                continue
        except OSError:
            continue
        texts = [_read(candidate, position.offset)]
        texts += [_read(newer, 0) for _, newer in reversed(numbered[:index])]
        return texts
    return []  # rotated away and compressed: that tail is lost (logrotate without delaycompress)


def _read(path: str, offset: int) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            return stream.read(MAX_READ).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _complete_records(
    path: str, offset: int, record_start: Callable[[str], bool]
) -> tuple[str, int]:
    """Text from offset up to the start of the last record (which may still be growing)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            data = stream.read(MAX_READ)
    except OSError:
        return "", 0
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode("utf-8", errors="replace").splitlines(keepends=True)
    keep = len(lines)
    for index in range(len(lines) - 1, -1, -1):
        if record_start(lines[index]):
            keep = index
            break
    text = "".join(lines[:keep])
    return text, len(text.encode("utf-8", errors="replace"))
