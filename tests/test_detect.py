"""detect(): the heart of lacme-watch, tested as a pure function."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lacme_watch.detection.detect import Authority, SourceSnapshot, detect
from lacme_watch.detection.thresholds import Policy, days_remaining
from lacme_watch.events import (
    CACertificateIssued,
    CertificateAuthorityInitialized,
    CertificateExpiring,
    CertificateRemoved,
    CertificateRenewed,
    CertificateUnreadable,
    Event,
)
from lacme_watch.observations import Problem

from .factories import observation, renewed, scan

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = Policy()
SOURCE = "lacme:/store"


def run(
    previous: SourceSnapshot | None,
    *observations: object,
    now: datetime = NOW,
    policy: Policy = POLICY,
    **kwargs: object,
) -> tuple[SourceSnapshot, list[Event]]:
    result = scan(*observations, **kwargs)  # type: ignore[arg-type]
    return detect(previous, result, source=SOURCE, now=now, policy=policy)


def names(events: list[Event]) -> list[str]:
    return [event.kind for event in events]


def baseline(*observations: object, now: datetime = NOW) -> SourceSnapshot:
    snapshot, _ = run(None, *observations, now=now)
    return snapshot


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [
        pytest.param(40, [], id="baseline-is-quiet"),
        pytest.param(10, ["certificate_expiring"], id="baseline-still-warns"),
        pytest.param(-1, ["certificate_expiring"], id="expired-is-reported"),
    ],
)
def test_first_pass(days_left: int, expected: list[str]) -> None:
    _, events = run(None, observation(now=NOW, days_left=days_left))

    assert names(events) == expected


def test_first_pass_reports_no_issuance_even_for_a_ca_signed_certificate() -> None:
    signed = observation(now=NOW, days_left=60, signed_by="ca-fp")

    _, events = run(None, signed)

    assert events == []


def test_a_lineage_seen_after_the_baseline_is_issued() -> None:
    before = baseline(observation(now=NOW, days_left=60, lineage="certs/a"))

    _, events = run(
        before,
        observation(now=NOW, days_left=60, lineage="certs/a"),
        observation(now=NOW, days_left=60, lineage="certs/b"),
    )

    assert names(events) == ["certificate_issued"]
    assert events[0].lineage == "certs/b"


def test_a_later_certificate_in_a_lineage_is_a_renewal_with_the_previous_expiry() -> None:
    old = observation(now=NOW, days_left=20)
    before = baseline(old)
    new = renewed(old, now=NOW, days_left=90)

    _, events = run(before, new)

    assert names(events) == ["certificate_renewed"]
    renewal = events[0]
    assert isinstance(renewal, CertificateRenewed)
    assert renewal.previous_expires_at == old.certificate.not_after
    assert renewal.expires_at == new.certificate.not_after


def test_an_older_certificate_put_back_is_not_a_renewal() -> None:
    current = observation(now=NOW, days_left=80)
    before = baseline(current)
    restored = renewed(current, now=NOW, days_left=50)

    _, events = run(before, restored)

    assert events == []


def test_a_ca_signed_new_certificate_also_gives_ca_certificate_issued() -> None:
    before = baseline()
    client = observation(now=NOW, days_left=1, lifetime_days=1, signed_by="ca-fp", is_client=True)
    authorities = {"ca-fp": Authority(fingerprint="ca-fp", cn="Internal CA")}

    _, events = detect(
        before, scan(client), source=SOURCE, now=NOW, policy=POLICY, authorities=authorities
    )

    assert names(events) == ["certificate_issued", "ca_certificate_issued"]
    signed = events[1]
    assert isinstance(signed, CACertificateIssued)
    assert (signed.name, signed.names, signed.is_client, signed.ca) == (
        client.domain,
        client.domains,
        True,
        "Internal CA",
    )
    assert signed.subject == "Internal CA"


def test_a_vanished_lineage_is_removed() -> None:
    before = baseline(observation(now=NOW, days_left=60))

    _, events = run(before)

    assert names(events) == ["certificate_removed"]
    assert isinstance(events[0], CertificateRemoved)


def test_a_failed_source_keeps_its_inventory_and_says_why() -> None:
    kept = observation(now=NOW, days_left=60)
    before = baseline(kept)
    problem = Problem("/store/certs", "permission_denied")

    after, events = run(before, problems=(problem,), failed=True)

    assert names(events) == ["certificate_unreadable"]
    assert after.certificates == {kept.lineage: kept}


def test_an_unreadable_file_keeps_its_lineage_instead_of_removing_it() -> None:
    kept = observation(now=NOW, days_left=60)
    before = baseline(kept)
    problem = Problem(kept.path, "bad_pem", lineage=kept.lineage)

    after, events = run(before, problems=(problem,))

    assert names(events) == ["certificate_unreadable"]
    assert after.certificates[kept.lineage] == kept


def test_a_problem_is_reported_once_and_again_after_it_was_fixed() -> None:
    problem = Problem("/store/certs/x/fullchain.pem", "bad_pem", "truncated")
    first, events = run(None, problems=(problem,))
    assert names(events) == ["certificate_unreadable"]
    assert isinstance(events[0], CertificateUnreadable)
    assert (events[0].path, events[0].reason, events[0].detail) == (
        problem.path,
        "bad_pem",
        "truncated",
    )

    second, events = run(first, problems=(problem,), now=NOW + timedelta(hours=1))
    assert events == []

    fixed, _ = run(second)
    _, events = run(fixed, problems=(problem,))
    assert names(events) == ["certificate_unreadable"]


def test_a_ca_is_initialized_once_even_on_the_baseline() -> None:
    root = observation(now=NOW, days_left=3000, lifetime_days=3650, role="ca", subject_cn="Root")
    first, events = run(None, root)
    assert names(events) == ["ca_initialized"]
    assert isinstance(events[0], CertificateAuthorityInitialized)
    assert events[0].cn == "Root"

    _, events = run(first, root)
    assert events == []


def test_chain_certificates_warn_about_expiry_but_are_never_issued() -> None:
    before = baseline()
    intermediate = observation(now=NOW, days_left=5, role="chain", lineage="chain:ff")

    _, events = run(before, intermediate)

    assert names(events) == ["certificate_expiring"]


@pytest.mark.parametrize(
    ("lifetime", "days_left", "threshold"),
    [
        pytest.param(90, 29.8, "30d", id="90d-cert-at-30-days"),
        pytest.param(90, 29.5, "33%", id="90d-cert-third-of-life-left"),
        pytest.param(90, 13, "14d", id="90d-cert-at-14-days"),
        pytest.param(90, 0.5, "1d", id="last-day"),
        pytest.param(90, -0.1, "expired", id="just-expired"),
        pytest.param(47, 20, None, id="47d-cert-30d-threshold-would-fire-at-issuance"),
        pytest.param(47, 15, "33%", id="47d-cert-third-of-life-left"),
        pytest.param(47, 13.9, "14d", id="47d-cert-at-14-days"),
        pytest.param(6, 5.9, None, id="6d-cert-fresh-is-quiet"),
        pytest.param(6, 1.9, "33%", id="6d-cert-third-of-life-left"),
        pytest.param(6, 0.5, "10%", id="6d-cert-tenth-of-life-left"),
        # A percent window longer than a day threshold that applies is not a warning:
        # 33% of a 25-year root (Go Daddy Class 2 in ca-certificates) is 8 years.
        pytest.param(9125, 2767, None, id="25y-root-with-7-years-left-is-quiet"),
        pytest.param(398, 120, None, id="398d-cert-at-120-days-is-quiet"),
        pytest.param(9125, 29.5, "30d", id="25y-root-at-30-days"),
    ],
)
def test_thresholds_suit_the_lifetime(
    lifetime: float, days_left: float, threshold: str | None
) -> None:
    cert = observation(now=NOW, days_left=days_left, lifetime_days=lifetime)

    _, events = run(None, cert)

    assert [getattr(e, "threshold", None) for e in events] == ([threshold] if threshold else [])


def test_without_day_thresholds_percent_covers_every_lifetime() -> None:
    """`thresholds_days: []` (renewal_overdue replaces them): 10% is the last call."""
    cert = observation(now=NOW, days_left=36, lifetime_days=398)
    policy = Policy(thresholds_days=(), thresholds_percent=(10,))

    assert policy.crossed(cert.certificate.not_before, cert.certificate.not_after, NOW) == ["10%"]


def test_several_thresholds_at_once_emit_one_event_for_the_most_urgent() -> None:
    cert = observation(now=NOW, days_left=2)

    after, events = run(None, cert)

    assert len(events) == 1
    assert isinstance(events[0], CertificateExpiring)
    assert events[0].threshold == "3d"
    assert {label for _, _, label in after.reported} >= {"30d", "14d", "7d", "3d", "33%", "10%"}


def test_each_threshold_fires_once_as_time_moves_forward() -> None:
    cert = observation(now=NOW, days_left=40)
    snapshot = baseline(cert)
    fired: list[str | None] = []
    for hours in range(0, 45 * 24, 6):
        snapshot, events = run(snapshot, cert, now=NOW + timedelta(hours=hours))
        fired += [getattr(event, "threshold", None) for event in events]

    assert fired == ["30d", "33%", "14d", "10%", "7d", "3d", "1d", "expired"]


def test_renewal_rearms_the_thresholds() -> None:
    old = observation(now=NOW, days_left=5)
    snapshot, events = run(None, old)
    assert names(events) == ["certificate_expiring"]

    new = renewed(old, now=NOW, days_left=5.5)
    _, events = run(snapshot, new)

    assert names(events) == ["certificate_renewed", "certificate_expiring"]


def test_days_remaining_is_floored() -> None:
    expiry = NOW + timedelta(days=3)
    assert days_remaining(expiry, NOW) == 3
    assert days_remaining(expiry, NOW + timedelta(hours=1)) == 2
    assert days_remaining(expiry, expiry - timedelta(seconds=1)) == 0
    assert days_remaining(expiry, expiry + timedelta(seconds=1)) == -1


def test_an_expired_certificate_reports_negative_days() -> None:
    cert = observation(now=NOW, days_left=-3)

    _, events = run(None, cert)

    assert isinstance(events[0], CertificateExpiring)
    assert (events[0].threshold, events[0].days_remaining) == ("expired", -3)


def test_moving_the_clock_back_does_not_rearm_thresholds() -> None:
    cert = observation(now=NOW, days_left=10)
    snapshot, _ = run(None, cert)

    snapshot, events = run(snapshot, cert, now=NOW - timedelta(days=30))
    assert events == []
    _, events = run(snapshot, cert)
    assert events == []


lifetimes = st.sampled_from([1, 6, 45, 47, 90, 397, 3650])
offsets = st.floats(min_value=-10, max_value=400, allow_nan=False)


@given(lifetime=lifetimes, days_left=offsets, step=st.floats(min_value=0.01, max_value=30))
def test_a_snapshot_compared_with_itself_is_silent(
    lifetime: int, days_left: float, step: float
) -> None:
    cert = observation(now=NOW, days_left=min(days_left, lifetime), lifetime_days=lifetime)
    snapshot, _ = run(None, cert)

    again, events = run(snapshot, cert)

    assert events == []
    assert again == snapshot


@given(lifetime=lifetimes, hops=st.lists(st.floats(min_value=0, max_value=5), max_size=40))
def test_no_threshold_fires_twice_for_one_certificate(lifetime: int, hops: list[float]) -> None:
    cert = observation(now=NOW, days_left=lifetime, lifetime_days=lifetime)
    snapshot = baseline(cert)
    moment = NOW
    seen: list[str | None] = []
    for hop in hops:
        moment += timedelta(days=hop)
        snapshot, events = run(snapshot, cert, now=moment)
        seen += [getattr(event, "threshold", None) for event in events]

    assert len(seen) == len(set(seen))


def test_policy_without_day_thresholds_uses_percentages_only() -> None:
    policy = replace(POLICY, thresholds_days=())
    cert = observation(now=NOW, days_left=20, lifetime_days=90)

    _, events = run(None, cert, policy=policy)

    assert [getattr(e, "threshold", None) for e in events] == ["33%"]
