"""CRL files, PEM or DER, named by paths and globs: the copies OpenVPN, nginx or an mTLS
proxy load (`crl-verify`, `ssl_crl`), watched for their nextUpdate.

Once a loaded CRL passes its nextUpdate, OpenVPN and many mTLS servers refuse every
client; each file is a lineage `crl:<path>` with the expiry thresholds applied to
the CRL's validity (thisUpdate to nextUpdate).
"""

from __future__ import annotations

import glob
import os
from typing import Self

from ..crl import read_crl_file
from ..errors import ConfigError
from ..observations import CrlSeen, Problem, ScanResult
from ..options import Options
from ..reader import CertificateReader


class CrlStore:
    """CRLs in files matched by glob patterns (`**` recurses)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self.id = "crl:" + ",".join(patterns)

    @classmethod
    def from_options(cls, options: Options) -> Self:
        patterns = options.paths("paths")
        if not patterns:
            raise ConfigError(str(options.where.child("paths")), "needs at least one path or glob")
        return cls(patterns)

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        crls: list[CrlSeen] = []
        problems: list[Problem] = []
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            else:
                paths = [pattern]
            for path in paths:
                found = read_crl_file(reader, path)
                if isinstance(found, Problem):
                    problems.append(found)
                else:
                    crls.append(found)
        return ScanResult(crls=tuple(crls), problems=tuple(problems))
