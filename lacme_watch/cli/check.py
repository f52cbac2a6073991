"""`check`: one line in the monitoring-plugins convention (Nagios, Icinga, Sensu).

`LACME-WATCH STATE - text | perfdata`, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
States rank as Icinga ranks them: CRITICAL over UNKNOWN over WARNING over OK.
Unreadable inputs, usage and configuration errors are UNKNOWN: lacme-watch cannot
say, which is not the same as bad.

By default the limits follow the events' rule for short lifetimes: 14 days warns only
certificates that live at least 28 days, 7 days is critical only for those of 14 days
and more; shorter ones (Let's Encrypt's 6-day, lacme's 1-day CA leaves) are judged
by the largest and smallest of `expiry.thresholds_percent` (33% and 10%). An explicit
`--warning 14d` means 14 days for every certificate; `33%` is of each one's lifetime.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..detection.thresholds import Policy, days_remaining
from ..observations import CertificateFacts
from ..run.passes import PassReport
from ..wording import plural, served_at

_LIMIT = re.compile(r"^(\d+(?:\.\d+)?)\s*(d|%)?$")
DAY_SECONDS = 86400.0
UNKNOWN = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """Days before expiry, or a percentage of the lifetime left; `fallback_percent`
    (the default limits only) serves certificates too short for the days."""

    amount: float
    unit: str
    fallback_percent: float | None = None
    day_fraction: float = 0.5

    def window(self, facts: CertificateFacts) -> float:
        """Seconds before expiry at which this limit is reached for this certificate."""
        lifetime = max(facts.lifetime_seconds, 1.0)
        if self.unit == "%":
            return lifetime * self.amount / 100
        days = self.amount * DAY_SECONDS
        if self.fallback_percent is not None and days > lifetime * self.day_fraction:
            return lifetime * self.fallback_percent / 100
        return days

    def spell(self) -> str:
        number = f"{self.amount:g}"
        if self.unit == "%":
            return f"{number}% of their lifetime"
        if self.fallback_percent is not None:
            return f"{number} days (shorter lifetimes: {self.fallback_percent:g}%)"
        return f"{number} days"


def limit(text: str) -> Limit:
    """`14d` or `14` (days) or `33%` (of the certificate's lifetime)."""
    match = _LIMIT.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected days like 14d or a percentage like 33%, got {text!r}"
        )
    return Limit(amount=float(match.group(1)), unit=match.group(2) or "d")


def defaults(policy: Policy) -> tuple[Limit, Limit]:
    """The lifetime-aware default warning (14d) and critical (7d) limits."""
    percents = sorted(policy.thresholds_percent) or [10.0, 33.0]
    fraction = policy.max_day_fraction
    return (
        Limit(amount=14, unit="d", fallback_percent=percents[-1], day_fraction=fraction),
        Limit(amount=7, unit="d", fallback_percent=percents[0], day_fraction=fraction),
    )


def _within(limit: Limit, facts: CertificateFacts, now: datetime) -> bool:
    return (facts.not_after - now).total_seconds() <= limit.window(facts)


def status_line(
    report: PassReport,
    warning: Limit,
    critical: Limit,
    now: datetime,
    *,
    late: Sequence[str] = (),
) -> tuple[int, str]:
    """The exit code and the one line for a live inventory.

    `late`: certificates left unrenewed in an open ARI window past `--ari-grace`.
    """
    critical_list: list[str] = []
    warning_list: list[str] = []
    expired = 0
    for _, observation in sorted(report.inventory, key=lambda item: item[1].certificate.not_after):
        facts = observation.certificate
        where = served_at(observation.path)
        label = f"{observation.domain}{where} ({days_remaining(facts.not_after, now)}d)"
        if facts.not_after <= now:
            expired += 1
            critical_list.append(label)
        elif _within(critical, facts, now):
            critical_list.append(label)
        elif _within(warning, facts, now):
            warning_list.append(label)
    problems = [f"{p.path}: {p.reason}" for _, p in report.problems]
    if critical_list:
        state, code = "CRITICAL", 2
        verb = "expires" if len(critical_list) == 1 else "expire"
        text = f"{plural(len(critical_list), 'certificate')} expired or {verb} within"
        text += f" {critical.spell()}: " + ", ".join(critical_list)
    elif problems:
        state, code = "UNKNOWN", UNKNOWN
        text = f"{plural(len(problems), 'input')} unreadable: " + ", ".join(problems)
    elif warning_list:
        state, code = "WARNING", 1
        verb = "expires" if len(warning_list) == 1 else "expire"
        text = f"{plural(len(warning_list), 'certificate')} {verb} within {warning.spell()}: "
        text += ", ".join(warning_list)
    elif late:
        state, code = "WARNING", 1
        text = f"{plural(len(late), 'certificate')} not renewed in the CA's renewal window: "
        text += ", ".join(late)
    else:
        state, code = "OK", 0
        text = f"{plural(report.certificates, 'certificate')}, none expire within {warning.spell()}"
    if problems and state != "UNKNOWN":
        text += f"; {plural(len(problems), 'input')} unreadable"
    if late and "renewal window:" not in text:
        text += f"; {plural(len(late), 'certificate')} not renewed in the CA's renewal window"
    expiring = len(warning_list) + len(critical_list) - expired
    perfdata = (
        f"certificates={report.certificates};;; expiring={expiring};;;"
        f" expired={expired};;; unreadable={len(problems)};;;"
    )
    if late:
        perfdata += f" renewal_window_late={len(late)};;;"
    return code, f"LACME-WATCH {state} - {text} | {perfdata}"


def unknown_line(message: str) -> str:
    """The line for a usage or configuration error: UNKNOWN, as the plugins convention says."""
    return f"LACME-WATCH UNKNOWN - {message}"
