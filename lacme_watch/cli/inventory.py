"""What `status` shows: one typed row per certificate, CRL, problem and renewal agent,
each with its JSON form and its cells for the one renderer in views.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..detection import renewal
from ..detection.thresholds import EXPIRED, Policy, days_remaining
from ..events.cloudevents import format_time
from ..observations import CrlSeen, Observation, Problem
from ..wording import served_at
from .views import Cell

# -- status -----------------------------------------------------------------------

STATUS_COLUMNS = ("name", "store", "names", "not after", "days left", "state")
WINDOW_COLUMN = "renewal window (ARI)"
"""Added to STATUS_COLUMNS when a CA answered for any certificate shown."""
_STATE_STYLE = {"ok": "green", "expiring": "yellow", "overdue": "red", "expired": "bold red"}


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRow:
    """One certificate in `status`."""

    name: str
    store: str
    lineage: str
    role: str
    names: tuple[str, ...]
    not_after: datetime
    days_left: int
    state: str
    threshold: str | None
    path: str
    fingerprint: str
    findings: tuple[str, ...] = ()
    """What is wrong besides the date: `chain incomplete`, `revoked`, `not www.example.com`."""
    renew_after: datetime | None = None
    """When the owner's renewal policy renews it (leaves with a policy)."""
    renewal_policy: str | None = None
    renewal_window: Mapping[str, object] | None = None
    """The CA's ARI window (see ari/view.py), None when it was never asked or answered."""

    @classmethod
    def of(
        cls,
        source: str,
        observation: Observation,
        policy: Policy,
        now: datetime,
        findings: Sequence[str] = (),
        renewal_window: Mapping[str, object] | None = None,
    ) -> CertificateRow:
        facts = observation.certificate
        crossed = policy.crossed(facts.not_before, facts.not_after, now)
        owner = observation.renewal if observation.role == "leaf" else None
        overdue = bool(
            owner
            and policy.overdue
            and now >= renewal.overdue_since(owner, facts, policy.overdue_grace)
        )
        state = (
            "expired"
            if crossed[:1] == [EXPIRED]
            else "overdue"
            if overdue
            else "expiring"
            if crossed
            else "ok"
        )
        return cls(
            name=observation.domain,
            store=source,
            lineage=observation.lineage,
            role=observation.role,
            names=tuple(observation.domains),
            not_after=facts.not_after,
            days_left=days_remaining(facts.not_after, now),
            state=state,
            threshold=crossed[0] if crossed else None,
            path=observation.path,
            fingerprint=facts.fingerprint,
            findings=tuple(findings),
            renew_after=renewal.renew_after(owner, facts) if owner else None,
            renewal_policy=owner.describe() if owner else None,
            renewal_window=renewal_window,
        )

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "store": self.store,
            "lineage": self.lineage,
            "role": self.role,
            "names": list(self.names),
            "not_after": format_time(self.not_after),
            "days_left": self.days_left,
            "state": self.state,
            "threshold": self.threshold,
            "renew_after": format_time(self.renew_after) if self.renew_after else None,
            "renewal_policy": self.renewal_policy,
            "path": self.path,
            "fingerprint": self.fingerprint,
            "findings": list(self.findings),
            "renewal_window": dict(self.renewal_window) if self.renewal_window else None,
        }

    def cells(self, *, window: bool = False) -> list[Cell]:
        """The row's cells; with `window`, the ARI window's too (WINDOW_COLUMN)."""
        return self._cells() + ([_window_cell(self.renewal_window)] if window else [])

    def _cells(self) -> list[Cell]:
        name = self.name if self.role == "leaf" else f"{self.name} ({self.role})"
        name += served_at(self.path)
        state = f"{self.state} ({self.threshold})" if self.state == "expiring" else self.state
        if self.state == "overdue" and self.renew_after:
            state += f" (due {format_time(self.renew_after)[:10]})"
        state += "".join(f"; {finding}" for finding in self.findings)
        # Fine by date but chained, served or revoked wrongly is no green.
        style = "yellow" if self.findings and self.state == "ok" else _STATE_STYLE[self.state]
        return [
            Cell(name),
            Cell(self.store),
            Cell(" ".join(self.names)),
            Cell(format_time(self.not_after)[:10]),
            Cell(str(self.days_left)),
            Cell(state, style),
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlRow:
    """One CRL file in `status`: when it lapses, and whether that is soon."""

    authority: str
    store: str
    path: str
    role: str
    number: int | None
    this_update: datetime
    next_update: datetime | None
    days_left: int | None
    state: str
    threshold: str | None
    fingerprint: str

    @classmethod
    def of(cls, source: str, crl: CrlSeen, policy: Policy, now: datetime) -> CrlRow:
        crossed = policy.crossed(crl.this_update, crl.next_update, now) if crl.next_update else []
        state = "expired" if crossed[:1] == [EXPIRED] else "expiring" if crossed else "ok"
        return cls(
            authority=crl.issuer_cn or crl.issuer,
            store=source,
            path=crl.path,
            role=crl.role,
            number=crl.number,
            this_update=crl.this_update,
            next_update=crl.next_update,
            days_left=days_remaining(crl.next_update, now) if crl.next_update else None,
            state=state,
            threshold=crossed[0] if state == "expiring" else None,
            fingerprint=crl.fingerprint,
        )

    def as_json(self) -> dict[str, object]:
        return {
            "authority": self.authority,
            "store": self.store,
            "path": self.path,
            "role": self.role,
            "number": self.number,
            "this_update": format_time(self.this_update),
            "next_update": format_time(self.next_update) if self.next_update else None,
            "days_left": self.days_left,
            "state": self.state,
            "threshold": self.threshold,
            "fingerprint": self.fingerprint,
        }

    def cells(self) -> list[Cell]:
        number = "-" if self.number is None else str(self.number)
        state = f"{self.state} ({self.threshold})" if self.threshold else self.state
        return [
            Cell(f"{self.authority} (crl {number})"),
            Cell(self.store),
            Cell(self.path),
            Cell(format_time(self.next_update)[:10] if self.next_update else ""),
            Cell("" if self.days_left is None else str(self.days_left)),
            Cell(state, _STATE_STYLE[self.state]),
        ]


def _window_cell(window: Mapping[str, object] | None) -> Cell:
    if window is None:
        return Cell("")
    if window["start"] is None:
        return Cell(str(window["error"]), "bold red")
    text = f"{str(window['start'])[:16]} → {str(window['end'])[:16]}".replace("T", " ")
    style = {"open": "yellow", "passed": "bold red"}.get(str(window["state"]))
    return Cell(f"{text} ({window['state']})" if style else text, style)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProblemRow:
    """One input `status` could not use."""

    store: str
    path: str
    reason: str
    detail: str

    @classmethod
    def of(cls, source: str, problem: Problem) -> ProblemRow:
        return cls(store=source, path=problem.path, reason=problem.reason, detail=problem.detail)

    def as_json(self) -> dict[str, object]:
        return {
            "store": self.store,
            "path": self.path,
            "reason": self.reason,
            "detail": self.detail,
        }

    def cells(self) -> list[Cell]:
        return [
            Cell(self.path),
            Cell(self.store),
            Cell(""),
            Cell(""),
            Cell(""),
            Cell(f"unreadable: {self.reason}", "bold red"),
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRow:
    """A store's renewal agent in `status`: its last run seen, and whether that is too long ago."""

    store: str
    last_run: datetime
    stale: bool

    def as_json(self) -> dict[str, object]:
        return {"store": self.store, "last_run": format_time(self.last_run), "stale": self.stale}

    def line(self) -> str:
        stale = ", stale" if self.stale else ""
        return f"renewal agent of {self.store}: last run {format_time(self.last_run)}{stale}"
