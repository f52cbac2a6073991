"""A lacme FileStore: `<path>/certs/<key>/{cert.pem,fullchain.pem,meta.json}`.

lacme overwrites a certificate in place (no history), writes meta.json last as its
commit marker, may leave `*.tmp` files after a crash, stores wildcard and IPv6 keys
under hashed `lacme-v2-<sha256>` directories (the name is only in meta.json), and
leaves a 0-byte key.pem on the CA side. Keys are never opened. We walk the tree
ourselves: `FileStore.list_certs()` stops at the first odd entry, while an operator
needs every other certificate still reported.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, Self

from ...detection.renewal import LACME_DEFAULT
from ...instants import parse_time
from ...observations import Entries, Issuance, Listing, Observation, Problem, ScanResult
from ...options import Options
from ...reading.guarded import follows_any_symlink, stored_lineage, undecodable_name

if TYPE_CHECKING:  # the reader (and cryptography) loads only for a store that reads a file
    from ...reading.reader import CertificateReader

_META = "meta.json"
"""What lacme writes last into a certificate directory: the store key and its names."""


class LacmeStore:
    """Certificates issued by lacme (ACME or its CA) into a FileStore base directory."""

    stat_record: ClassVar[bool] = True
    """What a scan says follows from the files it reads (statrecord.py)."""

    def __init__(self, path: str, *, follow_any: bool = False) -> None:
        self.path = path
        self.follow_any = follow_any
        self.id = f"lacme:{path}"

    @classmethod
    def from_options(cls, options: Options) -> Self:
        path = options.path("path", "~/.lacme", must_exist=True)
        return cls(path, follow_any=follows_any_symlink(options))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        listed = self.listing(reader)
        names = [os.path.basename(path) for path, _ in listed.entries]
        observations, problems = self._read(reader, names)
        whole = listed.whole
        return replace(
            whole, observations=tuple(observations), problems=whole.problems + tuple(problems)
        )

    def listing(self, reader: CertificateReader) -> Listing:
        """Every certificate directory a scan reads, listed but not opened (a first pass
        reads a large store in slices of them, through rescan()), with what the store
        says as a whole: its root's problems and lacme's issuance history."""
        reader.confine(self.path, follow_any=self.follow_any)
        certs = os.path.join(self.path, "certs")
        reader.will_list(self.path)  # certs/ and rate_limits.json appear here
        reader.will_list(certs)
        try:
            entries = sorted(os.scandir(certs), key=lambda entry: entry.name)
        except FileNotFoundError:
            if os.path.isdir(self.path):  # no certificate saved yet; maybe issuance history
                return Listing((), ScanResult(issuances=tuple(self._rate_limit_records(reader))))
            return Listing((), ScanResult(problems=(Problem(self.path, "not_found"),), failed=True))
        except PermissionError:
            problem = Problem(certs, "permission_denied")
            return Listing((), ScanResult(problems=(problem,), failed=True))
        except NotADirectoryError:
            problem = Problem(certs, "not_found", "not a directory")
            return Listing((), ScanResult(problems=(problem,), failed=True))
        directories = [
            entry.path for entry in entries if not entry.name.endswith(".tmp") and entry.is_dir()
        ]
        del entries  # 100,000 DirEntry objects: not kept while the slices are read
        issuances = tuple(self._rate_limit_records(reader))
        reads_in = "fullchain.pem" if reader.chain else "cert.pem"
        return Listing(
            Entries(directories, directories=True),
            ScanResult(issuances=issuances),
            reads_in,
            _META,
        )

    def rescan(
        self, reader: CertificateReader, changed: Sequence[tuple[str, bool]]
    ) -> ScanResult | None:
        """Only the certificate directories in which something changed since the last
        pass (lacme rewrites a directory's files when it renews); None, for a full
        scan, when the store's root, `certs/` or anything outside a certificate
        directory changed (one came or went, rate_limits.json)."""
        certs = os.path.join(self.path, "certs") + os.sep
        names: set[str] = set()
        for path, _ in changed:
            name = path.removeprefix(certs).partition(os.sep)[0]
            if not path.startswith(certs) or not name:
                return None
            names.add(name)
        reader.confine(self.path, follow_any=self.follow_any)
        wanted = sorted(name for name in names if os.path.isdir(certs + name))
        observations, problems = self._read(reader, wanted)
        return ScanResult(
            observations=tuple(observations),
            problems=tuple(problems),
            covered=frozenset(stored_lineage(f"certs/{name}") for name in names),
        )

    def _read(
        self, reader: CertificateReader, names: Sequence[str]
    ) -> tuple[list[Observation], list[Problem]]:
        """The observations of these certificate directories (under certs/), or their
        problems; a large batch of new files is read by two processes (forked.py)."""
        certs = os.path.join(self.path, "certs")
        wanted = [name for name in names if not name.endswith(".tmp")]
        name = "fullchain.pem" if reader.chain else "cert.pem"
        reader.prefetch([os.path.join(certs, entry, name) for entry in wanted], metadata=_META)
        observations: list[Observation] = []
        problems: list[Problem] = []
        for entry in wanted:
            self._entry(os.path.join(certs, entry), entry, reader, observations, problems)
        return observations, problems

    def _entry(
        self,
        directory: str,
        name: str,
        reader: CertificateReader,
        observations: list[Observation],
        problems: list[Problem],
    ) -> None:
        """One certificate directory's observations or problem, added to the lists."""
        if unreadable := undecodable_name(directory, f"certs/{name}"):
            problems.append(unreadable)
            return
        found = self._scan_entry(directory, name, reader)
        if isinstance(found, Problem):
            problems.append(replace(found, lineage=f"certs/{name}"))
        else:
            observations += found

    def _rate_limit_records(self, reader: CertificateReader) -> list[Issuance]:
        """lacme's RateLimitTracker history (rate_limits.json), if it keeps one here."""
        path = os.path.join(self.path, "rate_limits.json")
        if not os.path.exists(path):
            return []
        rows = reader.read_json(path)
        if not isinstance(rows, list):
            return []  # lacme itself treats a malformed file as empty
        found = []
        for row in rows:
            if not isinstance(row, dict):
                continue
            domains, issued_at = row.get("domains"), row.get("issued_at")
            if not isinstance(domains, list) or not isinstance(issued_at, str):
                continue
            try:
                when = parse_time(issued_at)
            except ValueError:
                continue
            names = tuple(str(d) for d in domains)
            key = hashlib.sha256(f"{sorted(names)}|{issued_at}".encode()).hexdigest()
            found.append(Issuance(key, names, when, certificate=False))
        return found

    def _scan_entry(
        self, directory: str, name: str, reader: CertificateReader
    ) -> list[Observation] | Problem:
        # The reader's own lstat says whether a file is there ("not_found" is never a
        # symlink, broken ones are "broken_symlink"): no second lstat to ask first.
        meta_path = os.path.join(directory, _META)
        meta = reader.read_json(meta_path)
        if isinstance(meta, Problem):
            if meta.reason == "not_found":
                return []  # lacme ignores directories without meta.json (a first write)
            return meta
        domain, domains = _names(meta)
        if domain is None:
            return Problem(meta_path, "bad_metadata", "needs 'domain' and 'domains'")
        lineage = f"certs/{name}"
        certificate = os.path.join(directory, "fullchain.pem" if reader.chain else "cert.pem")
        found = reader.bundle(
            lineage=lineage,
            path=certificate,
            domain=domain,
            domains=domains,
            renewal=LACME_DEFAULT,  # lacme's RenewalManager renews these unless told otherwise
        )
        if reader.chain and isinstance(found, Problem) and found.reason == "not_found":
            certificate = os.path.join(directory, "cert.pem")  # lacme before fullchain.pem
            found = reader.bundle(
                lineage=lineage,
                path=certificate,
                domain=domain,
                domains=domains,
                renewal=LACME_DEFAULT,
            )
        return found


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
