"""dehydrated's certificate directory (its `CERTDIR`): `<certs>/<domain>/cert.pem`.

Each domain directory holds timestamped files (`cert-<ts>.pem`, `fullchain-<ts>.pem`)
and symlinks to the current ones; a renewal re-points the symlinks. A failed run
leaves a 0-byte `cert-<ts>.pem` and moves no symlink: that is not an error, and the
timestamped files are never read as lineages. `privkey*.pem` is never opened.

The renewal policy is dehydrated's RENEW_DAYS: from the per-certificate
`<certs>/<domain>/config` if it sets one, else from the `config:` file the store
names, else dehydrated's default.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import ClassVar, Self

from ...detection.renewal import dehydrated_policy, dehydrated_renew_days
from ...observations import Observation, Problem, ScanResult
from ...options import Options
from ...reading.guarded import follows_any_symlink
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
        # The certificate directory, and that of the dehydrated config file named here.
        config_directory = (os.path.dirname(self.config),) if self.config else ()
        reader.confine(self.path, *config_directory, follow_any=self.follow_any)
        reader.will_list(self.path)  # a domain directory comes or goes
        try:
            names = sorted(entry.name for entry in os.scandir(self.path) if entry.is_dir())
        except FileNotFoundError:
            return ScanResult(problems=(Problem(self.path, "not_found"),), failed=True)
        except PermissionError:
            return ScanResult(problems=(Problem(self.path, "permission_denied"),), failed=True)
        observations: list[Observation] = []
        problems: list[Problem] = []
        days, where = self._renew_days(reader, problems)
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
        return ScanResult(observations=tuple(observations), problems=tuple(problems))

    def _renew_days(
        self, reader: CertificateReader, problems: list[Problem]
    ) -> tuple[int | None, str]:
        """RENEW_DAYS from the configured dehydrated config file, if it sets one."""
        if self.config is None:
            return None, ""
        text = reader.read_text(self.config)
        if isinstance(text, Problem):
            problems.append(text)
            return None, self.config
        return dehydrated_renew_days(text), self.config
