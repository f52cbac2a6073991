"""An easy-rsa / OpenSSL CA directory: `pki/ca.crt`, and `pki/index.txt` in `openssl ca`'s format.

index.txt is OpenSSL's CA database: one row per issued certificate, status V
(valid), R (revoked, with a date and maybe a reason) or E (marked expired only by
`update-db`: expiry is computed here from the certificates). The lineage of a
certificate is its subject; its current certificate is the valid row with the
latest expiry whose file still exists (`certs_by_serial/<SERIAL>.pem`, else
`issued/*.crt`), so easy-rsa's `renew` reads as a renewal. A revocation for any
reason but `superseded` is reported as `certificate_revoked`, once. `pki/crl.pem`
(`easyrsa gen-crl`) and the `deployed` copies servers read are watched as CRLs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Self

from ...events import CertificateRevoked, Event
from ...observations import CrlSeen, Observation, Problem, ScanResult
from ...options import Options
from ...reading.certfacts import describe, fingerprint
from ...reading.guarded import follows_any_symlink
from ...reading.reader import CertificateReader
from ..crl import read_crl_file


@dataclass(frozen=True, slots=True)
class Row:
    """One line of index.txt."""

    status: str
    expires: datetime
    revoked: datetime | None
    reason: str
    serial: str
    subject: str

    @property
    def common_name(self) -> str:
        for part in self.subject.split("/"):
            if part.startswith("CN="):
                return part[3:]
        return self.subject


def parse_time(text: str) -> datetime:
    """ASN.1 UTCTime `YYMMDDHHMMSSZ` (50-99 are 19xx) or GeneralizedTime `YYYYMMDDHHMMSSZ`."""
    if len(text) == 13:
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def parse_index(text: str) -> list[Row]:
    rows = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[0] not in ("V", "R", "E"):
            continue
        status, expires, revocation, serial, _, subject = fields
        revoked_at, _, reason = revocation.partition(",")
        try:
            expiry, revoked = parse_time(expires), parse_time(revoked_at) if revoked_at else None
        except ValueError:
            continue  # a damaged row is no certificate; the files themselves are still read
        rows.append(
            Row(
                status=status,
                expires=expiry,
                revoked=revoked,
                reason=reason or "unspecified",
                serial=serial.upper(),
                subject=subject,
            )
        )
    return rows


class EasyRsaAuthority:
    """The CA and every certificate its index.txt lists."""

    def __init__(
        self, path: str, deployed: tuple[str, ...] = (), *, follow_any: bool = False
    ) -> None:
        self.path = path
        self.deployed = deployed
        """Copies of crl.pem that servers read (OpenVPN's crl-verify), compared with it."""
        self.follow_any = follow_any
        self.id = f"easyrsa:{path}"

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(
            options.path("path", must_exist=True),
            options.paths("deployed"),
            follow_any=follows_any_symlink(options),
        )

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        # The PKI, and the directories of the CRL copies the configuration names.
        deployed = (os.path.dirname(copy) for copy in self.deployed)
        reader.confine(self.path, *deployed, follow_any=self.follow_any)
        ca_path = os.path.join(self.path, "ca.crt")
        loaded = reader.load_certificates(ca_path)
        if isinstance(loaded, Problem) or not loaded:
            problem = (
                loaded if isinstance(loaded, Problem) else Problem(ca_path, "no_certificate_found")
            )
            return ScanResult(problems=(problem,), failed=True)
        root = loaded[0]
        root_facts = describe(root)
        authority = Observation(
            lineage="ca",
            role="ca",
            path=ca_path,
            domain=root_facts.subject_cn or "easy-rsa CA",
            domains=(root_facts.subject_cn or "easy-rsa CA",),
            certificate=root_facts,
        )
        index_path = os.path.join(self.path, "index.txt")
        index = reader.read_text(index_path)
        if isinstance(index, Problem):
            return ScanResult(
                observations=(authority,), problems=(index,), failed=True, signers=(root,)
            )
        rows = parse_index(index)
        observations, problems = self._current(reader, rows, fingerprint(root))
        events, cursor, retired = self._revocations(cursor, rows, observations)
        crls = self._crls(reader, problems)
        return ScanResult(
            observations=(authority, *observations),
            problems=tuple(problems),
            crls=crls,
            signers=(root,),
            events=events,
            cursor=cursor,
            retired=retired,
        )

    def _crls(self, reader: CertificateReader, problems: list[Problem]) -> tuple[CrlSeen, ...]:
        """pki/crl.pem, if `gen-crl` ever ran, and every deployed copy (which must exist)."""
        crls: list[CrlSeen] = []
        current = os.path.join(self.path, "crl.pem")
        wanted = [(current, "current")] if os.path.lexists(current) else []
        for path, role in [*wanted, *((copy, "deployed") for copy in self.deployed)]:
            found = read_crl_file(reader, path, "current" if role == "current" else "deployed")
            if isinstance(found, Problem):
                problems.append(found)
            else:
                crls.append(found)
        return tuple(crls)

    def _current(
        self, reader: CertificateReader, rows: list[Row], ca: str
    ) -> tuple[list[Observation], list[Problem]]:
        """Per subject, the valid (or expired) row with the latest expiry that has a file."""
        by_subject: dict[str, list[Row]] = {}
        for row in rows:
            if row.status in ("V", "E"):
                by_subject.setdefault(row.subject, []).append(row)
        issued = self._issued_by_serial(reader)
        observations, problems = [], []
        for subject, candidates in sorted(by_subject.items()):
            for row in sorted(candidates, key=lambda r: r.expires, reverse=True):
                path = os.path.join(self.path, "certs_by_serial", f"{row.serial}.pem")
                if not os.path.exists(path):
                    path = issued.get(row.serial, "")
                if not path:
                    continue  # a superseded certificate whose file easy-rsa moved away
                found = reader.bundle(lineage=subject, path=path)
                if isinstance(found, Problem):
                    problems.append(replace(found, lineage=subject))
                else:
                    leaf = found[0]
                    observations.append(
                        replace(leaf, certificate=replace(leaf.certificate, signed_by=ca))
                    )
                break
        return observations, problems

    def _issued_by_serial(self, reader: CertificateReader) -> dict[str, str]:
        """issued/*.crt by serial: the fallback where certs_by_serial is gone."""
        directory = os.path.join(self.path, "issued")
        found: dict[str, str] = {}
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return found
        for name in names:
            path = os.path.join(directory, name)
            certificates = reader.read_certificates(path)
            if not isinstance(certificates, Problem) and certificates:
                found[certificates[0].serial.upper()] = path
        return found

    def _revocations(
        self, cursor: str | None, rows: list[Row], current: list[Observation]
    ) -> tuple[tuple[Event, ...], str, frozenset[str]]:
        revoked = {
            row.serial: row for row in rows if row.status == "R" and row.reason != "superseded"
        }
        seen = set(json.loads(cursor)) if cursor else None
        events: list[Event] = []
        if seen is not None:  # the first pass records what was already revoked
            for serial, row in sorted(revoked.items()):
                if serial in seen:
                    continue
                assert row.revoked is not None  # noqa: S101  # R rows always carry a date
                events.append(
                    CertificateRevoked(
                        store=self.id,
                        lineage=row.subject,
                        serial=serial,
                        domain=row.common_name,
                        domains=(row.common_name,),
                        expires_at=row.expires,
                        reason=row.reason,
                        revoked_at=row.revoked,
                        path=os.path.join(self.path, "index.txt"),
                    )
                )
        valid_subjects = {o.lineage for o in current}
        retired = frozenset(row.subject for row in revoked.values()) - valid_subjects
        return tuple(events), json.dumps(sorted(revoked)), retired
