"""Scanning every source for one pass, each isolated: a source that fails (a SourceError,
or any exception from a plugin) is that source's problem, its previous inventory carries
over, and the others go on. Returns the changes to commit, as one `Scanned` value."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509

from . import rescans
from .ari import records as ari_records
from .ari.overdue import with_windows
from .cloudevents import Envelope, wrap
from .config import Config, SourceRenewal
from .detect import Authority, stale_deployments
from .errors import SourceError
from .incremental import Overlay, detect_changes
from .observations import CrlSeen, Issuance, Observation, Problem, ScanResult
from .payloads import PayloadStream
from .plugins import Source
from .renewal import RenewalPolicy
from .statedb import SourceChange, StateStore, StatRecord
from .verify import findings, verifier_for

if TYPE_CHECKING:
    from .events import Event
    from .reader import CertificateReader

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scanned:
    """What scanning every source found and decided; nothing is written yet."""

    changes: tuple[SourceChange, ...] = ()
    envelopes: tuple[Envelope, ...] = ()
    problems: tuple[tuple[str, Problem], ...] = ()
    inventory: tuple[tuple[str, Observation], ...] = ()
    issuances: tuple[Issuance, ...] = ()
    failed_sources: frozenset[str] = frozenset()
    files_parsed: int = 0
    files_reused: int = 0
    crls: tuple[tuple[str, CrlSeen], ...] = ()
    findings: tuple[tuple[str, str, str], ...] = ()
    """(source, lineage, what is wrong now): broken chains, revocations, wrong names."""
    agent_runs: Mapping[str, datetime] = field(default_factory=dict)
    """The latest renewal-agent run each source's scan saw (certbot's log)."""
    carried: tuple[str, ...] = ()
    """File stores whose stat record matched: their certificates stay in the state
    database as last pass left them, and are not in `inventory`."""
    carried_certificates: int = 0


def scan_sources(
    config: Config, store: StateStore, now: datetime, *, quick: bool = False
) -> Scanned:
    """Scan and detect every source; nothing is written yet.

    A source that raises is that source's problem: its inventory carries over and the
    other sources' events go ahead. With `quick` (a pass, not `status`), a file store
    whose stat record still matches keeps last pass's outcome without being read.
    """
    signers: list[x509.Certificate] = []
    authorities: dict[str, Authority] = {}
    changes: list[SourceChange] = []
    currents: list[Mapping[str, Observation]] = []
    events: list[Event] = []
    problems: list[tuple[str, Problem]] = []
    inventory: list[tuple[str, Observation]] = []
    issuances: list[Issuance] = []
    failed: set[str] = set()
    agent_runs: dict[str, datetime] = {}
    parsed = reused = 0
    crls: list[tuple[str, CrlSeen]] = []
    wrong: list[tuple[str, str, str]] = []
    carried: list[str] = []
    counted = 0
    authority_ids = {source.id for source in config.authorities}
    windows = ari_records.windows(store.connection) if config.ari.enabled else {}
    verifier = verifier_for(config, store, now)
    for source in config.sources:
        key = rescans.record_key(config, source, signers, authorities, windows)
        kept = store.load_stat_record(source.id) if quick and key is not None else None
        changed = (
            rescans.changes_since(source.id, kept, key, now) if quick and key is not None else None
        )
        if key is None and quick:
            _log.debug("%s: read in full, it keeps no stat record", source.id)
        if changed == [] and (carry := rescans.carried(store, source.id, now)):
            _log.debug("%s: unchanged since the last pass, not read", source.id)
            changes.append(carry)
            currents.append(Overlay(store, source.id, {}, set()))  # read only if asked
            carried.append(source.id)
            problems += [(source.id, problem) for problem in sorted(carry.after.problems, key=str)]
            reused += store.count_files(source.id)
            continue
        payloads = PayloadStream(store.connection, source.id)
        scan = None
        if changed is not None and hasattr(source, "rescan"):  # the cache of what changed
            files_before = store.load_files(
                source.id,
                paths=[path for path, _ in changed],
                under=[path for path, directory in changed if directory],
            )
            reader = rescans.reader_for(config, signers, files_before, payloads, verifier)
            scan = rescans.rescan(source, reader, changed)
            if scan is not None and rescans.chains_moved(reader, files_before, payloads):
                scan = None  # a full scan decides which chains are gone
        try:
            if scan is None:
                files_before = store.load_files(source.id)
                reader = rescans.reader_for(config, signers, files_before, payloads, verifier)
                scan = _scan(source, reader, store.load_cursor(source.id))
        finally:
            reader.finish()
            payloads.close()
        partial = scan.covered is not None
        if partial:  # the file cache's rows of files it did not look at stay as they are
            dropped = {path for path, _ in changed or ()}
            files_before = {
                path: cached
                for path, cached in files_before.items()
                if path in reader.files or path in dropped
            }
        if source.id in authority_ids:
            signers += scan.signers
            for observation in scan.observations:
                authorities[observation.fingerprint] = Authority(
                    fingerprint=observation.fingerprint, cn=observation.domain
                )
        else:
            scan = _without_watched_cas(scan, authorities)
        scan = _with_renewal(scan, config.renewal_of(source.id))
        if config.ari.for_store(source.id).enabled and not config.renewal_of(source.id).no_policy:
            scan = with_windows(scan, windows)  # the CA's window is the renewal policy
        if scan.agent_runs:
            agent_runs[source.id] = max(scan.agent_runs)
        outcome = detect_changes(
            store,
            scan,
            source=source.id,
            now=now,
            policy=config.policy,
            authorities=authorities,
            files_before=files_before,
            files_after=files_before if scan.failed else reader.files,
        )
        verified_after, verified, until = verifier.verify(
            outcome.change.before,
            outcome.view,
            scan,
            reader,
            now=now,
            signers=signers,
            revocation=source.id not in authority_ids and config.checks_revocation(source.id),
        )
        change = outcome.written(verified_after)
        if partial and kept is not None:  # what it did not read again is recorded as it was
            reader.stat_record.keep(kept.record, {path for path, _ in changed or ()})
            if kept.until is not None:
                until = kept.until if until is None else min(until, kept.until)
        record = reader.stat_record_bytes() if key is not None and not scan.failed else None
        if key is not None and record is None:
            _log.debug("%s: no stat record kept (a symlink, or a change within 2 s)", source.id)
        if record is not None:
            change = _replace(change, stat_record=StatRecord(key or "", until, record))
        after = change.after
        crls += [(source.id, crl) for crl in scan.crls]
        wrong += [(source.id, *finding) for finding in findings(verified_after)]
        changes.append(change)
        currents.append(outcome.current)
        events += outcome.events + verified
        problems += [(source.id, problem) for problem in sorted(after.problems, key=str)]
        if partial:  # counted from the database, as a carried store's are
            carried.append(source.id)
            counted += outcome.count_change
            reused += store.count_files(source.id) - len(reader.files)
        else:
            inventory += [(source.id, o) for o in outcome.current.values()]
        if source.id not in authority_ids:  # a private CA's issuance is no ACME rate limit's
            issuances += scan.issuances
            # The certificates detect() saw: an unchanged one was offered last pass.
            issuances += [
                Issuance(o.fingerprint, o.domains, o.certificate.not_before)
                for o in after.certificates.values()
                if o.role == "leaf" and o.certificate.signed_by is None
            ]
        if scan.failed:
            failed.add(source.id)
        parsed += reader.parsed
        reused += reader.reused
    checked, stale = _stale(changes, currents, now)
    return Scanned(
        changes=checked,
        envelopes=tuple(
            wrap(event, host=config.host, time=now, salt=store.id_salt) for event in events + stale
        ),
        problems=tuple(problems),
        inventory=tuple(inventory),
        issuances=tuple(issuances),
        failed_sources=frozenset(failed),
        files_parsed=parsed,
        files_reused=reused,
        crls=tuple(crls),
        findings=tuple(wrong),
        agent_runs=agent_runs,
        carried=tuple(carried),
        carried_certificates=counted + sum(store.count_certificates(s) for s in carried),
    )


def _scan(source: Source, reader: CertificateReader, cursor: str | None) -> ScanResult:
    """source.scan(), with anything it raises turned into a failed scan of that source.

    SourceError is the documented way to say "this source cannot be read as a whole";
    anything else is a bug in the source, logged with its traceback at debug level.
    Sources written before `scan` took a cursor are called without one.
    """
    try:
        if _takes_cursor(source):
            return source.scan(reader, cursor)
        return source.scan(reader)
    except SourceError as exc:
        problem = Problem(exc.path, exc.reason, exc.detail)
    except Exception as exc:
        _log.debug("source %s raised during its scan", source.id, exc_info=True)
        problem = Problem(source.id, "source_error", f"{type(exc).__name__}: {exc}")
    return ScanResult(problems=(problem,), failed=True)


def _takes_cursor(source: Source) -> bool:
    try:
        parameters = inspect.signature(source.scan).parameters
    except (TypeError, ValueError):
        return True
    return "cursor" in parameters or any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters.values()
    )


def _stale(
    changes: list[SourceChange], currents: list[Mapping[str, Observation]], now: datetime
) -> tuple[tuple[SourceChange, ...], list[Event]]:
    """Compare what endpoints serve with what every other source holds (all scanned now).

    Returns the changes with the endpoints' stale marks updated, and the new events. An
    endpoint source's snapshot is always whole (see incremental.py); `currents` are
    every source's whole inventory.
    """
    endpoint_sources = {
        index
        for index, change in enumerate(changes)
        if any(lineage.startswith("tls:") for lineage in change.after.certificates)
    }
    if not endpoint_sources:
        return tuple(changes), []
    held = [
        observation
        for index, current in enumerate(currents)
        if index not in endpoint_sources
        for observation in current.values()
    ]
    checked: list[SourceChange] = []
    events: list[Event] = []
    for index, change in enumerate(changes):
        if index in endpoint_sources:
            after, found = stale_deployments(change.after, held, now)
            change = _replace(change, after=after)
            events += found
        checked.append(change)
    return tuple(checked), events


def _with_renewal(scan: ScanResult, settings: SourceRenewal) -> ScanResult:
    """The store's `renew_before` replaces what its files say (or supplies a policy);
    `renew_before: off` takes it away."""
    if settings.renew_before is None and not settings.no_policy:
        return scan
    policy: RenewalPolicy | None = settings.renew_before
    observations = tuple(
        _replace(o, renewal=policy) if o.role == "leaf" else o for o in scan.observations
    )
    return _replace(scan, observations=observations)


def _without_watched_cas(scan: ScanResult, authorities: dict[str, Authority]) -> ScanResult:
    """A watched CA's root riding in a bundle is reported by its authority, not twice."""
    if not authorities:
        return scan
    kept = tuple(
        observation
        for observation in scan.observations
        if not (observation.role == "chain" and observation.fingerprint in authorities)
    )
    return _replace(scan, observations=kept)
