"""The configuration file, read once into frozen objects with file:line errors.

Search order: --config, $LACME_WATCH_CONFIG, ./lacme-watch.yaml,
/etc/lacme-watch/config.yaml. With none found, lacme-watch watches the default
places of the tools it knows (zero configuration).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import cron
from .ari.settings import AriSettings, StoreAri, ari_settings, store_ari
from .changes import FIELDS as CHANGE_FIELDS
from .crl import DEFAULT_MAX_CRL_SIZE, RevocationOptions
from .detect import Policy
from .errors import ConfigError
from .events import EVENT_TYPES
from .options import Node, Options, format_duration, load_yaml, parse_duration
from .plugins import GROUPS, Sink, Source, lookup
from .ratelimits import RULE_NAMES, RateLimits, Rule
from .reader import DEFAULT_MAX_FILE_SIZE
from .renewal import DEFAULT_AGENT_STALE_AFTER, DEFAULT_GRACE, RenewalPolicy, parse_renew_before
from .routes import RetryPolicy, SinkRoute

__all__ = ["Config", "ConfigError", "Options", "Schedule", "SinkRoute", "find_config", "load"]

SYSTEM_CONFIG = Path("/etc/lacme-watch/config.yaml")
LOCAL_CONFIG = Path("lacme-watch.yaml")
DEFAULT_SCAN = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When the daemon scans: every `interval`, or on a 5-field `cron` expression."""

    interval: timedelta | None = DEFAULT_SCAN
    cron: str | None = None
    deliver: timedelta = timedelta(minutes=1)
    """How often the daemon retries pending deliveries between scans."""
    jitter: timedelta = timedelta(0)
    """Random delay added to each scan, so a fleet does not scan in lockstep."""
    timezone: str | None = None
    """For cron expressions; None is the system's time zone."""

    def describe(self) -> str:
        if self.cron or self.interval is None:
            return f"on cron '{self.cron}'"
        return f"every {format_duration(self.interval)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRenewal:
    """Keys every store and authority accepts about its renewals."""

    renew_before: RenewalPolicy | None = None
    """`renew_before`: replaces (or, for pem, tls and easy-rsa, supplies) the owner's policy."""
    no_policy: bool = False
    """`renew_before: off`: nobody renews these automatically; no renewal_overdue."""
    agent_stale_after: timedelta = DEFAULT_AGENT_STALE_AFTER
    """renewal_agent_stale when no run of the store's renewal agent was seen for this long."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsOptions:
    """Where Prometheus metrics go: an HTTP listener (daemon) and/or a textfile."""

    listen: str | None = None
    textfile: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything a pass needs, validated."""

    path: str | None
    state_dir: Path
    host: str
    stores: tuple[Source, ...]
    authorities: tuple[Source, ...]
    policy: Policy = field(default_factory=Policy)
    chain: bool = True
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    schedule: Schedule = field(default_factory=Schedule)
    sinks: tuple[SinkRoute, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    heartbeat: bool = False
    metrics: MetricsOptions = field(default_factory=MetricsOptions)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    spool: str | None = None
    """Directory other processes (the lacme bridge, hooks) drop CloudEvent files into."""
    ari: AriSettings = field(default_factory=AriSettings)
    """ACME Renewal Information (RFC 9773): asked of each store's own CA."""
    warnings: tuple[str, ...] = ()
    trust: tuple[str, ...] = ()
    """PEM bundles of roots that chains may end at, besides the system's and watched CAs'."""
    revocation: RevocationOptions = field(default_factory=RevocationOptions)
    revocation_overrides: Mapping[str, bool] = field(default_factory=dict)
    """Source id -> `revocation.crl` set on that store, overriding the global one."""

    def checks_revocation(self, source_id: str) -> bool:
        """Whether this source's certificates are looked up in their CRLs (network)."""
        return self.revocation_overrides.get(source_id, self.revocation.crl)

    renewal: Mapping[str, SourceRenewal] = field(default_factory=dict)
    """Per source id; a source not named here has the defaults."""

    @property
    def sources(self) -> tuple[Source, ...]:
        """Authorities first: stores check signatures against their keys."""
        return (*self.authorities, *self.stores)

    def renewal_of(self, source: str) -> SourceRenewal:
        return self.renewal.get(source) or SourceRenewal()


def find_config(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file to use, or None for zero configuration."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get("LACME_WATCH_CONFIG"):
        return Path(environ["LACME_WATCH_CONFIG"])
    for candidate in (LOCAL_CONFIG, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """/var/lib/lacme-watch for root; else $XDG_STATE_HOME or ~/.local/state."""
    environ = os.environ if environ is None else environ
    if os.geteuid() == 0:
        return Path("/var/lib/lacme-watch")
    base = environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "lacme-watch"


def load(path: Path) -> Config:
    """Read and validate a configuration file."""
    if not path.exists():
        raise ConfigError(str(path), "no such configuration file")
    return build(load_yaml(path), str(path))


def build(root: Node, file: str) -> Config:
    """Validate a parsed YAML document into a Config."""
    warnings: list[str] = []
    options = Options.of(root, warnings)
    state_dir = (
        Path(options.path("state_dir"))
        if options.node("state_dir") is not None
        else default_state_dir()
    )
    host = options.string("host", socket.gethostname())
    max_file_size = options.size("max_file_size", DEFAULT_MAX_FILE_SIZE)
    overrides: dict[str, bool] = {}
    renewal: dict[str, SourceRenewal] = {}
    per_store: dict[str, StoreAri] = {}
    stores = tuple(
        _plugin(GROUPS["stores"], item, renewal, overrides, per_store)
        for item in options.sections("stores")
    )
    authorities = tuple(
        _plugin(GROUPS["authorities"], item, renewal) for item in options.sections("authorities")
    )
    if not stores and not authorities:
        raise ConfigError(f"{file}:{root.where.line}", "configure at least one store or authority")
    _reject_duplicates(options, (*authorities, *stores))
    policy, chain = _expiry(options.section("expiry"), _ignored_changes(options.section("changes")))
    schedule = _schedule(options.section("schedule"))
    sinks = _sinks(options)
    retry = _retry(options.section("delivery"))
    heartbeat = options.boolean("heartbeat", False)
    metrics = _metrics(options.section("metrics"))
    spool = options.path("spool") if options.node("spool") is not None else None
    rate_limits = _rate_limits(options.section("rate_limits"))
    trust = options.paths("trust") if options.node("trust") is not None else ()
    warnings += [
        f"{options.where.child('trust')}: {p} does not exist"
        for p in trust
        if not os.path.isfile(p)
    ]
    revocation = _revocation(options.section("revocation"))
    ari = ari_settings(options, per_store)
    options.finish()
    return Config(
        path=file,
        state_dir=state_dir,
        host=host,
        stores=stores,
        authorities=authorities,
        policy=policy,
        chain=chain,
        max_file_size=max_file_size,
        schedule=schedule,
        sinks=sinks,
        retry=retry,
        heartbeat=heartbeat,
        metrics=metrics,
        spool=spool,
        rate_limits=rate_limits,
        ari=ari,
        warnings=tuple(warnings),
        trust=trust,
        revocation=revocation,
        revocation_overrides=overrides,
        renewal=renewal,
    )


def _plugin(
    group: str,
    options: Options,
    renewal: dict[str, SourceRenewal],
    overrides: dict[str, bool] | None = None,
    ari: dict[str, StoreAri] | None = None,
) -> Source:
    kind = options.string("type")
    cls = lookup(group, kind, str(options.where.child("type")))
    settings = _source_renewal(options)
    crl: bool | None = None
    if overrides is not None and "revocation" in options:
        per_store = options.section("revocation")
        crl = per_store.boolean("crl", False)
        per_store.finish()
    own_ari = store_ari(options) if ari is not None else None  # every store may have `ari:`
    source: Source = cls.from_options(options)
    options.finish()
    renewal[source.id] = settings
    if overrides is not None and crl is not None:
        overrides[source.id] = crl
    if ari is not None and own_ari is not None:
        ari[source.id] = own_ari
    return source


def _revocation(options: Options) -> RevocationOptions:
    default = RevocationOptions()
    revocation = RevocationOptions(
        crl=options.boolean("crl", default.crl),
        timeout=options.duration("timeout", default.timeout),
        max_size=options.size("max_size", DEFAULT_MAX_CRL_SIZE),
        refresh=options.duration("refresh", default.refresh),
    )
    options.finish()
    return revocation


def _source_renewal(options: Options) -> SourceRenewal:
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


def _ignored_changes(options: Options) -> frozenset[str]:
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


def _reject_duplicates(options: Options, sources: tuple[Source, ...]) -> None:
    seen: set[str] = set()
    for source in sources:
        if source.id in seen:
            raise ConfigError(str(options.where), f"{source.id} is configured twice")
        seen.add(source.id)


def _expiry(options: Options, ignore_changes: frozenset[str]) -> tuple[Policy, bool]:
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


def _schedule(options: Options) -> Schedule:
    node = options.node("scan")
    deliver = options.duration("deliver", timedelta(minutes=1))
    jitter = options.duration("jitter", timedelta(seconds=1)) if "jitter" in options else None
    timezone = options.optional_string("timezone")
    if timezone is not None:
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
        try:
            cron.parse(node.value)
        except ValueError as exc:
            raise node.unexpected(f"a valid cron expression ({exc})") from None
        return replace(base, interval=None, cron=node.value)
    raise node.unexpected("a duration like '15m' or a 5-field cron expression")


def _rate_limits(options: Options) -> RateLimits:
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


def _metrics(options: Options) -> MetricsOptions:
    listen = options.optional_string("listen")
    if listen is not None:
        from .metrics import parse_listen

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


def _sinks(options: Options) -> tuple[SinkRoute, ...]:
    if options.node("sinks") is None:
        from .sinks.log import LogSink

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
        events = _event_filter(item)
        min_interval = item.duration("min_interval") if "min_interval" in item else None
        sink: Sink = cls.from_options(name, item)
        item.finish()
        routes.append(SinkRoute(sink=sink, events=events, min_interval=min_interval))
    return tuple(routes)


def _event_filter(options: Options) -> frozenset[str] | None:
    node = options.node("events")
    if node is None:
        return None
    names = options.strings("events")
    items = node.value if isinstance(node.value, list) else [node]
    for name, item in zip(names, items, strict=True):
        if name not in EVENT_TYPES:
            raise item.unexpected(f"an event name ({', '.join(EVENT_TYPES)})")
    return frozenset(names)


def _retry(options: Options) -> RetryPolicy:
    default = RetryPolicy()
    retry = RetryPolicy(
        initial=options.duration("retry_initial", default.initial),
        maximum=options.duration("retry_max", default.maximum),
        max_age=options.duration("max_age", default.max_age),
    )
    options.finish()
    return retry


def zero_config(home: Path | None = None) -> tuple[Config, list[str]]:
    """Watch the default places of the tools lacme-watch knows that exist and are readable.

    Returns the configuration and the places watched (the CLI says them on stderr).
    """
    from .authorities.lacme import LacmeAuthority
    from .stores.certbot import CertbotStore
    from .stores.dehydrated import DehydratedStore
    from .stores.lacme import LacmeStore

    home = home or Path.home()
    stores: list[Source] = []
    authorities: list[Source] = []
    watched: list[str] = []
    lacme_base = home / ".lacme"
    if os.access(lacme_base, os.R_OK | os.X_OK):
        stores.append(LacmeStore(str(lacme_base)))
        watched.append(f"lacme store {lacme_base}")
        ca_root = lacme_base / "ca"
        for ca in sorted(ca_root.glob("*/cert.pem")) if ca_root.is_dir() else []:
            authorities.append(LacmeAuthority(str(lacme_base), ca.parent.name))
            watched.append(f"lacme CA {ca.parent.name} in {lacme_base}")
    certbot = Path("/etc/letsencrypt")
    if os.access(certbot / "live", os.R_OK | os.X_OK):
        log = Path("/var/log/letsencrypt/letsencrypt.log")
        readable_log = str(log) if os.access(log, os.R_OK) else None
        stores.append(CertbotStore(str(certbot), readable_log))
        watched.append(f"certbot {certbot}" + (f" and its log {log}" if readable_log else ""))
    dehydrated = Path("/var/lib/dehydrated/certs")
    if os.access(dehydrated, os.R_OK | os.X_OK):
        stores.append(DehydratedStore(str(dehydrated)))
        watched.append(f"dehydrated {dehydrated}")
    if not stores and not authorities:
        places = ", ".join((str(lacme_base), "/etc/letsencrypt/live", "/var/lib/dehydrated/certs"))
        raise ConfigError(
            "",
            "no configuration file found (--config, $LACME_WATCH_CONFIG, ./lacme-watch.yaml,"
            f" {SYSTEM_CONFIG}) and none of the default stores is readable ({places})",
        )
    from .sinks.log import LogSink

    config = Config(
        path=None,
        state_dir=default_state_dir(),
        host=socket.gethostname(),
        stores=tuple(stores),
        authorities=tuple(authorities),
        sinks=(SinkRoute(sink=LogSink("log")),),
    )
    return config, watched
