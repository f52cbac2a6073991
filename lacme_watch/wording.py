"""How numbers and durations read in human output: `1 day left`, `2 problems`, `7d`."""

from __future__ import annotations

from datetime import timedelta

_IRREGULAR = {"authority": "authorities", "delivery": "deliveries"}
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def plural(count: int, noun: str) -> str:
    """`1 day`, `2 days`, `0 problems`, `2 authorities`."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {_IRREGULAR.get(noun, noun + 's')}"


def duration(span: timedelta) -> str:
    """A duration for a person: `7d`, `1h30m`, `1m30s`, `0s` (never `7 days, 0:00:00`).
    instants.format_duration is the other direction's twin: one unit, read back exactly."""
    seconds = round(abs(span.total_seconds()))
    parts = []
    for unit, size in _UNITS:
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    text = "".join(parts) or "0s"
    return f"-{text}" if span < timedelta(0) else text


def served_at(path: str | None) -> str:
    """` at 127.0.0.1:443` for what an endpoint served (its path is `tls://host:port`), so
    the same certificate seen at two endpoints, or on disk and served, reads apart."""
    if path and path.startswith("tls://"):
        return f" at {path.removeprefix('tls://')}"
    return ""
