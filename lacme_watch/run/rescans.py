"""Whether a file store's scan can be skipped or narrowed this pass, by its stat record
(statrecord.py): kept whole when nothing it read changed and nothing came due, read
in part when its source can rescan only what changed, read in full otherwise.

The record holds for one key: everything beside the files that decides what a scan
says (the store's own settings, its renewal settings, the watched CAs and signers,
the facts' version, the expiry policy, whether the CA's ARI windows apply). The
windows themselves are not in it: a window becomes its leaf's renewal policy, so the
leaves whose CA answered since the store was last scanned are shown to detect()
again from the state database (window_lineages), their files not read; the round
judges windows itself, carried stores' certificates included (passes.py). A store that
checks revocation keeps none: the network decides what its scan says.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ..ari.overdue import ARI_POLICY
from ..config import Config
from ..detection.detect import Authority
from ..detection.renewal import RenewAt
from ..observations import FACTS_VERSION, ScanResult
from ..plugins import Source
from ..reading import statrecord
from ..reading.payloads import PayloadStream
from ..statedb import SourceChange, StateStore, StatRecord

if TYPE_CHECKING:
    from cryptography import x509

    from ..ari.window import AriRecord
    from ..detection.verify import NothingRead, Verifier
    from ..reading.reader import CachedFile, CertificateReader

_log = logging.getLogger(__name__)


def record_key(
    config: Config,
    source: Source,
    signers: list[x509.Certificate],
    authorities: Mapping[str, Authority],
) -> str | None:
    """Everything beside its files that decides a file store's outcome; None for a
    source that cannot keep a stat record (network, logs, plugins, revocation)."""
    if getattr(source, "stat_record", False) is not True or config.checks_revocation(source.id):
        return None
    renewal = config.renewal_of(source.id)
    text = repr(
        (
            _signers_key(signers),  # and the facts' version
            config.chain,
            config.max_file_size,
            type(source).__qualname__,
            sorted(vars(source).items()),
            renewal,
            config.policy,
            sorted(authorities),
            windows_apply(config, source.id),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def windows_apply(config: Config, source: str) -> bool:
    """Whether the CA's ARI windows are this store's leaves' renewal policy."""
    return config.ari.for_store(source).enabled and not config.renewal_of(source).no_policy


def window_lineages(
    store: StateStore, source: str, windows: Mapping[str, AriRecord]
) -> frozenset[str]:
    """The store's lineages whose leaf's renewal policy no longer matches its CA's
    window: detect() must see them again. Only leaves whose CA answered since the
    store was last scanned can differ (the round asks at most `max_requests_per_pass`
    a pass), so only those rows are decoded. A window once given is never withdrawn
    (an answer always holds one; a failure keeps the last), so no leaf goes back to its
    client's own policy, which only the files hold."""
    if not windows:
        return frozenset()
    since = store.last_scan(source)
    if since is None:
        return frozenset()
    answered = {
        fingerprint
        for fingerprint, record in windows.items()
        if record.checked_at is not None and record.checked_at.timestamp() >= since
    }
    candidates = [lineage for lineage, fp in store.fingerprints_of(source) if fp in answered]
    snapshot = store.load_snapshot(source, candidates, marks_of=()) if candidates else None
    if snapshot is None:
        return frozenset()
    moved: set[str] = set()
    for lineage, observation in snapshot.certificates.items():
        record = windows.get(observation.fingerprint)
        if observation.role != "leaf" or record is None or record.window is None:
            continue
        if observation.renewal != RenewAt(at=record.window.end, origin=ARI_POLICY):
            moved.add(lineage)
    return frozenset(moved)


def _signers_key(signers: Sequence[x509.Certificate]) -> str:
    """The watched CAs and the facts' version. Without CAs (most hosts) certfacts is not
    loaded, nor cryptography with it: an unchanged rescan of such a store only stats."""
    if not signers:
        return FACTS_VERSION
    from ..reading.certfacts import signers_digest  # parsed CAs: cryptography is loaded already

    return signers_digest(signers)


WHOLE_AFTER = 1_000
"""Changed paths from which, when they are also an eighth of the record or more (a
store written whole just before its last scan), a store is read in full instead: a
partial scan would hold last pass's record and the file cache's rows of the change
beside the whole new record, for little less reading."""


def changes_since(
    source: str, kept: StatRecord | None, key: str | None, now: datetime
) -> list[tuple[str, bool]] | None:
    """What changed since the store's stat record (each path, and whether it was a
    directory), or None when there is no record it can go by: none kept, another key,
    or a chain verdict that has run out."""
    if kept is None or kept.key != key:
        why = "no stat record was kept" if kept is None else "the configuration changed"
        _log.debug("%s: read in full, %s", source, why)
        return None
    if kept.until is not None and now.timestamp() >= kept.until:
        _log.debug("%s: read in full, a chain's lifetime verdict ran out", source)
        return None
    try:
        found = statrecord.changes(kept.record, kept.delta)
    except statrecord.LinkChanged as changed:
        _log.debug("%s: read in full, a symlink on the way to %s changed", source, changed)
        return None
    _log.debug(
        "%s: stat record %s", source, "damaged" if found is None else f"{len(found)} changed"
    )
    if (
        found is not None
        and len(found) >= WHOLE_AFTER
        and len(found) * statrecord.DELTA_SHARE > statrecord.size(kept.record)
    ):
        _log.debug("%s: read in full, an eighth of it or more changed", source)
        return None  # a partial scan would hold last pass's record beside a whole new one
    return found


def carried(store: StateStore, source: str, now: datetime) -> SourceChange | None:
    """Last pass's outcome of a file store nothing of which changed, when nothing it
    holds came due either (no threshold crossed)."""
    if store.thresholds_due(source, now):
        return None
    return standing(store, source)


def standing(store: StateStore, source: str) -> SourceChange | None:
    """The store's outcome as the state database holds it, committed as it is (only
    its `last_scan` moves); None for a store never scanned."""
    snapshot = store.carried_snapshot(source)
    if snapshot is None:
        return None
    return SourceChange(before=snapshot, after=snapshot, files_before={}, files_after={})


def next_record(
    reader: CertificateReader | NothingRead,
    key: str,
    kept: StatRecord | None,
    dropped: Collection[str],
    until: float | None,
) -> StatRecord | None:
    """The stat record to keep after this scan; None: the next pass reads in full.
    After a partial scan (`kept`: last pass's record, `dropped`: what changed since),
    what it did not read again stands as recorded: a few changed paths are a delta
    over the record, more make it whole again (statrecord.Recorder.overlay)."""
    if kept is not None:
        until = earliest(until, kept.until)
        if not dropped and reader.stat_record.looked_at_nothing:
            # Nothing changed and nothing was read (certificates only came due): the
            # record stands as loaded, not made whole and written again (lacme's
            # 10,000 directories: 2.8 MiB in the commit of a pass of 10,000 events).
            return StatRecord(key, until, kept.record, kept.delta, rewrite=False)
        delta = reader.stat_record.overlay(bytes(kept.record), kept.delta, dropped)
        if delta is not None:
            return StatRecord(key, until, kept.record, delta, rewrite=False)
    record = reader.stat_record_bytes()
    return None if record is None else StatRecord(key, until, record)


def earliest(first: float | None, second: float | None) -> float | None:
    """The earlier of two `until` instants, None being never."""
    if first is None or second is None:
        return second if first is None else first
    return min(first, second)


def reader_for(
    config: Config,
    signers: Sequence[x509.Certificate],
    files: Mapping[str, CachedFile],
    payloads: PayloadStream,
    verifier: Verifier,
) -> CertificateReader:
    from ..reading.reader import CertificateReader  # only for a source with files to read

    return CertificateReader(
        max_file_size=config.max_file_size,
        chain=config.chain,
        signers=tuple(signers),
        cache=files,
        payloads=payloads,
        judge=verifier.judge(signers),
    )


def chains_moved(
    reader: CertificateReader, before: Mapping[str, CachedFile], payloads: PayloadStream
) -> bool:
    """Whether a file a partial rescan read again carries other chain certificates than
    it did: an intermediate shared by many bundles is only known gone after a full scan."""
    read = {
        path: cached.payload
        for path, cached in reader.files.items()
        if cached is not before.get(path) and cached.payload is not None  # read again
    }
    old = payloads.with_chains(list(read))  # a sibling re-read is in the database too
    return any(
        _chain_fingerprints(old.get(path, "")) != _chain_fingerprints(payload)
        for path, payload in read.items()
    )


def chain_holder_went(store: StateStore, source: str, scan: ScanResult) -> bool:
    """Whether a lineage a partial rescan covered and found no certificate in (gone,
    or unreadable now) was where a chain certificate was observed (the first bundle
    that carried it): only a full scan knows whether another bundle still carries it,
    and which one comes first."""
    observed = {observation.lineage for observation in scan.observations}
    gone = [lineage for lineage in scan.covered or () if lineage not in observed]
    paths = {o.path for o in store.inventory_of(source, gone).values()} if gone else set()
    if not paths:
        return False
    chains = [
        lineage
        for (lineage,) in store.connection.execute(
            "SELECT lineage FROM certificates WHERE source = ?"
            " AND lineage >= 'chain:' AND lineage < 'chain;'",
            (source,),
        )
    ]
    return any(o.path in paths for o in store.inventory_of(source, chains).values())


def _chain_fingerprints(payload: str) -> list[str]:
    """The fingerprints of a cached file's certificates after its first (its chain)."""
    return [line.partition("\t")[0] for line in payload.split("\n")[1:]]


def rescan(
    source: Source,
    reader: CertificateReader,
    changed: Sequence[tuple[str, bool]],
    kept: StatRecord | None = None,
) -> ScanResult | None:
    """The source's partial rescan of what changed, if it has one and can do it here;
    None for a full scan (also when the partial one raises: the full one decides).
    `kept`: the stat record it goes by, which the reader answers from what was in a
    changed directory last pass (recorded_in())."""
    rescan = getattr(source, "rescan", None)
    if rescan is None:
        return None
    if kept is not None:
        reader.last_record = (kept.record, kept.delta)
    try:
        found = rescan(reader, changed)
    except Exception:
        _log.debug("source %s raised during a partial rescan", source.id, exc_info=True)
        return None
    return found if isinstance(found, ScanResult) else None
