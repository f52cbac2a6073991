"""Which expiry thresholds apply to a certificate of a given lifetime, and when each is
crossed: day thresholds only where they fit the lifetime, percent ones for the rest
(so short-lived certificates never alarm at issuance). Pure: no I/O, no clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from . import renewal

EXPIRED = "expired"
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """When a certificate counts as expiring."""

    thresholds_days: tuple[int, ...] = (30, 14, 7, 3, 1)
    thresholds_percent: tuple[float, ...] = (33, 10)
    max_day_fraction: float = 0.5
    """A day threshold applies only to certificates whose lifetime is at least twice as
    long: a 30-day warning would otherwise fire the moment a 47-day certificate is issued."""
    overdue: bool = True
    """renewal_overdue when the owner's renewal point plus the grace has passed."""
    overdue_grace: timedelta = renewal.DEFAULT_GRACE
    ignore_changes: frozenset[str] = frozenset()
    """certificate_changed fields not to report (`changes: {ignore: [...]}`)."""

    def crossed(self, not_before: datetime, not_after: datetime, now: datetime) -> list[str]:
        """Labels of every threshold crossed at `now`, most urgent first."""
        remaining = (not_after - now).total_seconds()
        lifetime = max((not_after - not_before).total_seconds(), 1.0)
        crossed = [label for label, seconds in self._windows(lifetime) if remaining <= seconds]
        return [EXPIRED, *crossed] if remaining <= 0 else crossed

    def next_crossing(
        self, not_before: datetime, not_after: datetime, now: datetime
    ) -> datetime | None:
        """The first instant after `now` at which another threshold (or expiry) is
        crossed, a second early; None once every one is crossed."""
        lifetime = max((not_after - not_before).total_seconds(), 1.0)
        for before in self._offsets(lifetime):  # the earliest instant first
            instant = not_after - before
            if instant > now:
                return instant - _SECOND
        return None

    def _offsets(self, lifetime: float) -> tuple[timedelta, ...]:
        """How long before expiry each window opens, expiry itself (0) included, longest
        first: their instants in time order (remembered like _windows)."""
        known = _remembered(_OFFSETS, self)
        found = known.get(lifetime)
        if found is None:
            offsets = {timedelta(seconds=s) for _, s in self._windows(lifetime)} | {timedelta(0)}
            found = known[lifetime] = tuple(sorted(offsets, reverse=True))
        return found

    def _windows(self, lifetime: float) -> tuple[tuple[str, float], ...]:
        """(label, seconds before expiry) for the thresholds that suit this lifetime
        (remembered per lifetime: a store's certificates mostly share one)."""
        known = _remembered(_WINDOWS, self)
        found = known.get(lifetime)
        if found is None:
            found = known[lifetime] = self._compute_windows(lifetime)
        return found

    def _compute_windows(self, lifetime: float) -> tuple[tuple[str, float], ...]:
        windows = [
            (f"{days}d", days * DAY.total_seconds())
            for days in self.thresholds_days
            if days * DAY.total_seconds() <= lifetime * self.max_day_fraction
        ]
        # Percent thresholds cover what the day thresholds cannot: when the longest day
        # threshold applies to this lifetime, a percent window longer than it is dropped
        # (33% of a 25-year root is 8 years: not "expiring"); that day threshold warns.
        longest = max(self.thresholds_days, default=0) * DAY.total_seconds()
        covered = 0 < longest <= lifetime * self.max_day_fraction
        windows += [
            (f"{_number(percent)}%", lifetime * percent / 100)
            for percent in self.thresholds_percent
            if not covered or lifetime * percent / 100 <= longest
        ]
        return tuple(sorted(windows, key=lambda window: window[1]))


_Found = TypeVar("_Found")
_WINDOWS: dict[int, tuple[Policy, dict[float, tuple[tuple[str, float], ...]]]] = {}
_OFFSETS: dict[int, tuple[Policy, dict[float, tuple[timedelta, ...]]]] = {}
_KEPT = 4096
"""Lifetimes remembered per policy (and policies): beyond, the table starts anew."""


def _remembered(
    table: dict[int, tuple[Policy, dict[float, _Found]]], policy: Policy
) -> dict[float, _Found]:
    """A policy's own table of what it worked out, by lifetime. Found by the policy's
    identity, not its value: hashing a Policy (every field, a frozenset among them) cost
    as much as the rest of crossed() for each of a pass's thousands of certificates.
    Kept beside the policy itself, so an id reused by another object cannot mislead."""
    entry = table.get(id(policy))
    if entry is None or entry[0] is not policy or len(entry[1]) > _KEPT:
        if len(table) > 64:
            table.clear()
        entry = table[id(policy)] = (policy, {})
    return entry[1]


_SECOND = timedelta(seconds=1)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def days_remaining(expires_at: datetime, now: datetime) -> int:
    """floor((expires_at - now) / 1 day): 0 on the last day, negative once expired."""
    return math.floor((expires_at - now) / DAY)
