"""The CA's window as the renewal policy: `renewal_overdue` with `policy: ari`.

When the CA has answered for a certificate, its window's end is when the certificate
should have been renewed, whatever its client's own schedule says (RFC 9773 §4.2:
clients renew inside the window). Detection sees it as a `RenewAt` policy on the
observation, so `status` and metrics show it like any other policy; the ARI round
announces the overdue itself (in the pass that learns a closed window, and once per
window: a new window re-arms it), and detect() leaves RenewAt policies to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import events as _events
from ..detection.renewal import RenewAt
from ..events.cloudevents import Envelope
from ..observations import ScanResult

if TYPE_CHECKING:
    from .window import AriRecord

ARI_POLICY = "ari"


def with_windows(scan: ScanResult, windows: Mapping[str, AriRecord]) -> ScanResult:
    """Leaves whose CA gave a window get it as their renewal policy."""
    if not windows:
        return scan
    observations = tuple(
        replace(o, renewal=RenewAt(at=record.window.end, origin=ARI_POLICY))
        if o.role == "leaf"
        and (record := windows.get(o.fingerprint)) is not None
        and record.window is not None
        else o
        for o in scan.observations
    )
    return replace(scan, observations=observations)


def not_said_yet(found: Sequence[Envelope], said: Sequence[Envelope]) -> list[Envelope]:
    """The ARI round's events, less a renewal_overdue for a certificate that detection
    reported overdue this pass under its client's policy (its window not known yet)."""
    overdue = {
        (e.event.store, e.event.lineage, e.event.fingerprint)
        for e in said
        if isinstance(e.event, _events.RenewalOverdue)
    }
    return [
        e
        for e in found
        if not (
            isinstance(e.event, _events.RenewalOverdue)
            and (e.event.store, e.event.lineage, e.event.fingerprint) in overdue
        )
    ]
