"""Plain certificate files, PEM or DER, named by paths and globs (`**` recurses).

Each matched file is a lineage keyed by the path as written (a certbot `live/`
symlink keeps its lineage across renewals). The store's roots are each pattern's
literal directory (a plain path's own directory): a symlink, to a file or to a
directory, whose target leaves them is `outside_store` unless `follow_symlinks: any`.
Directory symlinks inside are followed once: every directory is visited at most once,
by device and inode, so `up -> ..` and loops cannot scan a tree twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, Self

from ..guarded import follows_any_symlink
from ..observations import Observation, Problem, ScanResult
from ..options import Options
from ._globwalk import matching_files, patterns_of, roots_of, split_pattern

if TYPE_CHECKING:
    from ..reader import CertificateReader


class PemStore:
    """Certificates in files matched by glob patterns."""

    stat_record: ClassVar[bool] = True
    """What a scan says follows from the files it reads (statrecord.py)."""

    def __init__(self, patterns: tuple[str, ...], *, follow_any: bool = False) -> None:
        self.patterns = patterns
        self.follow_any = follow_any
        self.id = "pem:" + ",".join(patterns)
        self.roots = roots_of(patterns)

    @classmethod
    def from_options(cls, options: Options) -> Self:
        patterns = patterns_of(options)
        for pattern in patterns:
            base = split_pattern(pattern)[0]
            if not os.path.exists(base):
                options.warnings.append(
                    f"{options.where.child('paths')}: {base} does not exist (yet)"
                )
        return cls(patterns, follow_any=follows_any_symlink(options))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        reader.confine(*self.roots, follow_any=self.follow_any)
        observations: list[Observation] = []
        problems: list[Problem] = []
        failed = False
        for pattern in self.patterns:
            base, rest = split_pattern(pattern)
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
                files = sorted(matching_files(base, rest, problems, reader))
                reader.prefetch(files)
            for path in files:
                found = reader.bundle(lineage=path, path=path)
                if isinstance(found, Problem):
                    problems.append(replace(found, lineage=found.lineage or path))
                else:
                    observations += found
        return ScanResult(observations=tuple(observations), problems=tuple(problems), failed=failed)

    def rescan(
        self, reader: CertificateReader, changed: Sequence[tuple[str, bool]]
    ) -> ScanResult | None:
        """Only the files that changed in place since the last pass (their stat record
        says which); None, for a full scan, once any directory changed (a file came,
        went or was renamed)."""
        if any(directory for _, directory in changed):
            return None
        if any(os.path.realpath(root) != root for root in self.roots):
            return None  # the record holds real paths; lineages are paths as written
        reader.confine(*self.roots, follow_any=self.follow_any)
        observations: list[Observation] = []
        problems: list[Problem] = []
        for path, _ in changed:
            found = reader.bundle(lineage=path, path=path)
            if isinstance(found, Problem):
                problems.append(replace(found, lineage=found.lineage or path))
            else:
                observations += found
        return ScanResult(
            observations=tuple(observations),
            problems=tuple(problems),
            covered=frozenset(path for path, _ in changed),
        )
