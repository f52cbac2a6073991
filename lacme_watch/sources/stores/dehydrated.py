"""dehydrated's certificate directory (its `CERTDIR`): `<certs>/<domain>/cert.pem`.

Each domain directory holds timestamped files (`cert-<ts>.pem`, `fullchain-<ts>.pem`)
and symlinks to the current ones; a renewal re-points the symlinks. A failed run
leaves a 0-byte `cert-<ts>.pem` and moves no symlink: that is not an error, and the
timestamped files are never read as lineages. `privkey*.pem` is never opened.

The renewal policy is dehydrated's RENEW_DAYS: from the per-certificate
`<certs>/<domain>/config` if it sets one, else from the `config:` file the store
names, else dehydrated's default.

A pass after a renewal reads again only the domain directories in which something
changed (rescan()): dehydrated keeps each domain's files, and the links between
them, in its own directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import ClassVar, Self

from ...detection.renewal import dehydrated_policy, dehydrated_renew_days
from ...observations import Observation, Problem, ScanResult
from ...options import Options
from ...reading.guarded import follows_any_symlink, stored_lineage
from ...reading.reader import CertificateReader


class DehydratedStore:
    """Lineages in dehydrated's CERTDIR (`/var/lib/dehydrated/certs`)."""

    names_acme_directory: ClassVar[bool] = True
    """Its files name the ACME directory its certificates came from (its config's `CA`):
    ARI can be asked (ari/directories.py)."""
    stat_record: ClassVar[bool] = True
    """What a scan says follows from the files it reads (statrecord.py): the CA the
    ARI round asks is read by the round itself, every pass."""

    def __init__(self, path: str, config: str | None = None, *, follow_any: bool = False) -> None:
        self.path = path
        self.config = config
        self.follow_any = follow_any
        self.id = f"dehydrated:{path}"

    @classmethod
    def from_options(cls, options: Options) -> Self:
        path = options.path("path", "/var/lib/dehydrated/certs", must_exist=True)
        config = options.path("config", must_exist=True) if "config" in options else None
        return cls(path, config, follow_any=follows_any_symlink(options))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        self._confine(reader)
        reader.will_list(self.path)  # a domain directory comes or goes
        try:
            names = sorted(entry.name for entry in os.scandir(self.path) if entry.is_dir())
        except FileNotFoundError:
            return ScanResult(problems=(Problem(self.path, "not_found"),), failed=True)
        except PermissionError:
            return ScanResult(problems=(Problem(self.path, "permission_denied"),), failed=True)
        problems: list[Problem] = []
        observations = self._read(reader, names, problems, self._renew_days(reader, problems))
        return ScanResult(observations=tuple(observations), problems=tuple(problems))

    def rescan(
        self, reader: CertificateReader, changed: Sequence[tuple[str, bool]]
    ) -> ScanResult | None:
        """Only the domain directories in which something changed since the last pass
        (a renewal adds timestamped files and re-points the links), and those that came
        or went (a name the stat record did not hold in CERTDIR is new). None, for a
        full scan, when anything else changed (the `config:` file: RENEW_DAYS), or for
        a CERTDIR reached through a symlink (the record holds real paths)."""
        if os.path.realpath(self.path) != self.path:
            return None
        names: set[str] = set()
        listed = False
        for path, _ in changed:
            name, _, _ = path.removeprefix(self.path + os.sep).partition(os.sep)
            if path == self.path:
                listed = True
            elif path.startswith(self.path + os.sep) and name:
                names.add(name)
            else:
                return None
        self._confine(reader)
        if listed:  # a domain directory came or went
            known = reader.recorded_in(self.path)
            if known is None:
                return None
            reader.will_list(self.path)
            try:
                names.update(
                    entry.name for entry in os.scandir(self.path) if entry.name not in known
                )
            except OSError:
                return None
        problems: list[Problem] = []
        days = self._renew_days(reader, [])  # unchanged: its problem, if any, stands
        wanted = sorted(name for name in names if os.path.isdir(os.path.join(self.path, name)))
        observations = self._read(reader, wanted, problems, days)
        return ScanResult(
            observations=tuple(observations),
            problems=tuple(problems),
            covered=frozenset(stored_lineage(name) for name in names),
        )

    def _confine(self, reader: CertificateReader) -> None:
        # The certificate directory, and that of the dehydrated config file named here.
        # Neither is in the stat record for being passed through: CERTDIR is listed
        # (will_list), the config file is recorded itself, and its directory is often
        # BASEDIR, where every dehydrated run leaves and removes its lock file.
        config_directory = (os.path.dirname(self.config),) if self.config else ()
        reader.confine(
            self.path,
            *config_directory,
            follow_any=self.follow_any,
            record_roots=False,
            placed=_domain_links(os.path.realpath(self.path)),
        )

    def _read(
        self,
        reader: CertificateReader,
        names: Sequence[str],
        problems: list[Problem],
        renew_days: tuple[int | None, str],
    ) -> list[Observation]:
        """The observations of these domain directories; their problems go to `problems`."""
        days, where = renew_days
        observations: list[Observation] = []
        for name in names:
            directory = os.path.join(self.path, name)
            current = os.path.join(directory, "fullchain.pem" if reader.chain else "cert.pem")
            reader.will_list(directory)  # its cert.pem may appear after a failed first run
            if not os.path.lexists(current):
                continue  # only leftovers of a failed first run: nothing issued yet
            found = reader.bundle(lineage=name, path=current)
            if isinstance(found, Problem):
                problems.append(replace(found, lineage=name))
                continue
            own = os.path.join(directory, "config")
            text = reader.read_text(own)  # absent (the usual case) or unreadable: a Problem
            own_days = dehydrated_renew_days(text) if isinstance(text, str) else None
            policy = (
                dehydrated_policy(own_days, own)
                if own_days is not None
                else dehydrated_policy(days, where)
            )
            observations += [replace(o, renewal=policy) if o.role == "leaf" else o for o in found]
        return observations

    def _renew_days(
        self, reader: CertificateReader, problems: list[Problem]
    ) -> tuple[int | None, str]:
        """RENEW_DAYS from the configured dehydrated config file, if it sets one."""
        if self.config is None:
            return None, ""
        text = reader.read_text(self.config)
        if isinstance(text, Problem):
            reader.will_list(os.path.dirname(self.config))  # where it may appear again
            problems.append(text)
            return None, self.config
        return dehydrated_renew_days(text), self.config


def _domain_links(root: str) -> Callable[[str, str], bool]:
    """NAME/cert.pem -> NAME/cert-TS.pem in the real CERTDIR `root`: the link
    dehydrated makes, kept to domain NAME (guarded.py's `placed`)."""

    def placed(link: str, target: str) -> bool:
        directory = os.path.dirname(link)
        return os.path.dirname(directory) == root and os.path.dirname(target) == directory

    return placed
