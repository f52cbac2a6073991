"""Issuance history against Let's Encrypt's rate limits. Pure: no I/O, no clock.

The limits and their names are those Let's Encrypt publishes (letsencrypt.org/docs/rate-limits).

Three rules, each a limit per window, all configurable:
- `registered_domain`: new certificates per registered domain (50 per 7 days). A
  certificate whose exact set of names was issued before is a renewal and exempt.
- `exact_set`: certificates per exact set of identifiers (5 per 7 days), renewals too.
- `failed_authorizations`: failed validations per identifier (5 per hour).
A warning fires when a count reaches `warn_at` of its limit, once per window.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from .. import events as _events
from ..observations import Issuance

if TYPE_CHECKING:
    from pathlib import Path

    from publicsuffixlist import PublicSuffixList

    from ..events import RateLimitWarning

RULE_NAMES = ("registered_domain", "exact_set", "failed_authorizations")


@dataclass(frozen=True, slots=True)
class Rule:
    """At most `limit` issuances in any `window`."""

    limit: int
    window: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimits:
    """The configured rules; the defaults are Let's Encrypt's published limits."""

    enabled: bool = True
    warn_at: float = 0.8
    rules: Mapping[str, Rule] = field(
        default_factory=lambda: {
            "registered_domain": Rule(50, timedelta(days=7)),
            "exact_set": Rule(5, timedelta(days=7)),
            "failed_authorizations": Rule(5, timedelta(hours=1)),
        }
    )

    @property
    def longest_window(self) -> timedelta:
        return max((rule.window for rule in self.rules.values()), default=timedelta(0))


@cache
def _suffixes(cache_dir: Path | None) -> PublicSuffixList:
    """The list bundled with publicsuffixlist (never fetched), loaded on first use only:
    a pass with no issuance to count never reads it."""
    from . import suffixlist

    return suffixlist.load(cache_dir)


def registered_domain(name: str, cache_dir: Path | None = None) -> str:
    """The key Let's Encrypt counts a name under: eTLD+1 from the Public Suffix List
    (private section included, as Boulder does); an IPv4 address itself; an IPv6 /64.
    `cache_dir` keeps the list's compiled copy (state_dir)."""
    cleaned = name.strip().lower().removeprefix("*.").rstrip(".")
    try:
        address = ipaddress.ip_address(cleaned)
    except ValueError:
        return _suffixes(cache_dir).privatesuffix(cleaned) or cleaned
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


SAME_ISSUANCE = timedelta(hours=2)
"""How close a tracker's record must be to a certificate of the same names to be that
certificate: lacme's rate_limits.json stamps the client's clock, a certificate its
notBefore, which Let's Encrypt backdates by an hour."""


def merge(issuances: Iterable[Issuance]) -> list[Issuance]:
    """Oldest first, each issuance once. Certificates are told apart by fingerprint, so
    a loop re-issuing the same names every minute counts every time; a tracker record
    is dropped when a certificate of the same names stands within SAME_ISSUANCE."""
    by_key = {issuance.key: issuance for issuance in issuances}
    certificates = [i for i in by_key.values() if i.certificate]
    used: set[str] = set()
    kept = list(certificates)
    for record in (i for i in by_key.values() if not i.certificate):
        names = frozenset(name.lower() for name in record.names)
        twin = next(
            (
                c
                for c in certificates
                if c.key not in used
                and frozenset(name.lower() for name in c.names) == names
                and abs(c.issued_at - record.issued_at) < SAME_ISSUANCE
            ),
            None,
        )
        if twin is None:
            kept.append(record)
        else:
            used.add(twin.key)
    return sorted(kept, key=lambda issuance: (issuance.issued_at, issuance.key))


@dataclass(frozen=True, slots=True)
class Warning:
    """A rule's count nearing its limit for one key (a registered domain or name set)."""

    rule: str
    key: str
    count: int
    limit: int
    window: timedelta

    def event(self, now: datetime) -> RateLimitWarning:
        return _events.RateLimitWarning(
            registered_domain=self.key,
            current_count=self.count,
            limit=self.limit,
            window_hours=int(self.window.total_seconds() // 3600),
            rule=self.rule,
            window_start=now - self.window,
        )


def evaluate(
    issuances: Iterable[Issuance],
    failures: Sequence[tuple[str, datetime]],
    limits: RateLimits,
    now: datetime,
    warned: Mapping[tuple[str, str], datetime],
    cache_dir: Path | None = None,
) -> list[Warning]:
    """Warnings due now: counts at or past warn_at of a limit, not warned this window.

    `failures` are (identifier, when) of failed validations; `warned` maps
    (rule, key) to when it was last warned about; `cache_dir` is where the Public
    Suffix List's compiled copy is kept (state_dir).
    """
    if not limits.enabled:
        return []
    history = merge(issuances)
    counts: dict[tuple[str, str], int] = {}
    seen_sets: set[frozenset[str]] = set()
    new_sets: list[frozenset[str]] = []  # counted per registered domain, renewals exempt
    for issuance in history:
        names = frozenset(name.lower() for name in issuance.names)
        renewal = names in seen_sets
        seen_sets.add(names)
        for rule_name in ("registered_domain", "exact_set"):
            rule = limits.rules.get(rule_name)
            if rule is None or issuance.issued_at <= now - rule.window or issuance.issued_at > now:
                continue
            if rule_name == "exact_set":
                key = ",".join(sorted(names))
                counts[(rule_name, key)] = counts.get((rule_name, key), 0) + 1
            elif not renewal:
                new_sets.append(names)
    per_domain = limits.rules.get("registered_domain")
    # A certificate counts once under each registered domain it names, so no domain's
    # count can pass the number of new certificates: below the warning point, their
    # domains need not be known (the Public Suffix List is ~35 ms to compile on a first
    # pass, ~13 ms to import and load compiled on a later one).
    if per_domain is not None and len(new_sets) >= limits.warn_at * per_domain.limit:
        for names in new_sets:
            for key in {registered_domain(name, cache_dir) for name in names}:
                counted = ("registered_domain", key)
                counts[counted] = counts.get(counted, 0) + 1
    failed = limits.rules.get("failed_authorizations")
    if failed is not None:
        for identifier, when in failures:
            if now - failed.window < when <= now:
                counted = ("failed_authorizations", identifier.lower())
                counts[counted] = counts.get(counted, 0) + 1
    warnings = []
    for (rule_name, key), count in sorted(counts.items()):
        rule = limits.rules[rule_name]
        last = warned.get((rule_name, key))
        if count >= limits.warn_at * rule.limit and (last is None or now - last >= rule.window):
            warnings.append(Warning(rule_name, key, count, rule.limit, rule.window))
    return warnings
