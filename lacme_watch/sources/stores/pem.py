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

from ...observations import Entries, Listing, Observation, Problem, ScanResult
from ...options import Options
from ...reading.guarded import follows_any_symlink, stored_lineage
from ._globwalk import matching_files, patterns_of, roots_of, split_pattern

if TYPE_CHECKING:
    from ...reading.reader import CertificateReader


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
        listed = self.listing(reader)
        paths = [path for path, _ in listed.entries]
        reader.prefetch(paths)
        observations, problems = self._read(reader, paths)
        whole = listed.whole
        return replace(
            whole, observations=tuple(observations), problems=whole.problems + tuple(problems)
        )

    def listing(self, reader: CertificateReader) -> Listing:
        """Every file a scan reads, matched but not opened (a first pass reads a large
        store in slices of them, through rescan()), and the problems of its roots."""
        reader.confine(*self.roots, follow_any=self.follow_any)
        paths: list[str] = []
        problems: list[Problem] = []
        failed = False
        for pattern in self.patterns:
            base, rest = split_pattern(pattern)
            if not rest:
                if not os.path.lexists(pattern):
                    problems.append(Problem(pattern, "not_found", lineage=pattern))
                    failed = True
                    continue
                paths.append(pattern)
            elif not os.path.isdir(base):
                problems.append(Problem(base, "not_found"))
                failed = True
            else:
                paths += sorted(matching_files(base, rest, problems, reader))
        whole = ScanResult(problems=tuple(problems), failed=failed)
        return Listing(Entries(paths, directories=False), whole)

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
        paths = [path for path, _ in changed]
        reader.prefetch(paths)
        observations, problems = self._read(reader, paths)
        return ScanResult(
            observations=tuple(observations),
            problems=tuple(problems),
            covered=frozenset(stored_lineage(path) for path in paths),
        )

    @staticmethod
    def _read(
        reader: CertificateReader, paths: Sequence[str]
    ) -> tuple[list[Observation], list[Problem]]:
        """Each file's observations (its path is its lineage), or its problem."""
        observations: list[Observation] = []
        problems: list[Problem] = []
        for path in paths:
            found = reader.bundle(lineage=path, path=path)
            if isinstance(found, Problem):
                problems.append(replace(found, lineage=found.lineage or path))
            else:
                observations += found
        return observations, problems
