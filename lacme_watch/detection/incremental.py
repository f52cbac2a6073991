"""What a pass must show detect(): the lineages that changed, went, or came due.

A rescan of a large unchanged store should cost its `stat` calls and little more.
Each certificate row keeps an identity key (everything its observation is made of)
and the instant its next expiry threshold is crossed, indexed: a lineage whose
observation has the same identity as last pass, and whose threshold is not due, is
left in the database as it is. detect() stays pure and whole; it is only given less.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..ari.overdue import with_windows
from ..observations import Observation, ScanResult
from ..statedb import Indexed, SourceChange, StateStore, identity
from . import renewal
from .detect import Authority, SourceSnapshot, detect
from .thresholds import Policy

if TYPE_CHECKING:
    from ..ari.window import AriRecord
    from ..events import Event
    from ..reading.reader import CachedFile


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One source's pass: what to write, the events, and its whole current inventory."""

    change: SourceChange
    """Certificates of the lineages detect() saw; marks, stale marks and problems whole."""
    events: list[Event]
    current: Mapping[str, Observation]
    count_change: int = 0
    """Certificates added less those gone (what a partial rescan adds to the count)."""

    @property
    def view(self) -> SourceSnapshot:
        """The next snapshot whole, certificates included, for the checks after detect()
        (verify.py): they look at every certificate, unchanged ones by their marks."""
        return replace(self.change.after, certificates=self.current)

    def written(self, checked: SourceSnapshot) -> SourceChange:
        """The change to commit once `checked` (the view, with the checks' marks) is final:
        its marks and problems, but only the certificates detect() saw."""
        return replace(
            self.change, after=replace(checked, certificates=self.change.after.certificates)
        )


def detect_changes(
    store: StateStore,
    scan: ScanResult,
    *,
    source: str,
    now: datetime,
    policy: Policy,
    authorities: Mapping[str, Authority],
    files_before: Mapping[str, CachedFile],
    files_after: Mapping[str, CachedFile],
    reshow: Collection[str] = frozenset(),
    windows: Mapping[str, AriRecord] | None = None,
) -> Outcome:
    """detect() over what changed since the last pass, or over everything when it must:
    a first pass, a failed scan (its inventory carries over whole), TLS endpoints
    (compared with every store by deployment_stale). After a partial rescan, `reshow`
    lineages are shown again as the database holds them, with `windows` (the CA's
    renewal windows) as their leaves' renewal policy, as a full scan would apply them."""
    if scan.covered is not None and not scan.failed:  # a partial rescan: its lineages only
        index = store.load_index(source, {o.lineage for o in scan.observations} | scan.covered)
        whole, partial = False, True
    else:
        index = store.load_index(source)
        whole = (
            not index or scan.failed or any(o.lineage.startswith("tls:") for o in scan.observations)
        )
        partial = False
    current: dict[str, Observation] = {}
    for observation in scan.observations:
        if partial and observation.role == "chain" and observation.lineage in index:
            continue  # an intermediate other bundles carry too: a partial scan cannot tell
        current.setdefault(observation.lineage, observation)
    made: dict[str, tuple[Observation, bytes]] = {}
    if whole:
        previous = store.load_snapshot(source)
        shown = scan
    else:
        involved = _involved(store, source, index, current, now, scan.covered, made, reshow)
        marks_of = (involved | current.keys() | (scan.covered or set())) if partial else None
        previous = _previous(store, source, involved, index, made, marks_of)
        shown = replace(
            scan, observations=tuple(o for o in scan.observations if o.lineage in involved)
        )
        if partial and previous is not None:
            shown = _with_the_rest(shown, previous, current, scan.covered or frozenset())
            shown = with_windows(shown, windows or {})
    after, events = detect(
        previous, shown, source=source, now=now, policy=policy, authorities=authorities
    )
    if not whole and previous is not None:  # the lineages left alone keep their marks
        after = replace(
            after,
            reported=after.reported | {m for m in previous.reported if m[0] not in involved},
            stale=after.stale | {m for m in previous.stale if m[0] not in involved},
        )
    inventory: Mapping[str, Observation]
    count_change = 0
    if whole:
        inventory = dict(after.certificates)
    elif partial:  # the rest stays in the database: read back only if asked (endpoints)
        known = previous.certificates.keys() if previous else set()
        gone = (index.keys() - after.certificates.keys()) & known
        inventory = Overlay(store, source, {**current, **after.certificates}, gone)
        count_change = len(after.certificates) - len(known)  # added less gone
    else:
        inventory = {**current, **after.certificates}
    return Outcome(
        change=SourceChange(
            before=previous,
            after=after,
            files_before=files_before,
            files_after=files_after,
            next_thresholds=_next_thresholds(after, index, policy, now, made),
            identities=made,
        ),
        events=events,
        current=inventory,
        count_change=count_change,
    )


def _involved(
    store: StateStore,
    source: str,
    index: Mapping[str, Indexed],
    current: Mapping[str, Observation],
    now: datetime,
    covered: frozenset[str] | None,
    made: dict[str, tuple[Observation, bytes]],
    reshow: Collection[str] = frozenset(),
) -> set[str]:
    """Lineages that are new or changed, gone (removed or held), due a threshold, or to
    be shown again (`reshow`); after a partial rescan, gone only among the lineages it
    covered. The identities made of the involved ones go into `made`, each beside its
    observation (the commit needs them again)."""
    due = set(store.thresholds_due(source, now)) | set(reshow)
    involved = set()
    for lineage, observation in current.items():
        digest = identity(observation)
        if (known := index.get(lineage)) is None or known.identity != digest:
            involved.add(lineage)
        elif lineage not in due:
            continue
        made[lineage] = (observation, digest)
    involved.update(
        lineage
        for lineage in (index if covered is None else covered & index.keys())
        if lineage not in current
    )
    involved.update(due)
    return involved


def _previous(
    store: StateStore,
    source: str,
    involved: set[str],
    index: Mapping[str, Indexed],
    made: Mapping[str, tuple[Observation, bytes]],
    marks_of: set[str] | None,
) -> SourceSnapshot | None:
    """Last pass's snapshot of the involved lineages. One that is only due a threshold
    (its observation has the identity its row was written with: equal identities,
    equal observations) is shown the observation scanned now in place of its row, which
    is not read: a pass where 5,000 certificates came due reads none of theirs."""
    unchanged = {
        lineage
        for lineage in involved
        if (pair := made.get(lineage)) is not None
        and (known := index.get(lineage)) is not None
        and known.identity == pair[1]
    }
    previous = store.load_snapshot(source, involved - unchanged, marks_of=marks_of)
    if previous is None or not unchanged:
        return previous
    held = {lineage: made[lineage][0] for lineage in sorted(unchanged)}
    return replace(previous, certificates={**previous.certificates, **held})


def _with_the_rest(
    shown: ScanResult,
    previous: SourceSnapshot,
    current: Mapping[str, Observation],
    covered: frozenset[str],
) -> ScanResult:
    """A partial rescan as detect() must see it: the lineages it did not read that came
    due are shown as last pass left them, and the problems of files it did not read
    stand (they are not resolved for being unread)."""
    kept = tuple(
        observation
        for lineage, observation in previous.certificates.items()
        if lineage not in current and lineage not in covered
    )
    problems = tuple(p for p in previous.problems if p.lineage not in covered)
    return replace(
        shown, observations=shown.observations + kept, problems=shown.problems + problems
    )


class Overlay(Mapping[str, Observation]):
    """A source's inventory after a partial rescan: what it read, over what the state
    database holds (loaded only if something asks, such as the endpoint comparison)."""

    def __init__(
        self, store: StateStore, source: str, read: Mapping[str, Observation], gone: set[str]
    ) -> None:
        self._store, self._source, self._read, self._gone = store, source, read, gone
        self._all: dict[str, Observation] | None = None

    def fingerprints(self) -> list[tuple[str, str]]:
        """(lineage, fingerprint) of every certificate, without decoding the database's
        observations (the ARI round keeps most of a carried store by fingerprint)."""
        if self._all is not None:
            return [(lineage, o.fingerprint) for lineage, o in self._all.items()]
        found = dict(self._store.fingerprints_of(self._source))
        found.update((lineage, o.fingerprint) for lineage, o in self._read.items())
        return [(lineage, fp) for lineage, fp in found.items() if lineage not in self._gone]

    def some(self, lineages: Collection[str]) -> dict[str, Observation]:
        """The observations of these lineages (those it has), decoding only them."""
        found = {lineage: self._read[lineage] for lineage in lineages if lineage in self._read}
        rest = [
            lineage for lineage in lineages if lineage not in found and lineage not in self._gone
        ]
        if rest:
            found.update(self._store.inventory_of(self._source, rest))
        return found

    def _whole(self) -> dict[str, Observation]:
        if self._all is None:
            stored = self._store.inventory_of(self._source)
            self._all = {
                lineage: observation
                for lineage, observation in {**stored, **self._read}.items()
                if lineage not in self._gone
            }
        return self._all

    def __getitem__(self, lineage: str) -> Observation:
        if lineage in self._read:  # what the checks after detect() ask for: no load
            return self._read[lineage]
        if lineage in self._gone:
            raise KeyError(lineage)
        return self._whole()[lineage]

    def __iter__(self) -> Iterator[str]:
        return iter(self._whole())

    def __len__(self) -> int:
        return len(self._whole())


def _next_instant(observation: Observation, policy: Policy, now: datetime) -> datetime | None:
    """When time alone next makes detect() say something about this certificate: an
    expiry threshold, or (for a leaf with a renewal policy) renewal_overdue."""
    facts = observation.certificate
    instants = [policy.next_crossing(facts.not_before, facts.not_after, now)]
    if policy.overdue and observation.role == "leaf" and observation.renewal is not None:
        overdue = renewal.overdue_since(observation.renewal, facts, policy.overdue_grace)
        if overdue > now:
            instants.append(overdue - timedelta(seconds=1))
    found = [instant for instant in instants if instant is not None]
    return min(found) if found else None


def _next_thresholds(
    after: SourceSnapshot,
    index: Mapping[str, Indexed],
    policy: Policy,
    now: datetime,
    made: dict[str, tuple[Observation, bytes]],
) -> dict[str, float | None]:
    """The next threshold instant of every lineage detect() saw, where it moved (or the
    row is rewritten anyway). An identity made here joins `made`: the commit's own
    comparison (statedb's write_snapshot) takes it from there, not made again."""
    moved: dict[str, float | None] = {}
    for lineage, observation in after.certificates.items():
        crossing = _next_instant(observation, policy, now)
        instant = None if crossing is None else crossing.timestamp()
        known = index.get(lineage)
        if known is None or known.next_threshold != instant:
            moved[lineage] = instant
            continue
        pair = made.get(lineage)
        if pair is not None and pair[0] is observation:
            digest = pair[1]
        else:
            digest = identity(observation)
            made[lineage] = (observation, digest)
        if known.identity != digest:
            moved[lineage] = instant
    return moved
