"""One parser per section of the file (expiry, schedule, rate_limits, metrics, sinks,
delivery, revocation, changes): each reads its Options and returns a frozen value."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from .. import events as _events
from ..detection.changes import FIELDS as CHANGE_FIELDS
from ..detection.ratelimits import RULE_NAMES, RateLimits, Rule
from ..detection.renewal import DEFAULT_AGENT_STALE_AFTER, DEFAULT_GRACE, parse_renew_before
from ..detection.thresholds import Policy
from ..errors import ConfigError
from ..options import Options, parse_duration
from ..plugins import GROUPS, Sink, lookup
from ..sources.crl import DEFAULT_MAX_CRL_SIZE, RevocationOptions
from .model import MetricsOptions, Schedule, SourceRenewal
from .routes import RetryPolicy, SinkRoute

if TYPE_CHECKING:
    pass


def revocation(options: Options) -> RevocationOptions:
    default = RevocationOptions()
    revocation = RevocationOptions(
        crl=options.boolean("crl", default.crl),
        timeout=options.duration("timeout", default.timeout),
        max_size=options.size("max_size", DEFAULT_MAX_CRL_SIZE),
        refresh=options.duration("refresh", default.refresh),
    )
    options.finish()
    return revocation


def source_renewal(options: Options) -> SourceRenewal:
    """`renew_before` and `agent_stale_after`, read here so every plugin accepts them."""
    renew_before = None
    off = False
    if (node := options.node("renew_before")) is not None:
        # YAML reads a bare `off` as false
        off = node.value is False or node.value == "off"
        text = node.value if isinstance(node.value, str) else ""
        renew_before = None if off else parse_renew_before(text)
        if renew_before is None and not off:
            raise node.unexpected(
                "a duration like '30d', a share of the lifetime like '33%', or off"
            )
    stale_after = options.duration("agent_stale_after", DEFAULT_AGENT_STALE_AFTER)
    return SourceRenewal(renew_before=renew_before, no_policy=off, agent_stale_after=stale_after)


def ignored_changes(options: Options) -> frozenset[str]:
    """`changes: {ignore: [...]}`: certificate_changed fields not worth a message."""
    names = options.strings("ignore")
    node = options.node("ignore")
    if node is not None:
        items = node.value if isinstance(node.value, list) else [node]
        for name, item in zip(names, items, strict=True):
            if name not in CHANGE_FIELDS:
                raise item.unexpected(f"a certificate_changed field ({', '.join(CHANGE_FIELDS)})")
    options.finish()
    return frozenset(names)


def expiry(options: Options, ignore_changes: frozenset[str]) -> tuple[Policy, bool]:
    default = Policy()
    policy = Policy(
        thresholds_days=options.numbers(
            "thresholds_days", default.thresholds_days, int, low=0, high=36500
        ),
        thresholds_percent=options.numbers(
            "thresholds_percent", default.thresholds_percent, float, low=0, high=100
        ),
        overdue=options.boolean("overdue", True),
        overdue_grace=options.duration("overdue_grace", DEFAULT_GRACE),
        ignore_changes=ignore_changes,
    )
    chain = options.choice("chain", ("full", "leaf"), "full") == "full"
    options.finish()
    return policy, chain


def schedule(options: Options) -> Schedule:
    node = options.node("scan")
    deliver = options.duration("deliver", timedelta(minutes=1))
    jitter = options.duration("jitter", timedelta(seconds=1)) if "jitter" in options else None
    timezone = options.optional_string("timezone")
    if timezone is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only a schedule with a zone

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            where = options.node("timezone")
            raise ConfigError(
                str(where.where if where else options.where), f"unknown time zone {timezone!r}"
            ) from None
    options.finish()
    base = Schedule(deliver=deliver, jitter=jitter or timedelta(0), timezone=timezone)
    if node is None:
        return base
    if not isinstance(node.value, str):
        raise node.unexpected("a duration like '15m' or a 5-field cron expression")
    if (interval := parse_duration(node.value)) is not None and interval.total_seconds() > 0:
        return replace(base, interval=interval)
    if len(node.value.split()) == 5:
        from . import cron  # its field grammar: only for a schedule written in cron's

        try:
            cron.parse(node.value)
        except ValueError as exc:
            raise node.unexpected(f"a valid cron expression ({exc})") from None
        return replace(base, interval=None, cron=node.value)
    raise node.unexpected("a duration like '15m' or a 5-field cron expression")


def rate_limits(options: Options) -> RateLimits:
    default = RateLimits()
    enabled = options.boolean("enabled", True)
    warn_node = options.node("warn_at")
    warn_at = default.warn_at
    if warn_node is not None:
        value = warn_node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise warn_node.unexpected("a fraction above 0 and at most 1, like 0.8")
        warn_at = float(value)
    rules = dict(default.rules)
    configured = options.section("rules")
    for name in RULE_NAMES:
        if name not in configured:
            continue
        rule = configured.section(name)
        rules[name] = Rule(
            limit=rule.integer("limit", default.rules[name].limit, minimum=1),
            window=rule.duration("window", default.rules[name].window),
        )
        rule.finish()
    configured.finish()
    options.finish()
    return RateLimits(enabled=enabled, warn_at=warn_at, rules=rules)


def metrics(options: Options) -> MetricsOptions:
    listen = options.optional_string("listen")
    if listen is not None:
        from ..run.metrics import parse_listen

        try:
            parse_listen(listen)
        except ConfigError:
            node = options.node("listen")
            raise ConfigError(
                str(node.where if node else options.where), f"expected host:port, got {listen!r}"
            ) from None
    textfile = options.path("textfile") if options.node("textfile") is not None else None
    if textfile is not None and not os.path.isdir(os.path.dirname(textfile)):
        node = options.node("textfile")
        raise ConfigError(
            str(node.where if node else options.where),
            f"the directory of {textfile} does not exist; create it (node_exporter's"
            " --collector.textfile.directory) or point textfile into an existing one",
        )
    options.finish()
    return MetricsOptions(listen=listen, textfile=textfile)


def sinks(options: Options) -> tuple[SinkRoute, ...]:
    if options.node("sinks") is None:
        from ..sinks.log import LogSink

        return (SinkRoute(sink=LogSink("log")),)
    routes: list[SinkRoute] = []
    names: set[str] = set()
    for index, item in enumerate(options.sections("sinks")):
        kind = item.string("type")
        cls = lookup(GROUPS["sinks"], kind, str(item.where.child("type")))
        name = item.string("name", kind if kind not in names else f"{kind}-{index + 1}")
        if name in names:
            raise ConfigError(str(item.where.child("name")), f"sink name {name!r} is used twice")
        names.add(name)
        events = event_filter(item)
        min_interval = item.duration("min_interval") if "min_interval" in item else None
        sink: Sink = cls.from_options(name, item)
        item.finish()
        routes.append(SinkRoute(sink=sink, events=events, min_interval=min_interval))
    return tuple(routes)


def event_filter(options: Options) -> frozenset[str] | None:
    node = options.node("events")
    if node is None:
        return None
    names = options.strings("events")
    items = node.value if isinstance(node.value, list) else [node]
    for name, item in zip(names, items, strict=True):
        if name not in _events.KINDS:
            raise item.unexpected(f"an event name ({', '.join(_events.KINDS)})")
    return frozenset(names)


def retry(options: Options) -> RetryPolicy:
    default = RetryPolicy()
    retry = RetryPolicy(
        initial=options.duration("retry_initial", default.initial),
        maximum=options.duration("retry_max", default.maximum),
        max_age=options.duration("max_age", default.max_age),
    )
    options.finish()
    return retry
