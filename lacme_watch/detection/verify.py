"""After detection, per source: chains, host names, revocation and CRL freshness.

What `detect()` cannot see from one certificate's facts: whether the chain beside it
(a fullchain.pem, what an endpoint serves) leads to a trusted root, whether the
endpoint's certificate covers the name it was asked for, whether its CA revoked it,
and whether a CRL that servers load is about to lapse or was never deployed. Each
finding is reported once, remembered as a mark in the source's snapshot (committed
with the pass), and re-armed when what it is about changes.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.utils import CryptographyDeprecationWarning

from ..observations import Problem
from ..reading.statrecord import Recorder
from ..sources.crl import CrlFetcher

if TYPE_CHECKING:  # x509 is loaded by the reader: a rescan that only stats needs none
    from cryptography import x509

    from ..config import Config
    from ..events import Event
    from ..observations import ScanResult
    from ..reading.reader import CachedFile, CertificateReader
    from ..sources.crl import CrlCache
    from .chains import Finding
    from .detect import SourceSnapshot
    from .thresholds import Policy


@functools.cache
def system_anchors() -> tuple[x509.Certificate, ...]:
    """The roots the system trusts (OpenSSL's default CA file or directory)."""
    import ssl  # only to ask where OpenSSL keeps them, once a chain is judged

    from cryptography import x509

    paths = ssl.get_default_verify_paths()
    found: list[x509.Certificate] = []
    files = [paths.cafile] if paths.cafile else []
    if not files and paths.capath and os.path.isdir(paths.capath):
        files = [os.path.join(paths.capath, name) for name in sorted(os.listdir(paths.capath))]
    for path in files:
        try:
            with open(path, "rb") as stream, warnings.catch_warnings():
                # Some distributions still ship a root with a non-positive serial.
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                found += x509.load_pem_x509_certificates(stream.read())
        except (OSError, ValueError):
            continue  # one unreadable file in the system store is not ours to report
    return tuple(found)


class NothingRead:
    """The reader of a partial rescan with no path to read: nothing changed, and the
    store is scanned only because certificates came due. It answers what the rest of
    the pass asks of a reader (nothing read, nothing judged) without the reader's
    modules: cryptography.x509 and the parsers are about 30 ms of a cron pass."""

    parsed = 0
    reused = 0

    def __init__(self, signers: Sequence[x509.Certificate]) -> None:
        self.signers = tuple(signers)
        self.files: dict[str, CachedFile] = {}
        self.stat_record = Recorder()

    def finish(self) -> None:
        """Nothing was read, so nothing is left to collect."""

    def stat_record_bytes(self) -> bytearray | None:
        """No record of its own: next_record() keeps the loaded one (looked_at_nothing)."""
        return None


@dataclass(slots=True, kw_only=True)
class Verifier:
    """What every source's checks share in one pass."""

    policy: Policy
    roots: Callable[[], Sequence[x509.Certificate]]
    """The pass's trust anchors, read on first need: most passes judge no chain."""
    fetcher: CrlFetcher | None = None
    """None when no source checks revocation."""

    def judge(
        self, signers: Sequence[x509.Certificate]
    ) -> Callable[[Sequence[x509.Certificate], Sequence[bytes]], list[Finding]]:
        """chains.structure() against this pass's anchors and these watched CAs: what the
        reader applies to a chain file while it holds the parsed certificates, so the
        checks need not read it again (the anchors are read on the first chain)."""
        from . import chains  # with the first chain file: an unchanged rescan judges none

        anchors: list[chains.Anchors] = []
        watched = tuple(signers)  # as they are now: the caller's list grows later

        def judged(certificates: Sequence[x509.Certificate], der: Sequence[bytes]) -> list[Finding]:
            if not anchors:
                anchors.append(chains.Anchors([*self.roots(), *watched]))
            return chains.structure(certificates, anchors[0], der)

        return judged

    def verify(
        self,
        previous: SourceSnapshot | None,
        after: SourceSnapshot,
        scan: ScanResult,
        reader: CertificateReader | NothingRead,
        *,
        now: datetime,
        signers: Sequence[x509.Certificate] = (),
        revocation: bool = False,
    ) -> tuple[SourceSnapshot, list[Event], float | None]:
        """The source's snapshot with this pass's marks, the events for new ones, and
        the first instant these checks may say something new with nothing changed
        (None: never; what a stat record holds for)."""
        if scan.failed:
            return after, [], None
        if isinstance(reader, NothingRead):  # a rescan of no path: no file, chain or CRL
            return _unchecked(previous, after), [], None
        from cryptography import x509

        from ..reading.certfacts import describe
        from . import chains  # only for a source that was scanned: a quiet rescan has none
        from .verdicts import SourceChecks

        run = SourceChecks(
            source=after.source,
            before=previous.reported if previous else frozenset(),
            roots=self.roots,
            signers=tuple(signers),
            fetcher=self.fetcher if revocation else None,
            policy=self.policy,
            now=now,
        )
        # What the reader judged holds for the watched CAs it was given: an authority's
        # own CA joins `signers` only after its scan, and its files are judged again.
        structures = reader.structures if tuple(signers) == reader.signers else {}
        for lineage, path, facts in reader.bundles:
            observation = after.certificates.get(lineage)
            if observation is None or observation.role != "leaf" or observation.path != path:
                continue
            if not facts:
                continue
            run.certificate(
                observation,
                path,
                facts,
                functools.partial(_load, reader, path),
                chain=chains.is_chain_file(path, facts),
                unchanged=reader.unchanged(path),
                judged=structures.get(path),
            )
        for served in scan.chains:
            observation = after.certificates.get(served.lineage)
            if observation is None:
                continue
            try:  # a served chain is hostile input: one that cannot be described is not judged
                certificates = [x509.load_der_x509_certificate(der) for der in served.certificates]
                described = [describe(certificate) for certificate in certificates]
            except Exception:  # noqa: S112  # the endpoint's leaf is still watched
                continue
            run.certificate(
                observation,
                served.location,
                described,
                functools.partial(_given, certificates),
                chain=True,
                unchanged=False,
            )
            run.mismatch(observation, served.requested_name)
        run.crls(scan.crls)
        return (*run.finish(after, previous), run.until)


def _unchecked(previous: SourceSnapshot | None, after: SourceSnapshot) -> SourceSnapshot:
    """What SourceChecks.finish() makes of a scan with nothing to check (no file read,
    no chain served, no CRL seen), without loading the checks: detect()'s marks, and
    the CRL marks of last pass, which detect() does not keep."""
    if previous is None:
        return after
    from .freshness import unread_crl_marks

    crl_marks = unread_crl_marks(previous.reported)
    return replace(after, reported=after.reported | crl_marks) if crl_marks else after


def _given(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    return certificates


def _load(reader: CertificateReader, path: str) -> list[x509.Certificate] | None:
    loaded = reader.load_certificates(path)
    return None if isinstance(loaded, Problem) or not loaded else loaded


def _own_roots(config: Config) -> list[str]:
    """The roots lacme's CertificateAuthority keeps in a watched lacme store
    (`<path>/ca/<name>/cert.pem`): the operator's own CA, trusted for every chain of
    the pass (a TLS endpoint rightly sends only the leaf such a root signed), whether
    or not that CA is also under `authorities:`."""
    from ..sources.stores.lacme import LacmeStore  # a pass that judges no chain never asks

    found: list[str] = []
    for source in config.stores:
        if not isinstance(source, LacmeStore):
            continue
        directory = os.path.join(source.path, "ca")
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue  # no CA in this store (most ACME-only hosts)
        found += [os.path.join(directory, name, "cert.pem") for name in names]
    return found


def verifier_for(config: Config, cache: CrlCache, now: datetime) -> Verifier:
    """One pass's Verifier: the system's roots, `trust:` bundles, and a CRL fetcher when
    any source checks revocation."""
    wanted = any(config.checks_revocation(source.id) for source in config.stores)
    fetcher = CrlFetcher(config.revocation, cache, now) if wanted else None
    roots = functools.cache(functools.partial(_anchors, config))  # read once per pass
    return Verifier(policy=config.policy, roots=roots, fetcher=fetcher)


def _anchors(config: Config) -> list[x509.Certificate]:
    """The system's roots, `trust:` bundles and the watched lacme stores' own CAs."""
    from cryptography import x509

    anchors = list(system_anchors())
    for path in [*config.trust, *_own_roots(config)]:
        try:
            with open(path, "rb") as stream:
                anchors += x509.load_pem_x509_certificates(stream.read(config.max_file_size))
        except (OSError, ValueError):
            continue  # `config check` warns of a missing bundle; its roots are not trusted
    return anchors


def findings(snapshot: SourceSnapshot) -> list[tuple[str, str]]:
    """(lineage, what holds now) from a snapshot's marks, for `status`: `chain incomplete`,
    `revoked`, `not www.example.com`."""
    found: list[tuple[str, str]] = []
    for lineage, _, label in snapshot.reported:  # sorted once found: most marks are none
        if ":" not in label:  # an expiry threshold (`30d`, `10%`, `expired`) or `overdue`
            continue
        if label.startswith("chain:"):
            reason = label.split(":", 3)[2]
            if reason != "checked":
                found.append((lineage, f"chain {reason}"))
        elif label.startswith("mismatch:"):
            found.append((lineage, f"not {label.removeprefix('mismatch:')}"))
        elif label == "revoked:crl":
            found.append((lineage, "revoked"))
    return sorted(set(found))
