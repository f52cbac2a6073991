"""The configuration file, read once into frozen objects with file:line errors.

Search order: --config, $LACME_WATCH_CONFIG, ./lacme-watch.yaml,
/etc/lacme-watch/config.yaml. With none found, lacme-watch watches the default
places of the tools it knows (zero configuration).

`model` holds the frozen values, `sections` one parser per section, `discovery` the
search order and zero configuration, `cache` the parsed file kept in state_dir;
`build()` here joins them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from ..ari.settings import StoreAri, ari_settings, store_ari
from ..errors import ConfigError
from ..options import Node, Options, parse_bytes, read_config
from ..plugins import GROUPS, Source, lookup
from ..reading.guarded import DEFAULT_MAX_FILE_SIZE
from . import cache, sections
from .discovery import (
    LOCAL_CONFIG,
    SYSTEM_CONFIG,
    default_state_dir,
    find_config,
    hostname,
    zero_config,
)
from .model import DEFAULT_SCAN, Config, MetricsOptions, Schedule, SourceRenewal
from .routes import SinkRoute

__all__ = [
    "DEFAULT_SCAN",
    "LOCAL_CONFIG",
    "SYSTEM_CONFIG",
    "Config",
    "ConfigError",
    "MetricsOptions",
    "Options",
    "Schedule",
    "SinkRoute",
    "SourceRenewal",
    "build",
    "default_state_dir",
    "find_config",
    "load",
    "load_keeping",
    "zero_config",
]


def load(path: Path) -> Config:
    """Read and validate a configuration file (parsed, or as its cache in state_dir holds
    it parsed: config/cache.py)."""
    config, keep = load_keeping(path)
    keep()
    return config


def load_keeping(path: Path) -> tuple[Config, Callable[[], None]]:
    """load(), and what keeps the parsed file in state_dir for the next start: call it
    once state_dir exists (`watch` makes it; nothing to do when the cache held it)."""
    if not path.exists():
        raise ConfigError(str(path), "no such configuration file")
    raw = read_config(path)
    tree = cache.lookup(raw, str(path))
    if tree is not None:
        return build(tree, str(path)), _kept
    tree = parse_bytes(raw, str(path))
    config = build(tree, str(path))
    return config, functools.partial(cache.store, raw, tree, config.state_dir)


def _kept() -> None:
    """The cache held this file: nothing to write."""


def build(root: Node, file: str) -> Config:
    """Validate a parsed YAML document into a Config."""
    warnings: list[str] = []
    options = Options.of(root, warnings)
    state_dir = (
        Path(options.path("state_dir"))
        if options.node("state_dir") is not None
        else default_state_dir()
    )
    host = options.string("host", hostname())
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
    policy, chain = sections.expiry(
        options.section("expiry"), sections.ignored_changes(options.section("changes"))
    )
    schedule = sections.schedule(options.section("schedule"))
    sinks = sections.sinks(options)
    retry = sections.retry(options.section("delivery"))
    heartbeat = options.boolean("heartbeat", False)
    metrics = sections.metrics(options.section("metrics"))
    spool = options.path("spool") if options.node("spool") is not None else None
    rate_limits = sections.rate_limits(options.section("rate_limits"))
    trust = options.paths("trust") if options.node("trust") is not None else ()
    trust_node = options.node("trust")  # its line, not the top of the file
    trust_where = trust_node.where if trust_node else options.where.child("trust")
    warnings += [f"{trust_where}: {p} does not exist" for p in trust if not os.path.isfile(p)]
    revocation = sections.revocation(options.section("revocation"))
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
    settings = sections.source_renewal(options)
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


def _reject_duplicates(options: Options, sources: tuple[Source, ...]) -> None:
    seen: set[str] = set()
    for source in sources:
        if source.id in seen:
            raise ConfigError(str(options.where), f"{source.id} is configured twice")
        seen.add(source.id)
