"""5-field cron expressions, validated without a scheduler: the configuration checks
`schedule.scan` here, and the daemon turns the fields into its trigger.

The fields keep APScheduler 3's vocabulary (the daemon passes them on as they are):
day_of_week counts from Monday = 0, and day names (mon-fri) read the same in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0
    """The number the first of `names` stands for."""


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day_of_week", 0, 6, _DAYS, 0),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CronFields:
    """One valid expression, field by field, as written."""

    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str

    def as_dict(self) -> dict[str, str]:
        """Keyword arguments for APScheduler's CronTrigger."""
        return {
            "minute": self.minute,
            "hour": self.hour,
            "day": self.day,
            "month": self.month,
            "day_of_week": self.day_of_week,
        }


def parse(expression: str) -> CronFields:
    """The five fields of `expression`; ValueError says which one is wrong and why."""
    parts = expression.split()
    if len(parts) != len(_FIELDS):
        raise ValueError(f"expected 5 fields, got {len(parts)}")
    for spec, text in zip(_FIELDS, parts, strict=True):
        for item in text.lower().split(","):
            _check(spec, item)
    minute, hour, day, month, day_of_week = parts
    return CronFields(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week)


def _check(spec: _Field, item: str) -> None:
    if spec.name == "day" and item == "last":
        return
    match = _ITEM.match(item)
    if match is None:
        raise ValueError(f"{spec.name}: cannot read {item!r}")
    if match["step"] is not None and int(match["step"]) == 0:
        raise ValueError(f"{spec.name}: a step of 0 in {item!r}")
    if match["range"] == "*":
        return
    low, _, high = match["range"].partition("-")
    first = _value(spec, low)
    if high and _value(spec, high) < first:
        raise ValueError(f"{spec.name}: {item!r} runs backwards")


def _value(spec: _Field, text: str) -> int:
    if text in spec.names:
        return spec.names.index(text) + spec.first_name
    if not text.isdigit():
        raise ValueError(f"{spec.name}: {text!r} is not a number or a name")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise ValueError(f"{spec.name}: {value} is outside {spec.low}-{spec.high}")
    return value


__all__ = ["CronFields", "parse"]
