"""CRL freshness: a CRL nearing its nextUpdate, a deployed copy older than its CA's. Pure.

OpenVPN and many mTLS servers refuse every client once the CRL they load passes its
nextUpdate (easy-rsa's `gen-crl` defaults to 180 days and is easily forgotten), and a
newly generated CRL helps nobody until it is copied where the server reads it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .. import events as _events
from ..observations import CrlSeen
from .thresholds import Policy, days_remaining

if TYPE_CHECKING:
    from ..events import CrlDeploymentStale, Event

Mark = tuple[str, str, str]
"""(lineage, fingerprint or generation, label): what was reported, kept in the snapshot."""
CRL_MARKS = ("crl:", "crl-stale")
"""How the labels of a CRL's marks begin: kept while the CRL is not read again."""


def unread_crl_marks(before: Iterable[Mark], read: Collection[str] = ()) -> set[Mark]:
    """Last pass's CRL marks of the CRLs not read this pass (their lineages not in
    `read`): detect() keeps marks only for certificates, so these are carried here."""
    return {mark for mark in before if mark[2].startswith(CRL_MARKS) and mark[0] not in read}


def crl_freshness(
    source: str, crls: Sequence[CrlSeen], before: frozenset[Mark], policy: Policy, now: datetime
) -> tuple[set[Mark], list[Event]]:
    """crl_expiring once per CRL and threshold (the most urgent speaks), and
    crl_deployment_stale once per deployed copy and CRL generated."""
    marks: set[Mark] = set()
    events: list[Event] = []
    current = {crl.issuer: crl for crl in crls if crl.role == "current"}
    for crl in crls:
        authority = current.get(crl.issuer)
        if crl.role == "deployed" and authority is not None:
            stale = _deployment(source, crl, authority)
            if stale is not None:
                marks.add(stale[0])
                if stale[0] not in before:
                    events.append(stale[1])
        in_sync = authority is not None and authority.fingerprint == crl.fingerprint
        if crl.next_update is None or (crl.role == "deployed" and in_sync):
            continue  # a copy identical to its authority's CRL is watched through it
        crossed = policy.crossed(crl.this_update, crl.next_update, now)
        keys = [(crl.lineage, crl.fingerprint, f"crl:{label}") for label in crossed]
        marks |= set(keys)
        fresh = [key for key in keys if key not in before]
        if fresh:
            events.append(
                _events.CrlExpiring(
                    store=source,
                    lineage=crl.lineage,
                    path=crl.path,
                    fingerprint=crl.fingerprint,
                    authority=crl.issuer_cn or crl.issuer,
                    next_update=crl.next_update,
                    days_remaining=days_remaining(crl.next_update, now),
                    crl_number=crl.number,
                    threshold=fresh[0][2].removeprefix("crl:"),
                )
            )
    return marks, events


def _deployment(
    source: str, deployed: CrlSeen, current: CrlSeen
) -> tuple[Mark, CrlDeploymentStale] | None:
    """Older by CRL number, or by thisUpdate when either has none (easy-rsa 3.1 writes none)."""
    if current.number is not None and deployed.number is not None:
        stale = deployed.number < current.number
    else:
        stale = deployed.this_update < current.this_update
    if not stale:
        return None
    generation = str(current.number) if current.number is not None else "-"
    mark = (deployed.lineage, f"{generation}@{current.this_update.isoformat()}", "crl-stale")
    return mark, _events.CrlDeploymentStale(
        store=source,
        lineage=deployed.lineage,
        path=deployed.path,
        fingerprint=deployed.fingerprint,
        authority=current.issuer_cn or current.issuer,
        deployed_path=deployed.path,
        deployed_number=deployed.number,
        deployed_this_update=deployed.this_update,
        current_path=current.path,
        current_number=current.number,
        current_this_update=current.this_update,
    )
