"""A crontab line means what crontab(5) says, checked against a real calendar.

November 2026: Sunday the 1st, 8th, 15th, 22nd, 29th; Monday the 2nd ... Saturday the 7th.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lacme_watch.config import cron
from lacme_watch.run.daemon import cron_trigger


def fire_days(expression: str, count: int = 7) -> list[str]:
    """The next `count` fire times from Sunday 2026-11-01 00:00 UTC, as 'Nov 01 Sun 09:00'."""
    trigger = cron_trigger(expression, "UTC")
    moment = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)
    previous = None
    found = []
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, moment)
        assert fire is not None
        found.append(fire.strftime("%b %d %a %H:%M"))
        previous, moment = fire, fire + timedelta(seconds=1)
    return found


def test_weekdays_are_monday_to_friday_as_in_crontab() -> None:
    assert fire_days("0 9 * * 1-5", 6) == [
        "Nov 02 Mon 09:00",
        "Nov 03 Tue 09:00",
        "Nov 04 Wed 09:00",
        "Nov 05 Thu 09:00",
        "Nov 06 Fri 09:00",
        "Nov 09 Mon 09:00",
    ]


@pytest.mark.parametrize("sunday", ["0", "7", "sun"])
def test_zero_and_seven_are_sunday(sunday: str) -> None:
    assert fire_days(f"30 6 * * {sunday}", 2) == ["Nov 01 Sun 06:30", "Nov 08 Sun 06:30"]


def test_a_step_over_the_week_counts_from_sunday() -> None:
    assert fire_days("0 0 * * */3", 4) == [
        "Nov 01 Sun 00:00",
        "Nov 04 Wed 00:00",
        "Nov 07 Sat 00:00",
        "Nov 08 Sun 00:00",
    ]


def test_a_range_through_the_weekend_and_names() -> None:
    assert fire_days("0 12 * * 5-7", 3) == [
        "Nov 01 Sun 12:00",
        "Nov 06 Fri 12:00",
        "Nov 07 Sat 12:00",
    ]
    assert fire_days("0 12 * * sat,mon", 3) == [
        "Nov 02 Mon 12:00",
        "Nov 07 Sat 12:00",
        "Nov 09 Mon 12:00",
    ]


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    """crontab(5): 'the command will be run when either field matches'."""
    assert fire_days("0 8 13 * 5", 4) == [
        "Nov 06 Fri 08:00",
        "Nov 13 Fri 08:00",
        "Nov 20 Fri 08:00",
        "Nov 27 Fri 08:00",
    ]
    assert fire_days("0 8 3 * 1", 3) == ["Nov 02 Mon 08:00", "Nov 03 Tue 08:00", "Nov 09 Mon 08:00"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute: 61 is outside 0-59"),
        ("0 9 * * 8", "day of week: 8 is outside 0-7"),
        ("0 9 * * 5-1", "day of week: '5-1' runs backwards"),
        ("0 9 * * mon-", "day of week: cannot read"),
        ("*/0 * * * *", "minute: a step of 0"),
        ("0 9 * *", "expected 5 fields"),
        ("0 9 L * *", "day of month: 'l' is not a number"),
    ],
)
def test_what_crontab_would_refuse_is_an_error(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message):
        cron.parse(expression)
