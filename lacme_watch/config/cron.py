"""Five-field cron expressions as crontab(5) means them, checked without APScheduler.

The config loader validates `schedule.scan` here; the daemon turns the result into
APScheduler triggers. Two differences from APScheduler 3's own fields are handled:

- day of week: crontab counts 0-7 from Sunday (0 and 7 are both Sunday), APScheduler
  from Monday = 0. Numbers and names are expanded to the days they mean and handed
  over as day names, so `1-5` is Monday to Friday, as in crontab.
- day of month and day of week both restricted (neither `*`): crontab runs when
  EITHER matches, APScheduler when both do. Such a line becomes two field sets, and
  the daemon fires on either (APScheduler's OrTrigger).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


class CronError(ValueError):
    """An expression crontab(5) would not accept; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0
    """The number of the first name: months start at 1, days at 0 (Sunday)."""


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day of week", 0, 7, _DAY_NAMES, 0),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CronFields:
    """One set of APScheduler CronTrigger fields (day_of_week already as day names)."""

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


def parse(expression: str) -> tuple[CronFields, ...]:
    """The trigger field sets (one, or two to OR) for a crontab line's five time fields."""
    texts = expression.lower().split()
    if len(texts) != 5:
        raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(texts)}")
    values = [_values(field, text) for field, text in zip(_FIELDS, texts, strict=True)]
    minute, hour, day, month, weekday = texts
    days = sorted({value % 7 for value in values[4]})  # 7 is Sunday too
    week = "*" if weekday == "*" else ",".join(_DAY_NAMES[value] for value in days)
    if day.startswith("*") or weekday.startswith("*"):  # as cron decides (a leading *)
        return (CronFields(minute=minute, hour=hour, day=day, month=month, day_of_week=week),)
    return (
        CronFields(minute=minute, hour=hour, day=day, month=month, day_of_week="*"),
        CronFields(minute=minute, hour=hour, day="*", month=month, day_of_week=week),
    )


def _values(field: _Field, text: str) -> set[int]:
    """Every value a field's comma-separated items select; an error names the field."""
    found: set[int] = set()
    for item in text.split(","):
        if field.name == "day of month" and item == "last":  # APScheduler's, kept as it was
            continue
        match = _ITEM.match(item)
        if match is None:
            raise CronError(f"{field.name}: cannot read {item!r}")
        span, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step == 0:
            raise CronError(f"{field.name}: a step of 0 in {item!r}")
        if span == "*":
            start, end = field.low, field.high
        else:
            first, _, last = span.partition("-")
            start = _number(field, first)
            end = _number(field, last) if last else (field.high if step_text else start)
        if start > end:
            raise CronError(f"{field.name}: {item!r} runs backwards")
        found.update(range(start, end + 1, step))
    return found


def _number(field: _Field, text: str) -> int:
    if text in field.names:
        return field.names.index(text) + field.first_name
    if not text.isdigit():
        raise CronError(f"{field.name}: {text!r} is not a number or a name")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


__all__ = ["CronError", "CronFields", "parse"]
