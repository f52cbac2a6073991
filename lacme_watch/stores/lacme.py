"""A lacme FileStore: `<path>/certs/<key>/{cert.pem,fullchain.pem,meta.json}`.

lacme overwrites a certificate in place (no history), writes meta.json last as its
commit marker, may leave `*.tmp` files after a crash, stores wildcard and IPv6 keys
under hashed `lacme-v2-<sha256>` directories (the name is only in meta.json), and
leaves a 0-byte key.pem on the CA side. Keys are never opened. We walk the tree
ourselves: `FileStore.list_certs()` stops at the first odd entry, while an operator
needs every other certificate still reported.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Self

from ..certificates import CertificateReader
from ..observations import Observation, Problem, ScanResult
from ..options import Options


class LacmeStore:
    """Certificates issued by lacme (ACME or its CA) into a FileStore base directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.id = f"lacme:{path}"

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(options.path("path", "~/.lacme", must_exist=True))

    def scan(self, reader: CertificateReader) -> ScanResult:
        certs = os.path.join(self.path, "certs")
        try:
            entries = sorted(os.scandir(certs), key=lambda entry: entry.name)
        except FileNotFoundError:
            if os.path.isdir(self.path):
                return ScanResult()  # a store that has issued nothing yet
            return ScanResult(problems=(Problem(self.path, "not_found"),), failed=True)
        except PermissionError:
            return ScanResult(problems=(Problem(certs, "permission_denied"),), failed=True)
        except NotADirectoryError:
            return ScanResult(
                problems=(Problem(certs, "not_found", "not a directory"),), failed=True
            )
        observations: list[Observation] = []
        problems: list[Problem] = []
        for entry in entries:
            if entry.name.endswith(".tmp") or not entry.is_dir():
                continue
            found = self._scan_entry(entry.path, entry.name, reader)
            if isinstance(found, Problem):
                problems.append(replace(found, lineage=f"certs/{entry.name}"))
            else:
                observations += found
        return ScanResult(observations=tuple(observations), problems=tuple(problems))

    def _scan_entry(
        self, directory: str, name: str, reader: CertificateReader
    ) -> list[Observation] | Problem:
        meta_path = os.path.join(directory, "meta.json")
        if not os.path.lexists(meta_path):
            return []  # lacme ignores directories without meta.json (a first write in flight)
        meta = reader.read_json(meta_path)
        if isinstance(meta, Problem):
            return meta
        domain, domains = _names(meta)
        if domain is None:
            return Problem(meta_path, "bad_metadata", "needs 'domain' and 'domains'")
        certificate = os.path.join(directory, "fullchain.pem" if reader.chain else "cert.pem")
        if reader.chain and not os.path.lexists(certificate):
            certificate = os.path.join(directory, "cert.pem")
        return reader.bundle(
            lineage=f"certs/{name}", path=certificate, domain=domain, domains=domains
        )


def _names(meta: object) -> tuple[str | None, tuple[str, ...]]:
    """meta.json's `domain` (the store key) and `domains` (in requested order)."""
    if not isinstance(meta, dict):
        return None, ()
    domain = meta.get("domain")
    domains = meta.get("domains")
    if not isinstance(domain, str) or not isinstance(domains, list):
        return None, ()
    if not all(isinstance(name, str) for name in domains):
        return None, ()
    return domain, tuple(domains)
