"""One pass's ARI round: which certificates are due, ask their CAs (bounded), judge.

Runs between the scan and the pass's commit: its records are written in the same
transaction as the events they caused. Only the network is slow here, so requests go
through a small thread pool, each with a timeout, never more than
`ari.max_requests_per_pass` of them (directory fetches included).

Phases: candidates (eligible certificates with a known directory) -> identify the due
ones (certID) -> refresh their directories -> ask (most overdue first, within the
budget) -> judge every candidate -> problems.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from ..detection.detect import certificate_fields
from ..detection.thresholds import days_remaining
from ..events import Event, RenewalOverdue, RenewalWindowMoved
from ..observations import CertificateFacts, Observation, Problem
from ..plugins import Source
from ..reading.certfacts import fingerprint
from ..reading.reader import CertificateReader
from . import records
from .carried import CarriedStore, split
from .certid import cert_id
from .client import Fetch, FetchError, Response, ask, renewal_info_url
from .directories import DirectoryOf, directory_lookup
from .overdue import ARI_POLICY
from .records import DirectoryRecord
from .settings import AriSettings
from .window import AriRecord, Moved, Overdue, backoff, judge, next_check

DIRECTORY_FRESH = timedelta(days=1)
"""A directory's answer (also "no renewalInfo") is kept this long before asking again."""
Grace = Callable[[str, CertificateFacts], timedelta | None]
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(slots=True, kw_only=True)
class AriRound:
    """What the round found and what it will write with the pass."""

    active: bool = False
    records: dict[str, AriRecord] = field(default_factory=dict)
    directories: list[DirectoryRecord] = field(default_factory=list)
    keep: set[str] = field(default_factory=set)
    findings: list[tuple[str, Moved | Overdue]] = field(default_factory=list)
    """(source, finding)."""
    problems: list[tuple[str, Problem]] = field(default_factory=list)
    requests: int = 0
    now: datetime | None = None

    def events(self) -> list[Event]:
        """The findings as events, in the order found."""
        return [announce(source, finding, self.now) for source, finding in self.findings]

    def write(self, db: sqlite3.Connection) -> None:
        """Called inside the pass's transaction."""
        if self.active:
            records.write(db, self.records, self.directories, keep=self.keep)


@dataclass(slots=True)
class _Candidate:
    source: str
    observation: Observation
    directory: str
    record: AriRecord | None
    unnamed: bool = False
    """Read, and found without an Authority Key Identifier: not read again this pass."""

    def due(self, now: datetime) -> bool:
        return self.record is None or self.record.next_check <= now


def eligible(observation: Observation, now: datetime) -> bool:
    """A leaf from a public-style ACME CA (not a watched CA's), not yet expired: RFC 9773
    §4.3 says to stop asking once a certificate expired or was replaced."""
    facts = observation.certificate
    return observation.role == "leaf" and facts.signed_by is None and facts.not_after > now


def run_round(
    settings: AriSettings,
    stores: Sequence[Source],
    db: sqlite3.Connection,
    inventory: Sequence[tuple[str, Observation]],
    now: datetime,
    *,
    max_file_size: int,
    overdue_grace: Grace | None = None,
    fetch: Fetch | None = None,
    carried: Sequence[CarriedStore] = (),
    known: Mapping[str, AriRecord] | None = None,
) -> AriRound:
    """Ask the CAs about the certificates that are due; judge every known window.

    `overdue_grace(source, facts)`: the grace after a window's end, None where
    renewal_overdue is off (`renew_before: off`, `expiry.overdue: false`). `carried`:
    the stores the pass did not read, whose certificates are not in `inventory`.
    `known`: the ARI records as this pass's scan loaded them (else they are loaded).
    """
    result = AriRound(active=settings.enabled, now=now)
    if not settings.enabled:
        return result
    if known is None:
        known = records.load_certificates(db)
    directories = records.load_directories(db)
    loaded, kept = split(carried, known, directories, now, DIRECTORY_FRESH)
    candidates = _candidates(settings, stores, [*inventory, *loaded], known, now)
    result.keep = set(candidates) | kept
    due = sorted(
        (c for c in candidates.values() if c.due(now)),
        key=lambda c: c.record.next_check.timestamp() if c.record else float("-inf"),
    )
    for candidate in due:  # the files may have moved to another CA
        if candidate.record is not None and candidate.directory != candidate.record.directory:
            candidate.record = replace(candidate.record, directory=candidate.directory)
    reader = CertificateReader(max_file_size=max_file_size)
    identify = functools.partial(_identify, reader=reader, now=now, keep=result.keep)
    wanted: set[str] = set()  # directories with a certificate RFC 9773 can name
    for candidate in due:
        if candidate.directory not in wanted and identify(candidate) is not None:
            wanted.add(candidate.directory)
    fetcher = fetch or _lazy_fetcher(settings)
    budget = settings.max_requests_per_pass
    stale = [
        directory
        for directory in sorted(wanted)
        if directory not in directories
        or directories[directory].error is not None
        or now - directories[directory].fetched_at >= DIRECTORY_FRESH
    ][:budget]
    for found in _pool(settings.concurrency, stale, lambda d: _directory(fetcher, d, now)):
        directories[found.directory] = found
        result.directories.append(found)
    result.requests += len(stale)
    answered = _ask_due(
        due,
        identify,
        directories,
        fetcher,
        now,
        budget - len(stale),
        settings,
        result,
    )
    for candidate in candidates.values():
        grace = (
            overdue_grace(candidate.source, candidate.observation.certificate)
            if overdue_grace
            else None
        )
        before = known.get(candidate.observation.fingerprint)
        _judge(candidate, before, answered, now, grace, result)
    _certificate_problems(result, candidates.values())
    _directory_problems(result, candidates.values(), directories)
    return result


def _lazy_fetcher(settings: AriSettings) -> Fetch:
    """http_fetcher, built on the first request: most cron passes ask nothing, and its
    TLS context (the system roots, loaded) is a tenth of a cold start."""
    built: list[Fetch] = []

    def fetch(url: str) -> Response:
        if not built:
            from .transport import http_fetcher  # urllib and ssl: only once a CA is asked

            built.append(http_fetcher(settings.timeout, settings.ca_bundle))
        return built[0](url)

    return fetch


def _candidates(
    settings: AriSettings,
    stores: Sequence[Source],
    inventory: Sequence[tuple[str, Observation]],
    known: Mapping[str, AriRecord],
    now: datetime,
) -> dict[str, _Candidate]:
    """Eligible certificates of ARI-enabled stores whose ACME directory is known."""
    sources = {source.id: source for source in stores}
    lookups: dict[str, DirectoryOf | None] = {}
    candidates: dict[str, _Candidate] = {}
    for source_id, observation in inventory:
        source = sources.get(source_id)
        store = settings.for_store(source_id)
        if source is None or not store.enabled:
            continue
        if source_id not in lookups:
            lookups[source_id] = directory_lookup(source, store.directory)
        lookup = lookups[source_id]
        record = known.get(observation.fingerprint)
        if lookup is None and record is None:
            continue  # before its dates: an unchanged file's are decoded only when read
        if not eligible(observation, now) or observation.fingerprint in candidates:
            continue  # the same certificate in two stores: one question, one answer
        directory = record.directory if record else None
        if lookup is not None and (record is None or record.next_check <= now):
            directory = lookup(observation.lineage) or directory  # the files may have moved
        if directory is None:
            continue  # no ACME directory known for this certificate
        candidates[observation.fingerprint] = _Candidate(source_id, observation, directory, record)
    return candidates


def _identify(
    candidate: _Candidate, *, reader: CertificateReader, now: datetime, keep: set[str]
) -> AriRecord | None:
    """The due certificate's record; a new one gets its certID, its file read once, only
    when it is about to be asked: while ARI ramps up over a large store, a pass reads
    the `max_requests_per_pass` it asks about, not every certificate never asked."""
    if candidate.record is None and not candidate.unnamed:
        identifier = _cert_id_of(reader, candidate.observation)
        if identifier is None:
            keep.discard(candidate.observation.fingerprint)
            candidate.unnamed = True
            return None  # no Authority Key Identifier: RFC 9773 cannot name it
        candidate.record = AriRecord(
            fingerprint=candidate.observation.fingerprint,
            cert_id=identifier,
            directory=candidate.directory,
            next_check=now,
        )
    return candidate.record


def _ask_due(
    due: Sequence[_Candidate],
    record_of: Callable[[_Candidate], AriRecord | None],
    directories: Mapping[str, DirectoryRecord],
    fetch: Fetch,
    now: datetime,
    budget: int,
    settings: AriSettings,
    result: AriRound,
) -> set[str]:
    """Ask about as many due certificates as the budget allows; the fingerprints answered."""
    asked: list[tuple[_Candidate, AriRecord, str]] = []
    for candidate in due if budget > 0 else ():
        entry = directories.get(candidate.directory)
        if entry is None or entry.error is not None or entry.renewal_info is None:
            continue  # directory not fetched (budget), failing (reported) or without ARI
        record = record_of(candidate)
        if record is None:
            continue
        asked.append((candidate, record, entry.renewal_info))
        if len(asked) >= budget:
            break  # the rest wait for the next pass, most overdue first

    def question(item: tuple[_Candidate, AriRecord, str]) -> AriRecord:
        _, record, renewal_info = item
        return _ask(fetch, renewal_info, record, now, settings.interval)

    answered: set[str] = set()
    for (candidate, _, _), updated in zip(
        asked, _pool(settings.concurrency, asked, question), strict=True
    ):
        candidate.record = updated
        if updated.error is None:
            answered.add(updated.fingerprint)
    result.requests += len(asked)
    return answered


def _judge(
    candidate: _Candidate,
    before: AriRecord | None,
    answered: set[str],
    now: datetime,
    grace: timedelta | None,
    result: AriRound,
) -> None:
    record = candidate.record
    if record is None:
        return
    if before is None and record.fingerprint not in answered and record.error is None:
        return  # never asked (budget, failing directory): nothing to remember yet
    after, findings = judge(
        candidate.observation,
        before,
        record,
        now,
        answered=record.fingerprint in answered,
        grace=grace,
        overdue=grace is not None,
    )
    if after != before:
        result.records[after.fingerprint] = after
    result.findings += [(candidate.source, finding) for finding in findings]


def _certificate_problems(result: AriRound, candidates: Iterable[_Candidate]) -> None:
    """One problem per (source, directory, kind of failure): a CA that is down for a
    thousand certificates is one line, naming the first and how many more."""
    failing: dict[tuple[str, str, str], list[str]] = {}
    for candidate in candidates:
        record = candidate.record
        if record is None or record.error is None:
            continue
        kind, _, reason = record.error.partition(": ")
        failing.setdefault((candidate.source, record.directory, kind), []).append(reason)
    for (source, directory, kind), reasons in failing.items():
        more = f" (and {len(reasons) - 1} more certificates)" if len(reasons) > 1 else ""
        result.problems.append((source, Problem(directory, kind, reasons[0] + more)))


def _directory_problems(
    result: AriRound,
    candidates: Iterable[_Candidate],
    directories: Mapping[str, DirectoryRecord],
) -> None:
    """One problem per (source, failing directory), however many certificates wait on it."""
    seen: set[tuple[str, str]] = set()
    for candidate in candidates:
        record = candidate.record
        if record is None:
            continue
        entry = directories.get(record.directory)
        if entry is None or entry.error is None or (candidate.source, entry.directory) in seen:
            continue
        if entry.untrusted:
            continue  # a trust setting of lacme-watch's, not the store's problem: see status
        seen.add((candidate.source, entry.directory))
        kind, _, reason = entry.error.partition(": ")
        result.problems.append((candidate.source, Problem(entry.directory, kind, reason)))


def _pool(concurrency: int, items: Sequence[_T], work: Callable[[_T], _R]) -> list[_R]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        return list(pool.map(work, items))


def _directory(fetch: Fetch, directory: str, now: datetime) -> DirectoryRecord:
    try:
        url = renewal_info_url(directory, fetch(directory))
    except FetchError as exc:
        return DirectoryRecord(
            directory=directory,
            renewal_info=None,
            fetched_at=now,
            error=f"{exc.kind}: ACME directory: {exc.reason}",
        )
    return DirectoryRecord(directory=directory, renewal_info=url, fetched_at=now)


def _ask(
    fetch: Fetch, renewal_info: str, record: AriRecord, now: datetime, interval: timedelta
) -> AriRecord:
    try:
        answer = ask(fetch, renewal_info, record.cert_id)
    except FetchError as exc:
        failures = record.failures + 1
        return replace(
            record,
            failures=failures,
            error=f"{exc.kind}: renewalInfo {record.cert_id}: {exc.reason}",
            next_check=backoff(now, failures, exc.retry_after, interval),
        )
    return replace(
        record,
        window=answer.window,
        checked_at=now,
        failures=0,
        error=None,
        next_check=next_check(now, answer.retry_after, interval),
    )


def _cert_id_of(reader: CertificateReader, observation: Observation) -> str | None:
    """Read the certificate once more (capped) for its AKI; kept in the record after."""
    loaded = reader.load_certificates(observation.path)
    if isinstance(loaded, Problem):
        return None
    for certificate in loaded:
        if fingerprint(certificate) == observation.fingerprint:
            return cert_id(certificate)
    return None


def announce(source: str, finding: Moved | Overdue, now: datetime | None = None) -> Event:
    """The event for one finding."""
    observation = finding.observation
    facts = observation.certificate
    context = certificate_fields(source, observation)
    if isinstance(finding, Moved):
        previous = finding.previous
        return RenewalWindowMoved(
            **context,
            window_start=finding.window.start,
            window_end=finding.window.end,
            explanation_url=finding.window.explanation_url,
            previous_window_start=previous.start if previous else None,
            previous_window_end=previous.end if previous else None,
            reason=finding.reason,
            cert_id=finding.cert_id,
        )
    return RenewalOverdue(
        **context,
        renew_after=finding.window.end,
        days_remaining=days_remaining(facts.not_after, now or finding.window.end),
        policy=ARI_POLICY,
    )
