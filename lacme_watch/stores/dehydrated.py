"""dehydrated's certificate directory (its `CERTDIR`): `<certs>/<domain>/cert.pem`.

Each domain directory holds timestamped files (`cert-<ts>.pem`, `fullchain-<ts>.pem`)
and symlinks to the current ones; a renewal re-points the symlinks. A failed run
leaves a 0-byte `cert-<ts>.pem` and moves no symlink: that is not an error, and the
timestamped files are never read as lineages. `privkey*.pem` is never opened.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Self

from ..observations import Observation, Problem, ScanResult
from ..options import Options
from ..reader import CertificateReader


class DehydratedStore:
    """Lineages in dehydrated's CERTDIR (`/var/lib/dehydrated/certs`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.id = f"dehydrated:{path}"

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(options.path("path", "/var/lib/dehydrated/certs", must_exist=True))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        try:
            names = sorted(entry.name for entry in os.scandir(self.path) if entry.is_dir())
        except FileNotFoundError:
            return ScanResult(problems=(Problem(self.path, "not_found"),), failed=True)
        except PermissionError:
            return ScanResult(problems=(Problem(self.path, "permission_denied"),), failed=True)
        observations: list[Observation] = []
        problems: list[Problem] = []
        for name in names:
            directory = os.path.join(self.path, name)
            current = os.path.join(directory, "fullchain.pem" if reader.chain else "cert.pem")
            if not os.path.lexists(current):
                continue  # only leftovers of a failed first run: nothing issued yet
            found = reader.bundle(lineage=name, path=current)
            if isinstance(found, Problem):
                problems.append(replace(found, lineage=name))
            else:
                observations += found
        return ScanResult(observations=tuple(observations), problems=tuple(problems))
