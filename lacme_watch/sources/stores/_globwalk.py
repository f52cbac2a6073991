"""Glob patterns over a store's files (`*`, `?`, `[...]`, `**` across directories),
walked so that they stay inside the store: each directory is visited once, by device
and inode (loops and `up -> ..` cannot scan a tree twice), and a directory symlink
whose real path leaves the reader's roots is `outside_store`, decided before it is
listed. Used by the pem and crl stores.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import PurePath
from typing import TYPE_CHECKING

from ...errors import ConfigError
from ...observations import Problem
from ...options import Options
from ...reading.guarded import looks_like_private_key, printable

if TYPE_CHECKING:
    from ...reading.reader import CertificateReader

_MAGIC = re.compile(r"[*?[]")


def patterns_of(options: Options) -> tuple[str, ...]:
    """The store's `paths:`; a lone `path:` or an empty list is a configuration error."""
    patterns = options.paths("paths")
    if not patterns and (single := options.node("path")) is not None:
        raise ConfigError(str(single.where), "this store takes `paths:`, a list of paths or globs")
    if not patterns:
        raise ConfigError(str(options.where.child("paths")), "needs at least one path or glob")
    return patterns


def roots_of(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Each pattern's literal directory; a plain path's own directory."""
    return tuple(
        base if rest else os.path.dirname(pattern)
        for pattern in patterns
        for base, rest in (split_pattern(pattern),)
    )


def split_pattern(pattern: str) -> tuple[str, tuple[str, ...]]:
    """('/etc/ssl', ('**', '*.pem')): the literal directory, then the parts with wildcards."""
    parts = PurePath(pattern).parts
    for index, part in enumerate(parts):
        if _MAGIC.search(part):
            return str(PurePath(*parts[:index])), tuple(parts[index:])
    return pattern, ()


def matching_files(
    base: str, rest: tuple[str, ...], problems: list[Problem], reader: CertificateReader
) -> Iterator[str]:
    """Files under `base` whose relative path matches `rest`: each directory once (by
    device and inode), and none whose real path leaves the store's roots."""
    matcher = re.compile(_translate(rest))
    recursive = "**" in rest
    max_depth = len(rest) - 1
    visited: set[tuple[int, int]] = set()
    reader.will_list(base)

    def on_error(exc: OSError) -> None:
        reason = "permission_denied" if isinstance(exc, PermissionError) else "io_error"
        problems.append(Problem(printable(str(exc.filename)), reason, exc.strerror or ""))

    for directory, subdirectories, filenames in os.walk(base, onerror=on_error, followlinks=True):
        relative = os.path.relpath(directory, base)
        depth = 0 if relative == "." else relative.count(os.sep) + 1
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        try:
            status = os.stat(directory)
        except OSError:
            subdirectories[:] = []
            continue
        key = (status.st_dev, status.st_ino)
        if key in visited:
            subdirectories[:] = []
            continue
        visited.add(key)
        if not recursive and depth >= max_depth:
            subdirectories[:] = []
        # Decided before os.walk lists them: a directory outside is never even listed.
        subdirectories[:] = [
            name
            for name in subdirectories
            if _enterable(os.path.join(directory, name), reader, visited, problems)
        ]
        for filename in filenames:  # one relpath per directory, not per file: large stores
            if matcher.fullmatch(prefix + filename) and not looks_like_private_key(filename):
                yield os.path.join(directory, filename)


def _enterable(
    path: str,
    reader: CertificateReader,
    visited: set[tuple[int, int]],
    problems: list[Problem],
) -> bool:
    """A subdirectory not seen yet (by device and inode) and, if a symlink, one whose
    real path stays inside the store's roots."""
    try:
        status = os.stat(path)
    except OSError:
        return False  # a broken directory link holds nothing to read
    if (status.st_dev, status.st_ino) in visited:
        return False
    reader.will_list(path)  # before os.walk lists it
    if os.path.islink(path) and not reader.inside(real := os.path.realpath(path)):
        problems.append(
            Problem(
                printable(path),
                "outside_store",
                f"a directory symlink to {printable(real)}, outside"
                f" {', '.join(reader.roots)}: not followed (follow_symlinks: any would)",
            )
        )
        return False
    return True


def _translate(parts: tuple[str, ...]) -> str:
    """A regex for glob parts: `*`, `?`, `[...]` within a name; `**` across directories."""
    pieces = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:[^/]+/)*")
            continue
        pieces.append(_translate_name(part) + ("" if last else "/"))
    return "".join(pieces)


def _translate_name(name: str) -> str:
    out = []
    index = 0
    while index < len(name):
        char = name[index]
        index += 1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := name.find("]", index + 1)) != -1:
            body = name[index:end]
            index = end + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
        else:
            out.append(re.escape(char))
    return "".join(out)
