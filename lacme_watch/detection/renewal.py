"""When the owner of a lineage should have renewed it: renewal policies, read from the
owner's own files, and when a renewal counts as overdue. Pure: no I/O, no clock.

A policy answers one question, `renew_after(facts)`: the instant the owning client
would have started renewing this certificate. Every source of that answer (certbot's
renewal conf, dehydrated's RENEW_DAYS, lacme's RenewalManager, the store's
`renew_before`, a CA's ARI window: ari/overdue.py) is one of the values below, so a new source
is a new value, not a new code path in detection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol

from ..instants import format_duration, format_time, parse_duration, parse_time


class Validity(Protocol):
    """What a policy needs of a certificate (observations.CertificateFacts has it)."""

    @property
    def not_before(self) -> datetime: ...

    @property
    def not_after(self) -> datetime: ...


DAY = timedelta(days=1)
DEFAULT_GRACE = DAY
GRACE_FRACTION = 0.10
"""The grace is at most this share of the lifetime: a 6-day certificate gets 14.4 hours."""
DEFAULT_AGENT_STALE_AFTER = timedelta(days=2)

# certbot up to 3.x: `renew_before_expiry` defaults to "30 days" (RENEWER_DEFAULTS in
# certbot/_internal/constants.py; used by RenewableCert.should_autorenew in
# certbot/_internal/storage.py, with the interval parsed by add_time_interval()).
CERTBOT_LEGACY_BEFORE = timedelta(days=30)
# certbot 4.0 and later, when renew_before_expiry is not set: renew once two thirds of
# the lifetime have passed, or half of it for lifetimes under 10 days
# (_default_renewal_time() and should_autorenew() in certbot/_internal/renewal.py; the
# CHANGELOG's 4.0.0 entry; https://www.eff.org/deeplinks/2025/04/certbot-40-long-live-short-lived-certs).
CERTBOT_LIFETIME_SINCE = 4
CERTBOT_SHORT_LIFETIME = timedelta(days=10)
# dehydrated: RENEW_DAYS="30" in load_config() of dehydrated 0.7.0 (Debian's
# /usr/bin/dehydrated), renewing when `openssl x509 -checkend RENEW_DAYS*86400` fails.
# Later docs/examples/config say 32; the smaller value never alarms before a
# dehydrated that renews at 30 would have renewed (a `config:` with RENEW_DAYS wins).
DEHYDRATED_RENEW_DAYS = 30
# lacme: RenewalManager(days_before_expiry=30) renews when expires_at <= now + 30 days.
LACME_DAYS_BEFORE_EXPIRY = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class BeforeExpiry:
    """Renew a fixed time before expiry (certbot's renew_before_expiry, RENEW_DAYS...)."""

    before: timedelta
    origin: str
    """Who says so, e.g. `certbot renew_before_expiry` or `dehydrated RENEW_DAYS`."""
    spelled: str = ""
    """The value as the owner wrote it (`30 days`); a duration when empty."""

    def renew_after(self, facts: Validity) -> datetime:
        return facts.not_after - self.before

    def describe(self) -> str:
        return f"{self.origin} = {self.spelled or format_duration(self.before)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LifetimeLeft:
    """Renew when a share of the lifetime is left (certbot 4's default, `renew_before: 33%`)."""

    fraction: float
    origin: str
    short_fraction: float | None = None
    short_below: timedelta | None = None
    """Lifetimes under this use short_fraction instead (certbot 4: half under 10 days)."""

    def renew_after(self, facts: Validity) -> datetime:
        lifetime = facts.not_after - facts.not_before
        fraction = self.fraction
        if self.short_fraction is not None and self.short_below and lifetime < self.short_below:
            fraction = self.short_fraction
        return facts.not_after - lifetime * fraction

    def describe(self) -> str:
        text = f"{self.origin} = {_percent(self.fraction)} of the lifetime left"
        if self.short_fraction is not None and self.short_below:
            text += f" ({_percent(self.short_fraction)} under {format_duration(self.short_below)})"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewAt:
    """Renew by a given instant, whatever the certificate says (an ARI window's end)."""

    at: datetime
    origin: str

    def renew_after(self, facts: Validity) -> datetime:
        return self.at

    def describe(self) -> str:
        return self.origin  # `ari`, as renewal_overdue's policy says; renew_after has the time


RenewalPolicy = BeforeExpiry | LifetimeLeft | RenewAt


def policy_to_json(policy: RenewalPolicy) -> dict[str, Any]:
    if isinstance(policy, BeforeExpiry):
        return {
            "type": "before_expiry",
            "origin": policy.origin,
            "seconds": policy.before.total_seconds(),
            "spelled": policy.spelled,
        }
    if isinstance(policy, LifetimeLeft):
        return {
            "type": "lifetime_left",
            "origin": policy.origin,
            "fraction": policy.fraction,
            "short_fraction": policy.short_fraction,
            "short_below": policy.short_below.total_seconds() if policy.short_below else None,
        }
    return {"type": "renew_at", "origin": policy.origin, "at": format_time(policy.at)}


def policy_from_json(raw: dict[str, Any]) -> RenewalPolicy | None:
    """The policy stored with an observation; None for one this version does not know."""
    kind = raw.get("type")
    if kind == "before_expiry":
        return BeforeExpiry(
            before=timedelta(seconds=raw["seconds"]),
            origin=raw["origin"],
            spelled=raw.get("spelled", ""),
        )
    if kind == "lifetime_left":
        short_below = raw.get("short_below")
        return LifetimeLeft(
            fraction=raw["fraction"],
            origin=raw["origin"],
            short_fraction=raw.get("short_fraction"),
            short_below=timedelta(seconds=short_below) if short_below is not None else None,
        )
    if kind == "renew_at":
        return RenewAt(at=parse_time(raw["at"]), origin=raw["origin"])
    return None


def _percent(fraction: float) -> str:
    value = round(fraction * 100, 2)
    return f"{int(value) if value.is_integer() else value}%"


# -- policies read from the owners' files ------------------------------------------

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_renew_before(text: str) -> RenewalPolicy | None:
    """A store's `renew_before`: a duration (`30d`) or a share of the lifetime (`33%`)."""
    if match := _PERCENT.match(text):
        fraction = float(match.group(1)) / 100
        return LifetimeLeft(fraction=fraction, origin="renew_before") if 0 < fraction < 1 else None
    duration = parse_duration(text)
    if duration is None or duration <= timedelta(0):
        return None
    return BeforeExpiry(before=duration, origin="renew_before", spelled=text.strip())


# certbot's and dehydrated's grammars are compiled where those tools are watched, not
# at every cron start.
@cache
def _conf_line() -> re.Pattern[str]:
    return re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$")


@cache
def _interval_part() -> re.Pattern[str]:
    return re.compile(
        r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w"
        r"|months?|years?|y)\b",
        re.IGNORECASE,
    )


_INTERVAL_UNITS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,  # parsedatetime adds calendar months; 30 days is within a day of it
    "y": 365 * 86400,
}


def certbot_interval(text: str) -> timedelta | None:
    """certbot's `renew_before_expiry` (`30 days`, `3 weeks`, `6 months 1 week`, `10`),
    as add_time_interval() reads it: a bare number is days."""
    text = text.strip().strip("'\"")
    if text.isdigit():
        return timedelta(days=int(text))
    total = 0.0
    position = 0
    for match in _interval_part().finditer(text):
        if text[position : match.start()].strip(" ,and"):
            return None
        unit = match.group(2).lower()
        key = "mo" if unit.startswith("mo") else unit[0]
        total += float(match.group(1)) * _INTERVAL_UNITS[key]
        position = match.end()
    if position == 0 or text[position:].strip():
        return None
    return timedelta(seconds=total)


def certbot_policy(conf_text: str) -> RenewalPolicy | None:
    """The policy of one `renewal/<name>.conf`: its renew_before_expiry, else the default
    of the certbot version that wrote it (None when the interval cannot be read, or
    when `autorenew = False` says certbot will not renew it)."""
    values: dict[str, str] = {}
    section = ""
    for line in conf_text.splitlines():
        if line.lstrip().startswith("["):
            section = line.strip()
        elif match := _conf_line().match(line):
            # renew_before_expiry and version sit above [renewalparams]; autorenew in it
            values[f"{section}{match.group(1)}"] = match.group(2)
    if values.get("[renewalparams]autorenew", "").strip("'\"").lower() in ("false", "no", "0"):
        return None
    if "renew_before_expiry" in values:
        spelled = values["renew_before_expiry"].strip("'\"")
        interval = certbot_interval(spelled)
        if interval is None:
            return None
        return BeforeExpiry(before=interval, origin="certbot renew_before_expiry", spelled=spelled)
    version = values.get("version", "")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major >= CERTBOT_LIFETIME_SINCE:
        return LifetimeLeft(
            fraction=1 / 3,
            short_fraction=1 / 2,
            short_below=CERTBOT_SHORT_LIFETIME,
            origin=f"certbot {version} default",
        )
    return BeforeExpiry(
        before=CERTBOT_LEGACY_BEFORE,
        origin=f"certbot {version or '(unknown version)'} default renew_before_expiry",
        spelled="30 days",
    )


@cache
def _renew_days() -> re.Pattern[str]:
    return re.compile(r"""^\s*(?:export\s+|declare\s+--\s+)?RENEW_DAYS=["']?(\d+)["']?\s*(#.*)?$""")


def dehydrated_renew_days(config_text: str) -> int | None:
    """The last RENEW_DAYS a dehydrated config (a shell file) assigns, if any."""
    found = None
    for line in config_text.splitlines():
        if match := _renew_days().match(line):
            found = int(match.group(1))
    return found


def dehydrated_policy(days: int | None, where: str) -> BeforeExpiry:
    if days is None:
        return BeforeExpiry(
            before=timedelta(days=DEHYDRATED_RENEW_DAYS),
            origin="dehydrated default RENEW_DAYS",
            spelled=str(DEHYDRATED_RENEW_DAYS),
        )
    return BeforeExpiry(
        before=timedelta(days=days), origin=f"dehydrated RENEW_DAYS ({where})", spelled=str(days)
    )


LACME_DEFAULT = BeforeExpiry(
    before=timedelta(days=LACME_DAYS_BEFORE_EXPIRY),
    origin="lacme RenewalManager default days_before_expiry",
    spelled=str(LACME_DAYS_BEFORE_EXPIRY),
)


# -- overdue -------------------------------------------------------------------------


def grace(facts: Validity, configured: timedelta = DEFAULT_GRACE) -> timedelta:
    """`expiry.overdue_grace`, or 10% of the lifetime when that is shorter."""
    lifetime = facts.not_after - facts.not_before
    return min(configured, lifetime * GRACE_FRACTION)


def renew_after(policy: RenewalPolicy, facts: Validity) -> datetime:
    """The owner's renewal point; never before issuance (a 30-day rule on a 6-day
    certificate means "renew at every run", not "overdue from birth")."""
    return max(policy.renew_after(facts), facts.not_before)


def overdue_since(
    policy: RenewalPolicy, facts: Validity, configured_grace: timedelta = DEFAULT_GRACE
) -> datetime:
    """From when on a certificate that is still in place counts as overdue."""
    return renew_after(policy, facts) + grace(facts, configured_grace)


def agent_stale(last_run: datetime, now: datetime, after: timedelta) -> bool:
    """No run for longer than `after`."""
    return now - last_run > after
