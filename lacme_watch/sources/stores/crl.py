"""CRL files, PEM or DER, named by paths and globs: the copies OpenVPN, nginx or an mTLS
proxy load (`crl-verify`, `ssl_crl`), watched for their nextUpdate.

Once a loaded CRL passes its nextUpdate, OpenVPN and many mTLS servers refuse every
client; each file is a lineage `crl:<path>` with the expiry thresholds applied to
the CRL's validity (thisUpdate to nextUpdate). Globs and symlinks stay inside the
patterns' directories, as in the pem store, unless `follow_symlinks: any`.
"""

from __future__ import annotations

import os
from typing import Self

from ...observations import CrlSeen, Problem, ScanResult
from ...options import Options
from ...reading.guarded import follows_any_symlink
from ...reading.reader import CertificateReader
from ..crl import read_crl_file
from ._globwalk import matching_files, patterns_of, roots_of, split_pattern


class CrlStore:
    """CRLs in files matched by glob patterns (`**` recurses)."""

    def __init__(self, patterns: tuple[str, ...], *, follow_any: bool = False) -> None:
        self.patterns = patterns
        self.follow_any = follow_any
        self.id = "crl:" + ",".join(patterns)

    @classmethod
    def from_options(cls, options: Options) -> Self:
        patterns = patterns_of(options)
        return cls(patterns, follow_any=follows_any_symlink(options))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        reader.confine(*roots_of(self.patterns), follow_any=self.follow_any)
        crls: list[CrlSeen] = []
        problems: list[Problem] = []
        for pattern in self.patterns:
            base, rest = split_pattern(pattern)
            if not rest:
                paths = [pattern]
            elif os.path.isdir(base):
                paths = sorted(matching_files(base, rest, problems, reader))
            else:
                paths = []
            for path in paths:
                found = read_crl_file(reader, path)
                if isinstance(found, Problem):
                    problems.append(found)
                else:
                    crls.append(found)
        return ScanResult(crls=tuple(crls), problems=tuple(problems))
