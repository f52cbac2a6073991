"""`check`: one line in the monitoring-plugins convention (Nagios, Icinga, Sensu).

`LACME-WATCH STATE - text | perfdata`, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
States rank as Icinga ranks them: CRITICAL over UNKNOWN over WARNING over OK.
Unreadable inputs are UNKNOWN: lacme-watch cannot say, which is not the same as bad.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime

from .detect import days_remaining
from .observations import CertificateFacts
from .passes import PassReport

Limit = tuple[float, str]
_LIMIT = re.compile(r"^(\d+(?:\.\d+)?)\s*(d|%)?$")


def limit(text: str) -> Limit:
    """`14d` or `14` (days) or `33%` (of the certificate's lifetime)."""
    match = _LIMIT.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected days like 14d or a percentage like 33%, got {text!r}"
        )
    return float(match.group(1)), match.group(2) or "d"


def _within(limit: Limit, facts: CertificateFacts, now: datetime) -> bool:
    amount, unit = limit
    remaining = (facts.not_after - now).total_seconds()
    window = amount * 86400 if unit == "d" else facts.lifetime_seconds * amount / 100
    return remaining <= window


def _spell(limit: Limit) -> str:
    amount, unit = limit
    number = f"{amount:g}"
    return f"{number} days" if unit == "d" else f"{number}% of their lifetime"


def status_line(
    report: PassReport, warning: Limit, critical: Limit, now: datetime
) -> tuple[int, str]:
    """The exit code and the one line for a live inventory."""
    critical_list: list[str] = []
    warning_list: list[str] = []
    expired = 0
    for _, observation in sorted(report.inventory, key=lambda item: item[1].certificate.not_after):
        facts = observation.certificate
        label = f"{observation.domain} ({days_remaining(facts.not_after, now)}d)"
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
        text = f"{len(critical_list)} certificate(s) expired or expire within {_spell(critical)}: "
        text += ", ".join(critical_list)
    elif problems:
        state, code = "UNKNOWN", 3
        text = f"{len(problems)} input(s) unreadable: " + ", ".join(problems)
    elif warning_list:
        state, code = "WARNING", 1
        text = f"{len(warning_list)} certificate(s) expire within {_spell(warning)}: "
        text += ", ".join(warning_list)
    else:
        state, code = "OK", 0
        text = f"{report.certificates} certificates, none expire within {_spell(warning)}"
    if problems and state != "UNKNOWN":
        text += f"; {len(problems)} input(s) unreadable"
    expiring = len(warning_list) + len(critical_list) - expired
    perfdata = (
        f"certificates={report.certificates};;; expiring={expiring};;;"
        f" expired={expired};;; unreadable={len(problems)};;;"
    )
    return code, f"LACME-WATCH {state} - {text} | {perfdata}"
