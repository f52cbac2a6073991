"""Plain certificate files, PEM or DER, named by paths and globs (`**` recurses).

Each matched file is a lineage keyed by the path as written (a certbot `live/`
symlink keeps its lineage across renewals). Directory symlinks are followed once:
a loop is cut by remembering each directory's device and inode.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import PurePath
from typing import Self

from ..errors import ConfigError
from ..observations import Observation, Problem, ScanResult
from ..options import Options
from ..reader import CertificateReader, looks_like_private_key

_MAGIC = re.compile(r"[*?[]")


class PemStore:
    """Certificates in files matched by glob patterns."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self.id = "pem:" + ",".join(patterns)

    @classmethod
    def from_options(cls, options: Options) -> Self:
        patterns = options.paths("paths")
        if not patterns:
            raise ConfigError(str(options.where.child("paths")), "needs at least one path or glob")
        for pattern in patterns:
            base = _split(pattern)[0]
            if not os.path.exists(base):
                options.warnings.append(
                    f"{options.where.child('paths')}: {base} does not exist (yet)"
                )
        return cls(patterns)

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        observations: list[Observation] = []
        problems: list[Problem] = []
        failed = False
        for pattern in self.patterns:
            base, rest = _split(pattern)
            if not rest:
                files: list[str] = [pattern]
                if not os.path.lexists(pattern):
                    problems.append(Problem(pattern, "not_found", lineage=pattern))
                    failed = True
                    continue
            else:
                if not os.path.isdir(base):
                    problems.append(Problem(base, "not_found"))
                    failed = True
                    continue
                files = sorted(_glob(base, rest, problems))
            for path in files:
                found = reader.bundle(lineage=path, path=path)
                if isinstance(found, Problem):
                    problems.append(replace(found, lineage=path))
                else:
                    observations += found
        return ScanResult(observations=tuple(observations), problems=tuple(problems), failed=failed)


def _split(pattern: str) -> tuple[str, tuple[str, ...]]:
    """('/etc/ssl', ('**', '*.pem')): the literal directory, then the parts with wildcards."""
    parts = PurePath(pattern).parts
    for index, part in enumerate(parts):
        if _MAGIC.search(part):
            return str(PurePath(*parts[:index])), tuple(parts[index:])
    return pattern, ()


def _glob(base: str, rest: tuple[str, ...], problems: list[Problem]) -> Iterator[str]:
    """Files under `base` whose relative path matches `rest`, without symlink loops."""
    matcher = re.compile(_translate(rest))
    recursive = "**" in rest
    max_depth = len(rest) - 1
    visited: set[tuple[int, int]] = set()

    def on_error(exc: OSError) -> None:
        reason = "permission_denied" if isinstance(exc, PermissionError) else "io_error"
        problems.append(Problem(str(exc.filename), reason, exc.strerror or ""))

    for directory, subdirectories, filenames in os.walk(base, onerror=on_error, followlinks=True):
        relative = os.path.relpath(directory, base)
        depth = 0 if relative == "." else relative.count(os.sep) + 1
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
        for filename in filenames:
            path = os.path.join(directory, filename)
            candidate = os.path.relpath(path, base).replace(os.sep, "/")
            if matcher.fullmatch(candidate) and not looks_like_private_key(path):
                yield path


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
