"""Scanning every source for one pass, each isolated: a source that fails (a SourceError,
or any exception from a plugin) is that source's problem, its previous inventory carries
over, and the others go on. Returns the changes to commit, as one `Scanned` value."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..ari import records as ari_records
from ..ari.overdue import with_windows
from ..config import Config, SourceRenewal
from ..detection.detect import Authority, stale_deployments
from ..detection.incremental import Overlay, detect_changes
from ..detection.renewal import RenewalPolicy
from ..detection.verify import NothingRead, Verifier, findings, verifier_for
from ..errors import SourceError
from ..events.cloudevents import Envelope, wrap
from ..observations import CrlSeen, Issuance, Observation, Problem, ScanResult
from ..plugins import Source
from ..reading.payloads import PayloadStream
from ..statedb import SourceChange, StateStore
from . import rescans, slices
from .slices import Settled

if TYPE_CHECKING:
    from cryptography import x509

    from ..ari.window import AriRecord
    from ..events import Event
    from ..plugins import ListedSource
    from ..reading.reader import CachedFile, CertificateReader

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
    views: Mapping[str, Overlay] = field(default_factory=dict)
    """Each partly rescanned store's inventory after this pass: the database's, with
    what the rescan read over it, loaded only if asked (the ARI round asks)."""
    ari_records: Mapping[str, AriRecord] | None = None
    """Every certificate's ARI record as the scan loaded it (None: not loaded)."""
    committed: tuple[Envelope, ...] = ()
    """Events already in the outbox: a large store's first pass commits slice by slice
    (slices.py). They are this pass's, not to be written again."""
    id_conflicts: tuple[str, ...] = ()
    """What those slices' commits found already recorded for another event."""


@dataclass(slots=True)
class _Tally:
    """What scanning gathers source by source, until it is made into one Scanned."""

    signers: list[x509.Certificate] = field(default_factory=list)
    authorities: dict[str, Authority] = field(default_factory=dict)
    changes: list[SourceChange] = field(default_factory=list)
    currents: list[Mapping[str, Observation]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)
    inventory: list[tuple[str, Observation]] = field(default_factory=list)
    issuances: list[Issuance] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    agent_runs: dict[str, datetime] = field(default_factory=dict)
    crls: list[tuple[str, CrlSeen]] = field(default_factory=list)
    wrong: list[tuple[str, str, str]] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)
    views: dict[str, Overlay] = field(default_factory=dict)
    counted: int = 0
    parsed: int = 0
    reused: int = 0
    committed: list[Envelope] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def scan_sources(
    config: Config, store: StateStore, now: datetime, *, quick: bool = False
) -> Scanned:
    """Scan and detect every source; nothing is written yet, but for a large store's
    first pass (slices.py), committed slice by slice.

    A source that raises is that source's problem: its inventory carries over and the
    other sources' events go ahead. With `quick` (a pass, not `status`), a file store
    whose stat record still matches keeps last pass's outcome without being read.
    """
    tally = _Tally()
    authority_ids = {source.id for source in config.authorities}
    # Every ARI record, for the keys and renewal policies here and for the round after
    # (passes.py): nothing writes them in between. Only their windows count here.
    known = ari_records.readable_certificates(store.connection) if config.ari.enabled else None
    windows = known or {}
    verifier = verifier_for(config, store, now)
    for source in config.sources:
        key = rescans.record_key(config, source, tally.signers, tally.authorities)
        kept = store.load_stat_record(source.id) if quick and key is not None else None
        changed = (
            rescans.changes_since(source.id, kept, key, now) if quick and key is not None else None
        )
        if key is None and quick:
            _log.debug("%s: read in full, it keeps no stat record", source.id)
        reshow = (
            rescans.window_lineages(store, source.id, windows)
            if changed is not None and rescans.windows_apply(config, source.id)
            else frozenset()
        )
        if reshow:
            _log.debug("%s: %d renewal windows moved, shown again", source.id, len(reshow))
        if changed == [] and not reshow and (carry := rescans.carried(store, source.id, now)):
            _log.debug("%s: unchanged since the last pass, not read", source.id)
            _carry(tally, store, source.id, carry)
            continue
        settle = functools.partial(
            _settle,
            tally,
            config,
            store,
            now,
            verifier,
            windows,
            source.id in authority_ids,
            reshow=reshow,
        )
        payloads = PayloadStream(store.connection, source.id)
        scan = None
        reader: CertificateReader | NothingRead
        try:
            if quick and key is not None and slices.wanted(source, store):
                reader = rescans.reader_for(
                    config, tally.signers, store.load_files(source.id), payloads, verifier
                )  # the cache of a first pass that stopped between slices, or none
                if _in_slices(tally, store, config, now, source, reader, settle, key):
                    continue
            if changed == []:
                # Nothing changed (not carried: certificates came due): a partial rescan
                # of no path, with no reader to load and no file cache to look at. Any
                # store that keeps a stat record: what it says follows from the files
                # it read.
                files_before = {}
                reader = NothingRead(tally.signers)
                scan = ScanResult(covered=frozenset())
            elif changed is not None and hasattr(source, "rescan"):  # the cache of what changed
                files_before = store.load_files(
                    source.id,
                    paths=[path for path, _ in changed],
                    under=[path for path, directory in changed if directory],
                )
                reader = rescans.reader_for(config, tally.signers, files_before, payloads, verifier)
                scan = rescans.rescan(source, reader, changed, kept)
                if scan is not None and (
                    rescans.chains_moved(reader, files_before, payloads)
                    or rescans.chain_holder_went(store, source.id, scan)
                ):
                    scan = None  # a full scan decides which chains are gone
            if scan is None:
                files_before = store.load_files(source.id)
                reader = rescans.reader_for(config, tally.signers, files_before, payloads, verifier)
                scan = _scan(source, reader, store.load_cursor(source.id))
        finally:
            reader.finish()
            payloads.close()
        partial = scan.covered is not None
        dropped = {path for path, _ in changed or ()} if partial else set()
        if partial:  # the file cache's rows of files it did not look at stay as they are
            files_before = {
                path: cached
                for path, cached in files_before.items()
                if path in reader.files or path in dropped
            }
        change, events, outcome, until = settle(source.id, scan, reader, files_before)
        if key is not None and not scan.failed:
            stat = rescans.next_record(reader, key, kept if partial else None, dropped, until)
            if stat is None:
                _log.debug(
                    "%s: no stat record kept (a symlink, or a file changed while read)", source.id
                )
            change = _replace(change, stat_record=stat)
        tally.changes.append(change)
        tally.problems += [(source.id, p) for p in sorted(change.after.problems, key=str)]
        tally.currents.append(outcome.current)
        tally.events += events
        if partial:  # counted from the database, as a carried store's are
            tally.carried.append(source.id)
            if isinstance(outcome.current, Overlay):
                tally.views[source.id] = outcome.current
            tally.counted += outcome.count_change
            tally.reused += store.count_files(source.id) - len(reader.files)
        else:
            tally.inventory += [(source.id, o) for o in outcome.current.values()]
        if scan.failed:
            tally.failed.add(source.id)
        tally.parsed += reader.parsed
        tally.reused += reader.reused
    checked, stale = _stale(tally.changes, tally.currents, now)
    return Scanned(
        changes=checked,
        envelopes=tuple(
            wrap(event, host=config.host, time=now, salt=store.id_salt)
            for event in tally.events + stale
        ),
        problems=tuple(tally.problems),
        inventory=tuple(tally.inventory),
        issuances=tuple(tally.issuances),
        failed_sources=frozenset(tally.failed),
        files_parsed=tally.parsed,
        files_reused=tally.reused,
        crls=tuple(tally.crls),
        findings=tuple(tally.wrong),
        agent_runs=tally.agent_runs,
        carried=tuple(tally.carried),
        views=tally.views,
        ari_records=known,
        carried_certificates=tally.counted
        + sum(store.count_certificates(s) for s in tally.carried),
        committed=tuple(tally.committed),
        id_conflicts=tuple(tally.conflicts),
    )


def _in_slices(
    tally: _Tally,
    store: StateStore,
    config: Config,
    now: datetime,
    source: ListedSource,
    reader: CertificateReader,
    settle: slices.Settle,
    key: str,
) -> bool:
    """A large store's first pass read and committed in slices (slices.py): True when
    it is done, and the rest of the pass sees the store as a carried one; False when
    the caller must scan it (small, failed as a whole, or its rescan declined)."""
    read = slices.read(source, reader, store, config, now, settle, key)
    reader.finish()
    tally.parsed += reader.parsed
    if read is None:
        return False
    tally.committed += read.envelopes  # in the outbox already
    tally.conflicts += read.conflicts
    carry = rescans.standing(store, source.id) if read.done else None
    if carry is None:
        return False
    tally.reused += reader.reused
    _carry(tally, store, source.id, carry, files=False)
    return True


def _carry(
    tally: _Tally, store: StateStore, source: str, carry: SourceChange, *, files: bool = True
) -> None:
    """A store whose outcome stands as the database holds it (see rescans.carried)."""
    tally.changes.append(carry)
    tally.currents.append(Overlay(store, source, {}, set()))  # read only if asked
    tally.carried.append(source)
    tally.problems += [(source, problem) for problem in sorted(carry.after.problems, key=str)]
    if files:
        tally.reused += store.count_files(source)


def _settle(
    tally: _Tally,
    config: Config,
    store: StateStore,
    now: datetime,
    verifier: Verifier,
    windows: Mapping[str, AriRecord],
    authority: bool,
    source: str,
    scan: ScanResult,
    reader: CertificateReader | NothingRead,
    files_before: Mapping[str, CachedFile],
    *,
    reshow: frozenset[str] = frozenset(),
) -> Settled:
    """One scan (or one slice of it) detected and checked. What the rest of the pass
    needs of it goes into `tally`, but for the problems, which the caller reports once."""
    if authority:
        tally.signers += scan.signers
        for observation in scan.observations:
            tally.authorities[observation.fingerprint] = Authority(
                fingerprint=observation.fingerprint, cn=observation.domain
            )
    else:
        scan = _without_watched_cas(scan, tally.authorities)
    scan = _with_renewal(scan, config.renewal_of(source))
    applied = windows if rescans.windows_apply(config, source) else {}
    scan = with_windows(scan, applied)  # the CA's window is the renewal policy
    if scan.agent_runs:
        tally.agent_runs[source] = max(scan.agent_runs)
    outcome = detect_changes(
        store,
        scan,
        source=source,
        now=now,
        policy=config.policy,
        authorities=tally.authorities,
        files_before=files_before,
        files_after=files_before if scan.failed else reader.files,
        reshow=reshow,
        windows=applied,
    )
    verified_after, verified, until = verifier.verify(
        outcome.change.before,
        outcome.view,
        scan,
        reader,
        now=now,
        signers=tally.signers,
        revocation=not authority and config.checks_revocation(source),
    )
    change = outcome.written(verified_after)
    after = change.after
    tally.crls += [(source, crl) for crl in scan.crls]
    tally.wrong += [(source, *finding) for finding in findings(verified_after)]
    if not authority:  # a private CA's issuance is no ACME rate limit's
        since = now - config.rate_limits.longest_window
        tally.issuances += [i for i in scan.issuances if i.issued_at > since]
        # The certificates detect() saw: an unchanged one was offered last pass.
        tally.issuances += [
            Issuance(o.fingerprint, o.domains, o.certificate.not_before)
            for o in after.certificates.values()
            if o.role == "leaf"
            and o.certificate.signed_by is None
            and o.certificate.not_before > since
        ]
    return Settled(change, outcome.events + verified, outcome, until)


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
