"""lacme's CertificateAuthority root: `<path>/ca/<name>/cert.pem`.

The key.pem beside it is never read.
"""

from __future__ import annotations

import os
from typing import Self

from ...observations import Observation, Problem, ScanResult
from ...options import Options
from ...reading.certfacts import describe
from ...reading.guarded import follows_any_symlink
from ...reading.reader import CertificateReader


class LacmeAuthority:
    """A lacme CA; stores check every new certificate's signature against its key."""

    def __init__(self, path: str, name: str, *, follow_any: bool = False) -> None:
        self.path = path
        self.name = name
        self.follow_any = follow_any
        self.certificate_path = os.path.join(path, "ca", name, "cert.pem")
        self.id = f"lacme-ca:{path}#{name}"

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(
            options.path("path", "~/.lacme", must_exist=True),
            options.string("name", "root"),
            follow_any=follows_any_symlink(options),
        )

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        reader.confine(self.path, follow_any=self.follow_any)
        loaded = reader.load_certificates(self.certificate_path)
        if isinstance(loaded, Problem):
            return ScanResult(problems=(loaded,), failed=True)
        if not loaded:
            problem = Problem(self.certificate_path, "no_certificate_found")
            return ScanResult(problems=(problem,), failed=True)
        root = loaded[0]
        facts = describe(root)
        observation = Observation(
            lineage=f"ca/{self.name}",
            role="ca",
            path=self.certificate_path,
            domain=facts.subject_cn or self.name,
            domains=(facts.subject_cn or self.name,),
            certificate=facts,
        )
        return ScanResult(observations=(observation,), signers=(root,))
