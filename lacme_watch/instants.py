"""Instants as text: ISO 8601 in UTC, the one way lacme-watch writes and reads a time
(events on the wire, observations in the state database, source metadata)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as CloudEvents producers usually write it."""
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


__all__ = ["format_time", "parse_time"]
