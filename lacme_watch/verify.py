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
import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from . import chains, freshness
from .certfacts import describe, signers_digest
from .chains import Anchors, Finding
from .config import Config
from .crl import CrlCache, CrlFetcher, Revocation
from .detect import SourceSnapshot
from .events import (
    CertificateRevoked,
    CertificateUnreadable,
    ChainProblem,
    DeploymentMismatch,
    Event,
)
from .freshness import Mark
from .observations import CertificateFacts, CrlSeen, Observation, Problem, ScanResult
from .reader import CertificateReader
from .thresholds import Policy

_CHAIN_MARKS = ("chain:", "mismatch:")


@functools.cache
def system_anchors() -> tuple[x509.Certificate, ...]:
    """The roots the system trusts (OpenSSL's default CA file or directory)."""
    import ssl  # only to ask where OpenSSL keeps them, once a chain is judged

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
    ) -> Callable[[Sequence[x509.Certificate]], list[Finding]]:
        """chains.structure() against this pass's anchors and these watched CAs: what the
        reader applies to a chain file while it holds the parsed certificates, so the
        checks need not read it again (the anchors are read on the first chain)."""
        anchors: list[Anchors] = []

        def judged(certificates: Sequence[x509.Certificate]) -> list[Finding]:
            if not anchors:
                anchors.append(Anchors([*self.roots(), *signers]))
            return chains.structure(certificates, anchors[0])

        return judged

    def verify(
        self,
        previous: SourceSnapshot | None,
        after: SourceSnapshot,
        scan: ScanResult,
        reader: CertificateReader,
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
        run = _Run(
            source=after.source,
            before=previous.reported if previous else frozenset(),
            roots=self.roots,
            signers=tuple(signers),
            fetcher=self.fetcher if revocation else None,
            policy=self.policy,
            now=now,
        )
        for lineage, path, facts in reader.bundles:
            observation = after.certificates.get(lineage)
            if observation is None or observation.role != "leaf" or observation.path != path:
                continue
            if not facts:
                continue
            is_chain = len(facts) > 1 or "fullchain" in os.path.basename(path)
            run.certificate(
                observation,
                path,
                facts,
                functools.partial(_load, reader, path),
                chain=is_chain and not facts[0].is_ca,
                unchanged=reader.unchanged(path),
                judged=reader.structures.get(path),
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


def _given(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    return certificates


def _load(reader: CertificateReader, path: str) -> list[x509.Certificate] | None:
    loaded = reader.load_certificates(path)
    return None if isinstance(loaded, Problem) or not loaded else loaded


@dataclass(slots=True, kw_only=True)
class _Run:
    """One source's checks in one pass: the marks found and the events they cause."""

    source: str
    before: frozenset[Mark]
    roots: Callable[[], Sequence[x509.Certificate]]
    signers: tuple[x509.Certificate, ...]
    """The pass's watched CAs so far: anchors beside the roots."""
    fetcher: CrlFetcher | None
    policy: Policy
    now: datetime
    marks: set[Mark] = field(default_factory=set)
    analysed: set[str] = field(default_factory=set)
    crl_lineages: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    problems: set[Problem] = field(default_factory=set)
    _indexed: dict[tuple[str, str], list[Mark]] | None = None
    _anchors: Anchors | None = None
    _trusted: str | None = None

    @property
    def anchors(self) -> Anchors:
        """The roots and the watched CAs, indexed when a chain or a CRL first needs them."""
        if self._anchors is None:
            self._anchors = Anchors([*self.roots(), *self.signers])
        return self._anchors

    @property
    def trusted(self) -> str:
        """Names the set of anchors: a chain judged against other roots is judged again."""
        if self._trusted is None:
            self._trusted = signers_digest([*self.roots(), *self.signers])
        return self._trusted

    until: float | None = None
    """The earliest `until` of a chain verdict this pass (epoch; None: none ends)."""
    _policy_key: str = field(init=False)
    """Names the expiry policy a lifetime verdict was reached under."""

    def __post_init__(self) -> None:
        self._policy_key = hashlib.sha256(repr(self.policy).encode()).hexdigest()[:12]

    def certificate(
        self,
        observation: Observation,
        location: str,
        facts: Sequence[CertificateFacts],
        load: Callable[[], Sequence[x509.Certificate] | None],
        *,
        chain: bool,
        unchanged: bool,
        judged: Sequence[Finding] | None = None,
    ) -> None:
        """Revocation of the leaf, and (for a chain) what is wrong with the chain
        (`judged`: its structure, found by the reader as it parsed the file).

        Structure needs the certificates themselves; an unchanged file already judged
        against the same anchors keeps last pass's verdict without being read again,
        and, until the next instant a lifetime threshold of its chain is crossed (kept
        in its `checked` mark), last pass's lifetime verdict too, its facts not decoded.
        """
        certificates = load() if self.fetcher is not None else None
        if certificates:
            leaf = certificates[0]
            self._revocation(observation, leaf, self._issuer(leaf, certificates))
        if not chain:
            return
        self.analysed.add(observation.lineage)
        name = chains.digest([f.fingerprint for f in facts])
        prefix = f"chain:{name}:"
        checked = f"{prefix}checked:{self.trusted}"
        key = (observation.lineage, observation.fingerprint)
        kept = [m for m in self._before_by_certificate().get(key, ()) if m[2].startswith(prefix)]
        verdict = next((m[2] for m in kept if m[2].split(":", 4)[:4] == checked.split(":")), None)
        findings: list[Finding] = []
        if unchanged and verdict is not None:
            if self.fetcher is None and (until := self._lifetimes_hold(verdict, checked)):
                self.marks.update(kept)  # nothing new to say: every finding is marked already
                if until != "never":
                    self._ends(int(until))
                return
            self.marks |= {m for m in kept if m[2].removeprefix(prefix) in chains.STRUCTURAL}
        elif judged is not None:
            findings += judged
        else:
            certificates = certificates or load()
            if not certificates:
                return
            findings += chains.structure(certificates, self.anchors)
        findings += chains.lifetimes(facts, self.now, self.policy)
        self.marks.add((*key, f"{checked}:{self._policy_key}:{self._until(facts)}"))
        if self.fetcher is not None and certificates:
            findings += self._revoked_intermediates(certificates)
        reported: set[str] = set()
        for finding in findings:
            label = prefix + finding.reason
            if finding.threshold:
                label += f":{finding.threshold}"
            mark = (observation.lineage, observation.fingerprint, label)
            self.marks.add(mark)
            if mark in self.before or finding.reason in reported:
                continue  # several expiring thresholds at once: the most urgent speaks
            reported.add(finding.reason)
            self.events.append(
                _chain_event(self.source, observation, location, facts[finding.position], finding)
            )

    def _until(self, facts: Sequence[CertificateFacts]) -> str:
        """When chains.lifetimes() may next say otherwise: the first threshold (or expiry)
        after now of a certificate after the leaf; `never` once all are crossed."""
        crossings = [
            self.policy.next_crossing(f.not_before, f.not_after, self.now) for f in facts[1:]
        ]
        found = [crossing for crossing in crossings if crossing is not None]
        if not found:
            return "never"
        until = int(min(found).timestamp())
        self._ends(until)
        return str(until)

    def _ends(self, until: int) -> None:
        self.until = until if self.until is None else min(self.until, until)

    def _lifetimes_hold(self, verdict: str, checked: str) -> str | None:
        """Its `until` when last pass's lifetime verdict (`checked:<anchors>:<policy>:
        <until>`) still holds now; None when the chain must be judged again."""
        policy, _, until = verdict.removeprefix(checked).lstrip(":").partition(":")
        if policy != self._policy_key or not until:
            return None
        if until == "never" or self.now.timestamp() < int(until):
            return until
        return None

    def _before_by_certificate(self) -> dict[tuple[str, str], list[Mark]]:
        """Last pass's marks by (lineage, fingerprint), built once per source."""
        if self._indexed is None:
            self._indexed = {}
            for mark in self.before:
                self._indexed.setdefault(mark[:2], []).append(mark)
        return self._indexed

    def mismatch(self, observation: Observation, requested: str | None) -> None:
        if not requested or chains.covers(observation.certificate.names, requested):
            return
        mark = (observation.lineage, observation.fingerprint, f"mismatch:{requested.lower()}")
        self.marks.add(mark)
        if mark in self.before:
            return
        facts = observation.certificate
        self.events.append(
            DeploymentMismatch(
                store=self.source,
                lineage=observation.lineage,
                path=observation.path,
                fingerprint=facts.fingerprint,
                serial=facts.serial,
                issuer=facts.issuer,
                not_before=facts.not_before,
                host=observation.lineage.removeprefix("tls:"),
                domain=requested,
                domains=facts.names,
                expires_at=facts.not_after,
                requested_name=requested,
            )
        )

    def crls(self, seen: Iterable[CrlSeen]) -> None:
        listed = list(seen)
        self.crl_lineages |= {crl.lineage for crl in listed}
        marks, events = freshness.crl_freshness(
            self.source, listed, self.before, self.policy, self.now
        )
        self.marks |= marks
        self.events += events

    def _issuer(
        self, certificate: x509.Certificate, chain: Sequence[x509.Certificate]
    ) -> x509.Certificate | None:
        for candidate in chain:
            if candidate is not certificate and chains.signs(candidate, certificate):
                return candidate
        return self.anchors.issuer_of(certificate)

    def _revocation(
        self, observation: Observation, leaf: x509.Certificate, issuer: x509.Certificate | None
    ) -> None:
        assert self.fetcher is not None  # noqa: S101  # only called when revocation is on
        if issuer is None:
            return  # no issuer to verify a CRL with; an incomplete chain is reported as such
        found = self.fetcher.check(leaf, issuer)
        if isinstance(found, Problem):
            self.problems.add(found)
        elif isinstance(found, Revocation):
            mark = (observation.lineage, observation.fingerprint, "revoked:crl")
            self.marks.add(mark)
            if mark not in self.before:
                self.events.append(_revoked(self.source, observation, found))

    def _revoked_intermediates(self, chain: Sequence[x509.Certificate]) -> list[Finding]:
        assert self.fetcher is not None  # noqa: S101  # only called when revocation is on
        findings: list[Finding] = []
        for position, certificate in enumerate(chain[1:], start=1):
            issuer = self._issuer(certificate, chain)
            if issuer is None or issuer is certificate:
                continue
            found = self.fetcher.check(certificate, issuer)
            if isinstance(found, Problem):
                self.problems.add(found)
            elif isinstance(found, Revocation):
                findings.append(Finding(reason="revoked", position=position))
                break
        return findings

    def finish(
        self, after: SourceSnapshot, previous: SourceSnapshot | None
    ) -> tuple[SourceSnapshot, list[Event]]:
        kept = {
            mark
            for mark in after.reported
            if not (mark[0] in self.analysed and mark[2].startswith(_CHAIN_MARKS))
        }
        # detect() keeps marks only for certificates; a CRL not read this pass keeps its own.
        kept |= {
            mark
            for mark in self.before
            if mark[2].startswith(("crl:", "crl-stale")) and mark[0] not in self.crl_lineages
        }
        old_problems = previous.problems if previous else frozenset()
        for problem in sorted(self.problems - old_problems, key=lambda p: (p.path, p.reason)):
            self.events.append(
                CertificateUnreadable(
                    store=self.source,
                    path=problem.path,
                    reason=problem.reason,
                    detail=problem.detail,
                    seen_at=self.now,
                )
            )
        updated = replace(
            after,
            reported=frozenset(kept | self.marks),
            problems=after.problems | self.problems,
        )
        return updated, self.events


def _chain_event(
    source: str,
    observation: Observation,
    location: str,
    concerned: CertificateFacts,
    finding: Finding,
) -> ChainProblem:
    return ChainProblem(
        store=source,
        lineage=observation.lineage,
        path=observation.path,
        fingerprint=observation.fingerprint,
        serial=observation.certificate.serial,
        issuer=observation.certificate.issuer,
        domain=observation.domain,
        location=location,
        reason=finding.reason,
        certificate_subject=concerned.subject,
        certificate_serial=concerned.serial,
        certificate_fingerprint=concerned.fingerprint,
        certificate_not_after=concerned.not_after,
        threshold=finding.threshold,
    )


def _revoked(source: str, observation: Observation, found: Revocation) -> CertificateRevoked:
    facts = observation.certificate
    return CertificateRevoked(
        store=source,
        lineage=observation.lineage,
        path=observation.path,
        fingerprint=facts.fingerprint,
        serial=facts.serial,
        issuer=facts.issuer,
        not_before=facts.not_before,
        domain=observation.domain,
        domains=observation.domains,
        expires_at=facts.not_after,
        reason=found.reason,
        revoked_at=found.revoked_at,
    )


def _own_roots(config: Config) -> list[str]:
    """The roots lacme's CertificateAuthority keeps in a watched lacme store
    (`<path>/ca/<name>/cert.pem`): the operator's own CA, trusted for every chain of
    the pass (a TLS endpoint rightly sends only the leaf such a root signed), whether
    or not that CA is also under `authorities:`."""
    from .stores.lacme import LacmeStore  # a pass that judges no chain never asks

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
        if label.startswith("chain:"):
            reason = label.split(":", 3)[2]
            if reason != "checked":
                found.append((lineage, f"chain {reason}"))
        elif label.startswith("mismatch:"):
            found.append((lineage, f"not {label.removeprefix('mismatch:')}"))
        elif label == "revoked:crl":
            found.append((lineage, "revoked"))
    return sorted(set(found))
