"""ISO 8601 as lacme-watch writes it: UTC with a `Z`, whatever the offset it came in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lacme_watch.instants import format_time, parse_time


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 6, 1, tzinfo=UTC), "2026-06-01T00:00:00Z"),
        (datetime(2026, 6, 1, 1, 2, 3, 456789, tzinfo=UTC), "2026-06-01T01:02:03.456789Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
        (datetime(2026, 6, 1, tzinfo=timezone(timedelta(hours=2))), "2026-05-31T22:00:00Z"),
        (datetime(2026, 6, 1, tzinfo=timezone(timedelta(0), "UTC+0")), "2026-06-01T00:00:00Z"),
        (datetime(2026, 6, 1, tzinfo=timezone(timedelta(minutes=-330))), "2026-06-01T05:30:00Z"),
    ],
)
def test_times_are_written_in_utc_with_a_z(moment: datetime, text: str) -> None:
    assert format_time(moment) == text
    assert parse_time(text) == moment


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 6, 1))  # the mistake refused
