"""next_crossing() walks precomputed offsets instead of listing every instant: the same
instant (to the microsecond) as the plain way, for any policy, lifetime and moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from lacme_watch.detection.thresholds import Policy

START = datetime(2020, 1, 1, tzinfo=UTC)


def plain_next_crossing(
    policy: Policy, not_before: datetime, not_after: datetime, now: datetime
) -> datetime | None:
    """As next_crossing() was written first: every instant listed, the first after now."""
    lifetime = max((not_after - not_before).total_seconds(), 1.0)
    instants = [not_after - timedelta(seconds=s) for _, s in policy._windows(lifetime)]
    later = [instant for instant in (*instants, not_after) if instant > now]
    return min(later) - timedelta(seconds=1) if later else None


_POLICIES = st.builds(
    Policy,
    thresholds_days=st.lists(st.integers(0, 400), max_size=6).map(tuple),
    thresholds_percent=st.lists(
        st.floats(0.5, 99, allow_nan=False, allow_infinity=False), max_size=3
    ).map(tuple),
    max_day_fraction=st.floats(0.1, 1.0),
)
_SECONDS = st.integers(-10 * 86400, 4000 * 86400)


@settings(max_examples=400, deadline=None)
@given(
    policy=_POLICIES,
    start=st.integers(0, 5 * 365 * 86400),
    lifetime=st.one_of(st.integers(-3600, 3600), st.integers(0, 3650 * 86400)),
    micro=st.integers(0, 999_999),
    now=_SECONDS,
)
def test_next_crossing_is_the_first_instant_after_now(
    policy: Policy, start: int, lifetime: int, micro: int, now: int
) -> None:
    not_before = START + timedelta(seconds=start, microseconds=micro)
    not_after = not_before + timedelta(seconds=lifetime)
    moment = not_before + timedelta(seconds=now)
    assert policy.next_crossing(not_before, not_after, moment) == plain_next_crossing(
        policy, not_before, not_after, moment
    )
    for instant in (not_after, not_after - timedelta(days=30)):  # at a crossing exactly
        assert policy.next_crossing(not_before, not_after, instant) == plain_next_crossing(
            policy, not_before, not_after, instant
        )


def test_the_default_policy_on_a_90_day_certificate() -> None:
    policy = Policy()
    not_after = START + timedelta(days=90)
    assert policy.next_crossing(START, not_after, START) == not_after - timedelta(
        days=30, seconds=1
    )
    assert policy.next_crossing(START, not_after, not_after) is None


def test_each_policy_answers_with_its_own_thresholds_when_an_old_ones_id_is_reused() -> None:
    """What a policy worked out is remembered by its identity: a policy made after
    another was dropped (often at the same address) never gets the other's answers."""
    not_before = datetime(2026, 1, 1, tzinfo=UTC)
    not_after = not_before + timedelta(days=90)
    now = not_after - timedelta(days=20)
    for days in range(21, 46):  # each dropped before the next is made (45d: half of 90)
        policy = Policy(thresholds_days=(days,), thresholds_percent=())
        assert policy.crossed(not_before, not_after, now) == [f"{days}d"]
        assert policy.next_crossing(not_before, not_after, now) == not_after - timedelta(seconds=1)
        del policy
    narrow = Policy(thresholds_days=(7,), thresholds_percent=())
    assert narrow.crossed(not_before, not_after, now) == []
    assert narrow.next_crossing(not_before, not_after, now) == not_after - timedelta(
        days=7, seconds=1
    )
