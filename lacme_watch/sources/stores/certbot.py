"""certbot's config directory (certbot's documented `/etc/letsencrypt` layout) and its log.

Lineages are `live/<name>/`, whose files are relative symlinks into `archive/<name>/`;
a renewal is the symlink moving to the next `certN.pem`, which the reader sees as a
new file identity and a later certificate. `renewal/<name>.conf` lists what certbot
will renew: a conf whose live/ directory is gone is reported. With `log:`, failed
challenges are read from letsencrypt.log as it grows.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, Self

from ...detection.renewal import certbot_policy
from ...observations import Issuance, Observation, Problem, ScanResult
from ...options import Options
from ...reading.guarded import follows_any_symlink, undecodable_name
from ...reading.reader import CertificateReader
from ._certbot_log import challenge_failures, is_record_start, runs
from ._logfollow import follow

if TYPE_CHECKING:
    from ...events import Event

_ARCHIVED = re.compile(r"^cert\d+\.pem$")
PERMISSIONS_HINT = (
    "certbot keeps live/ and archive/ at mode 0700 for root: run lacme-watch as root,"
    " or grant it read access (never to the private keys)"
)


class CertbotStore:
    """Lineages in a certbot config dir (`/etc/letsencrypt`)."""

    names_acme_directory: ClassVar[bool] = True
    """Its files name the ACME directory its certificates came from (`server` in
    renewal/<name>.conf): ARI can be asked (ari/directories.py)."""

    @property
    def stat_record(self) -> bool:
        """What a scan says follows from the files it reads (statrecord.py), but with
        `log:`: certbot appends to its log at every run, and rotates it."""
        return self.log is None

    def __init__(self, path: str, log: str | None = None, *, follow_any: bool = False) -> None:
        self.path = path
        self.log = log
        self.follow_any = follow_any
        self.id = f"certbot:{path}"

    @classmethod
    def from_options(cls, options: Options) -> Self:
        path = options.path("path", "/etc/letsencrypt", must_exist=True)
        log = options.path("log") if options.node("log") is not None else None
        return cls(path, log, follow_any=follows_any_symlink(options))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        # live/NAME/*.pem -> ../../archive/NAME/*N.pem stays inside the config directory
        reader.confine(self.path, follow_any=self.follow_any, record_roots=False)
        live = os.path.join(self.path, "live")
        # Each directory whose entries decide the scan joins the stat record before it
        # is listed: live/, renewal/ and archive/ (a lineage comes or goes), and below,
        # archive/NAME/. The config directory itself only while one of them is missing:
        # every certbot run, even one that renews nothing, adds and removes its
        # .certbot.lock there.
        listed = [os.path.join(self.path, name) for name in ("live", "renewal", "archive")]
        if not all(os.path.isdir(directory) for directory in listed):
            reader.will_list(self.path)  # where the missing one appears
        for directory in listed:
            if os.path.isdir(directory):
                reader.will_list(directory)
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(live)
                if entry.is_dir() and entry.name != "README"
            )
        except FileNotFoundError:
            if os.path.isdir(self.path):
                names = []  # certbot has issued nothing yet
            else:
                return ScanResult(problems=(Problem(self.path, "not_found"),), failed=True)
        except PermissionError:
            problem = Problem(live, "permission_denied", PERMISSIONS_HINT)
            return ScanResult(problems=(problem,), failed=True)
        observations: list[Observation] = []
        problems: list[Problem] = []
        for name in names:
            if unreadable := undecodable_name(os.path.join(live, name), name):
                problems.append(unreadable)
                continue
            found = self._lineage(reader, live, name)
            if isinstance(found, Problem):
                problems.append(replace(found, lineage=name))
            else:
                observations += found
        problems += self._orphaned_renewals(set(names))
        issuances = tuple(self._archive(reader, names))
        events: tuple[Event, ...] = ()
        agent_runs: tuple[datetime, ...] = ()
        if self.log:
            followed = follow(self.log, cursor, is_record_start)
            if isinstance(followed, Problem):
                problems.append(followed)
            else:
                first_pass = cursor is None
                text, cursor = followed
                events = tuple(challenge_failures(text, store=self.id, path=self.log))
                agent_runs = tuple(runs(text)) or self._first_look(first_pass)
        return ScanResult(
            observations=tuple(observations),
            problems=tuple(problems),
            events=events,
            cursor=cursor,
            issuances=issuances,
            agent_runs=agent_runs,
        )

    def _first_look(self, first_pass: bool) -> tuple[datetime, ...]:
        """On the first pass the log is not read (only its position recorded): its
        modification time stands in for the last run, since every run writes to it."""
        if not first_pass or self.log is None:
            return ()
        try:
            return (datetime.fromtimestamp(os.stat(self.log).st_mtime, UTC),)
        except OSError:
            return ()

    def _archive(self, reader: CertificateReader, names: list[str]) -> list[Issuance]:
        """Every certificate certbot ever saved (archive/<name>/certN.pem): the issuance
        history rate limits count, renewals included."""
        found: list[Issuance] = []
        archive = os.path.join(self.path, "archive")
        for name in names:
            directory = os.path.join(archive, name)
            if os.path.isdir(directory):
                reader.will_list(directory)  # a renewal adds certN.pem here
            try:
                files = sorted(f for f in os.listdir(directory) if _ARCHIVED.match(f))
            except OSError:
                continue
            for filename in files:
                facts = reader.read_certificates(os.path.join(directory, filename))
                if not isinstance(facts, Problem) and facts:
                    found.append(
                        Issuance(facts[0].fingerprint, facts[0].names, facts[0].not_before)
                    )
        return found

    def _lineage(
        self, reader: CertificateReader, live: str, name: str
    ) -> list[Observation] | Problem:
        filename = "fullchain.pem" if reader.chain else "cert.pem"
        found = reader.bundle(lineage=name, path=os.path.join(live, name, filename))
        if isinstance(found, Problem) and found.reason == "permission_denied":
            return replace(found, detail=PERMISSIONS_HINT)
        if isinstance(found, Problem) or not found:
            return found
        conf = reader.read_text(os.path.join(self.path, "renewal", f"{name}.conf"))
        if isinstance(conf, Problem):
            return found  # no renewal conf: certbot will not renew it, so nothing is overdue
        policy = certbot_policy(conf)
        return [replace(o, renewal=policy) if o.role == "leaf" else o for o in found]

    def _orphaned_renewals(self, lineages: set[str]) -> list[Problem]:
        renewal = os.path.join(self.path, "renewal")
        try:
            confs = sorted(
                entry.name for entry in os.scandir(renewal) if entry.name.endswith(".conf")
            )
        except OSError:
            return []
        return [
            Problem(
                os.path.join(renewal, conf),
                "not_found",
                f"certbot would renew {conf.removesuffix('.conf')}, but live/ has no such lineage",
                lineage=conf.removesuffix(".conf"),
            )
            for conf in confs
            if conf.removesuffix(".conf") not in lineages
        ]
