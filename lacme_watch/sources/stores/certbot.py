"""certbot's config directory (certbot's documented `/etc/letsencrypt` layout) and its log.

Lineages are `live/<name>/`, whose files are relative symlinks into `archive/<name>/`;
a renewal is the symlink moving to the next `certN.pem`, which the reader sees as a
new file identity and a later certificate. `renewal/<name>.conf` lists what certbot
will renew: a conf whose live/ directory is gone is reported. With `log:`, failed
challenges are read from letsencrypt.log as it grows.

Without `log:`, a pass after a renewal reads again only the lineages whose files
changed (rescan()): certbot keeps each lineage's files to itself (live/NAME/ links
into archive/NAME/, renewal/NAME.conf), so a changed path names its lineage.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, Self

from ...detection.renewal import certbot_policy
from ...observations import Issuance, Observation, Problem, ScanResult
from ...options import Options
from ...reading.guarded import follows_any_symlink, stored_lineage, undecodable_name
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
        self._confine(reader)
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
            self._live(reader, live, name, observations, problems)
        problems += self._orphaned_renewals(reader, set(names))
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

    def _confine(self, reader: CertificateReader) -> None:
        # live/NAME/*.pem -> ../../archive/NAME/*N.pem stays inside the config directory
        reader.confine(
            self.path,
            follow_any=self.follow_any,
            record_roots=False,
            placed=_lineage_links(os.path.realpath(self.path)),
        )

    def _live(
        self,
        reader: CertificateReader,
        live: str,
        name: str,
        observations: list[Observation],
        problems: list[Problem],
    ) -> None:
        """One live/ lineage's observations or problem, added to the lists."""
        if unreadable := undecodable_name(os.path.join(live, name), name):
            reader.will_list(os.path.join(live, name))  # its going is a change of its own
            problems.append(unreadable)
            return
        found = self._lineage(reader, live, name)
        if isinstance(found, Problem):
            problems.append(replace(found, lineage=name))
        else:
            observations += found

    def rescan(
        self, reader: CertificateReader, changed: Sequence[tuple[str, bool]]
    ) -> ScanResult | None:
        """Only the lineages whose files changed since the last pass (a renewal adds
        archive/NAME/certN.pem, re-points live/NAME/ and rewrites renewal/NAME.conf),
        and those that came or went in live/, renewal/ or archive/ (a name the stat
        record did not hold there is new). None, for a full scan, when anything else
        changed (the config directory itself, another directory), with `log:`, or for
        a config directory reached through a symlink (the record holds real paths)."""
        if self.log is not None or os.path.realpath(self.path) != self.path:
            return None
        names = _changed_lineages(self.path, changed)
        if names is None:
            return None
        self._confine(reader)
        listed = [path for path, _ in changed if os.path.dirname(path) == self.path]
        for directory in listed:  # live/, renewal/ or archive/: what came there?
            new = _new_names(reader, directory)
            if new is None:
                return None
            names |= new
        live = os.path.join(self.path, "live")
        observations: list[Observation] = []
        problems: list[Problem] = []
        lineages: list[str] = []
        for name in sorted(names):
            if name != "README" and os.path.isdir(os.path.join(live, name)):
                lineages.append(name)
                self._live(reader, live, name, observations, problems)
            else:
                conf = os.path.join(self.path, "renewal", f"{name}.conf")
                if os.path.lexists(conf):
                    problems.append(self._orphan(reader, conf))
        return ScanResult(
            observations=tuple(observations),
            problems=tuple(problems),
            issuances=tuple(self._archive(reader, lineages)),
            covered=frozenset(stored_lineage(name) for name in names),
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

    def _orphaned_renewals(self, reader: CertificateReader, lineages: set[str]) -> list[Problem]:
        renewal = os.path.join(self.path, "renewal")
        try:
            confs = sorted(
                entry.name for entry in os.scandir(renewal) if entry.name.endswith(".conf")
            )
        except OSError:
            return []
        return [
            self._orphan(reader, os.path.join(renewal, conf))
            for conf in confs
            if conf.removesuffix(".conf") not in lineages
        ]

    @staticmethod
    def _orphan(reader: CertificateReader, conf: str) -> Problem:
        """A renewal conf without its live/ lineage; its lstat joins the stat record, so
        that its going is a change of that lineage (rescan())."""
        reader.will_list(conf)
        name = os.path.basename(conf).removesuffix(".conf")
        return Problem(
            conf,
            "not_found",
            f"certbot would renew {name}, but live/ has no such lineage",
            lineage=name,
        )


def _lineage_links(root: str) -> Callable[[str, str], bool]:
    """live/NAME/F -> archive/NAME/G under the real config directory `root`: the
    link certbot makes, kept to lineage NAME (guarded.py's `placed`)."""
    live, archive = os.path.join(root, "live"), os.path.join(root, "archive")

    def placed(link: str, target: str) -> bool:
        lineage = os.path.dirname(link)
        return os.path.dirname(lineage) == live and os.path.dirname(target) == os.path.join(
            archive, os.path.basename(lineage)
        )

    return placed


def _changed_lineages(root: str, changed: Sequence[tuple[str, bool]]) -> set[str] | None:
    """The lineages these changed paths name (live/NAME/..., archive/NAME/...,
    renewal/NAME.conf); None for a path that names none. live/, renewal/ and archive/
    themselves name none here: the caller lists them."""
    names: set[str] = set()
    for path, _ in changed:
        top, _, rest = path.removeprefix(root + os.sep).partition(os.sep)
        if not path.startswith(root + os.sep) or top not in ("live", "renewal", "archive"):
            return None
        name, inside, _ = rest.partition(os.sep)
        if top == "renewal" and name:
            if inside or not name.endswith(".conf"):
                return None
            name = name.removesuffix(".conf")
        if name:
            names.add(name)
    return names


def _new_names(reader: CertificateReader, directory: str) -> set[str] | None:
    """The lineages named in `directory` (live/, archive/ or renewal/) that last pass's
    stat record did not hold there (a conf by its stem); None when it cannot tell."""
    known = reader.recorded_in(directory)
    if known is None:
        return None
    reader.will_list(directory)  # as it stands now, for the next pass
    try:
        entries = [entry.name for entry in os.scandir(directory) if entry.name not in known]
    except OSError:
        return None
    if os.path.basename(directory) == "renewal":
        return {name.removesuffix(".conf") for name in entries if name.endswith(".conf")}
    return set(entries)
