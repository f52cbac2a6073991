"""Instants and durations as text: ISO 8601 in UTC, the one way lacme-watch writes and
reads a time (events on the wire, observations in the state database, source metadata),
and durations as the configuration spells them (`90s`, `15m`, `12h`, `7d`, `2w`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=36500)
"""100 years: longer is a typo, and would overflow date arithmetic later."""


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as CloudEvents producers usually write it."""
    if moment.tzinfo is UTC:  # nearly always (cryptography's and parse_time's): no conversion
        return moment.isoformat()[:-6] + "Z"  # a UTC isoformat() ends in +00:00
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time in lacme-watch is aware UTC")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 instant; naive input is taken as UTC.

    Raises ValueError for text that is not one, or names an instant Python cannot hold
    in UTC (0001-01-01T00:00+01:00 is in year 0).
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range once converted to UTC") from None


def parse_duration(text: str) -> timedelta | None:
    """`90s`, `15m`, `12h`, `7d`, `2w`; None when the text is not a duration (or > 100 years)."""
    match = _DURATION.match(text)
    if match is None:
        return None
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        return None
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """The shortest exact spelling parse_duration reads back: `15m`, `36h`, `90s`."""
    seconds = duration.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


__all__ = ["MAX_DURATION", "format_duration", "format_time", "parse_duration", "parse_time"]
