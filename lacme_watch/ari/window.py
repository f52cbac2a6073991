"""RenewalInfo answers (RFC 9773 §4.2) and the pure decision over them.

No I/O and no clock: `judge()` takes what was known, what the CA said and the time,
and returns what to remember and what to announce, as `detect()` does for scans.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from .. import boundedjson
from ..events.cloudevents import parse_time
from ..observations import Observation

RETRY_AFTER_MIN = timedelta(minutes=1)
RETRY_AFTER_MAX = timedelta(days=1)
"""RFC 9773 §4.3: clients clamp Retry-After to reasonable limits, e.g. one minute and one day."""
FIRST_BACKOFF = timedelta(minutes=15)
SHORT_LIFETIME = timedelta(days=10)


class BadAnswer(ValueError):
    """A renewalInfo body that RFC 9773 says to treat as no answer at all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalWindow:
    """The CA's suggested window: renew at a random moment in [start, end)."""

    start: datetime
    end: datetime
    explanation_url: str | None = None

    @property
    def key(self) -> str:
        """What makes two answers the same window (the explanation may be reworded)."""
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One successful renewalInfo response."""

    window: RenewalWindow
    retry_after: timedelta | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AriRecord:
    """What lacme-watch remembers about one certificate's renewal information."""

    fingerprint: str
    cert_id: str
    directory: str
    next_check: datetime
    """Not before this instant: Retry-After, the twice-a-day cap or the error backoff."""
    window: RenewalWindow | None = None
    checked_at: datetime | None = None
    """When the CA last answered."""
    failures: int = 0
    error: str | None = None
    """Why the last attempt failed; None once the CA answers again."""
    moved_for: str | None = None
    """The window (its key) already announced as renewal_window_moved."""
    overdue_for: str | None = None
    """The window already announced as renewal_overdue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Overdue:
    """The window's end plus the grace passed and the lineage was not renewed."""

    observation: Observation
    window: RenewalWindow
    grace: timedelta
    cert_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Moved:
    """The CA asks for early renewal: the window starts before the usual point or moved."""

    observation: Observation
    window: RenewalWindow
    previous: RenewalWindow | None
    reason: str
    cert_id: str | None = None
    """`early` (before two thirds of the lifetime) or `moved` (earlier than last answer)."""


def parse_answer(body: bytes) -> RenewalWindow:
    """The window in a renewalInfo body; BadAnswer when RFC 9773 says to ignore it."""
    try:
        document = boundedjson.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadAnswer(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise BadAnswer("no suggestedWindow object")
    window = document.get("suggestedWindow")
    if not isinstance(window, dict):
        raise BadAnswer("no suggestedWindow object")
    start, end = window.get("start"), window.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        raise BadAnswer("suggestedWindow needs start and end timestamps")
    try:
        # RFC 3339 allows a lower-case t and z; whole seconds are all a window needs, and
        # they survive the state database exactly (an answer must equal itself next time)
        start_at, end_at = (parse_time(t.upper()).replace(microsecond=0) for t in (start, end))
    except ValueError:
        raise BadAnswer(f"suggestedWindow has a bad timestamp: {start!r} / {end!r}") from None
    if end_at <= start_at:
        raise BadAnswer(f"suggestedWindow ends ({end}) before it starts ({start})")
    explanation = document.get("explanationURL")
    return RenewalWindow(
        start=start_at,
        end=end_at,
        explanation_url=explanation if isinstance(explanation, str) and explanation else None,
    )


def parse_retry_after(value: str | None, server_date: str | None = None) -> timedelta | None:
    """Retry-After as delta-seconds or an HTTP-date (relative to the response's Date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    from email.utils import parsedate_to_datetime  # the email package: only for a date here

    try:
        when = parsedate_to_datetime(text)
        sent = parsedate_to_datetime(server_date) if server_date else datetime.now(UTC)
    except (TypeError, ValueError):
        return None
    return max(when - sent, timedelta(0))


def clamp_retry_after(delay: timedelta) -> timedelta:
    return min(max(delay, RETRY_AFTER_MIN), RETRY_AFTER_MAX)


def next_check(now: datetime, retry_after: timedelta | None, interval: timedelta) -> datetime:
    """After an answer: when Retry-After says (clamped), else after `interval` (12h)."""
    if retry_after is None:
        return now + interval
    return now + clamp_retry_after(retry_after)


def backoff(
    now: datetime, failures: int, retry_after: timedelta | None, interval: timedelta
) -> datetime:
    """After a failure: Retry-After if the CA gave one, else 15m, 30m, 1h ... up to `interval`."""
    if retry_after is not None:
        return now + clamp_retry_after(retry_after)
    doubling: int = 2 ** max(failures - 1, 0)
    return now + min(FIRST_BACKOFF * doubling, interval)


def usual_start(observation: Observation) -> datetime:
    """Where a CA usually opens the window: two thirds into the lifetime (one half under
    ten days), as Let's Encrypt's Boulder computes it (`core.RenewalInfoSimple`)."""
    facts = observation.certificate
    lifetime = facts.not_after - facts.not_before
    fraction = 1 / 2 if lifetime < SHORT_LIFETIME else 2 / 3
    return facts.not_before + lifetime * fraction


def early_slack(observation: Observation) -> timedelta:
    """How far before the usual point a window may start and still be usual. Boulder
    opens its window 24 hours (older releases) or 1% of the lifetime before that point;
    2% of the lifetime, and at least 25 hours (5% for short lifetimes), covers both."""
    lifetime = observation.certificate.not_after - observation.certificate.not_before
    return max(lifetime * 0.02, min(timedelta(hours=25), lifetime * 0.05))


def default_grace(observation: Observation) -> timedelta:
    """One day, or 10% of the lifetime when that is shorter (a 6-day certificate)."""
    facts = observation.certificate
    return min(timedelta(days=1), (facts.not_after - facts.not_before) * 0.1)


def judge(
    observation: Observation,
    before: AriRecord | None,
    after: AriRecord,
    now: datetime,
    *,
    answered: bool,
    grace: timedelta | None = None,
    overdue: bool = True,
) -> tuple[AriRecord, list[Moved | Overdue]]:
    """What one certificate's renewal information means now.

    `after` is the record with this pass's answer (if `answered`). A moved window is
    judged only on a fresh answer; the overdue check runs every pass. Each fires once
    per window: the marks live in the record and a new window re-arms them.
    """
    window = after.window
    if window is None:
        return after, []
    findings: list[Moved | Overdue] = []
    if answered and after.moved_for != window.key:
        previous = before.window if before is not None else None
        reason = None
        if (
            previous is not None
            and previous.key != window.key
            and (window.start < previous.start or window.end < previous.end)
        ):
            reason = "moved"
        elif window.start < usual_start(observation) - early_slack(observation):
            reason = "early"
        if reason is not None:
            shown = previous if previous is not None and previous.key != window.key else None
            findings.append(
                Moved(
                    observation=observation,
                    window=window,
                    previous=shown,
                    reason=reason,
                    cert_id=after.cert_id,
                )
            )
            after = replace(after, moved_for=window.key)
    allowed = grace if grace is not None else default_grace(observation)
    if overdue and now > window.end + allowed and after.overdue_for != window.key:
        findings.append(
            Overdue(observation=observation, window=window, grace=allowed, cert_id=after.cert_id)
        )
        after = replace(after, overdue_for=window.key)
    return after, findings


def late_in_window(
    observation: Observation, record: AriRecord | None, now: datetime, grace: timedelta
) -> RenewalWindow | None:
    """The window, when it opened more than `grace` ago and this certificate is still the
    lineage's current one (`check --ari-grace`)."""
    if record is None or record.window is None or record.fingerprint != observation.fingerprint:
        return None
    return record.window if now >= record.window.start + grace else None
