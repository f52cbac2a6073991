"""The `ari:` configuration: the global section and each store's own `ari:` key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..options import Options

DEFAULT_MAX_REQUESTS = 100
DEFAULT_INTERVAL = timedelta(hours=12)
"""At most twice a day per certificate when the CA sends no Retry-After."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreAri:
    """A store's `ari:`: false turns it off for that store; `directory` names its CA."""

    enabled: bool = True
    directory: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AriSettings:
    """`ari: false`, or `ari:` with max_requests_per_pass, concurrency, timeout, interval,
    ca_bundle."""

    enabled: bool = True
    max_requests_per_pass: int = DEFAULT_MAX_REQUESTS
    concurrency: int = 4
    timeout: timedelta = timedelta(seconds=10)
    interval: timedelta = DEFAULT_INTERVAL
    ca_bundle: str | None = None
    stores: Mapping[str, StoreAri] = field(default_factory=dict)
    """Per source id."""

    def for_store(self, source: str) -> StoreAri:
        return self.stores.get(source, StoreAri())


def _url(options: Options, key: str) -> str | None:
    node = options.node(key)
    if node is None:
        return None
    value = node.value
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise node.unexpected("an ACME directory URL (https://...)")
    if not urlsplit(value).hostname:
        raise node.unexpected("an ACME directory URL with a host")
    return value


def store_ari(store: Options) -> StoreAri | None:
    """A store's `ari:` key: `false`, `true`, or `{directory: URL}` (None when absent)."""
    node = store.node("ari")
    if node is None:
        return None
    if isinstance(node.value, bool):
        return StoreAri(enabled=node.value)
    options = store.section("ari")
    enabled = options.boolean("enabled", True)
    directory = _url(options, "directory")
    options.finish()
    return StoreAri(enabled=enabled, directory=directory)


def ari_settings(root: Options, stores: Mapping[str, StoreAri]) -> AriSettings:
    """The top-level `ari:` section (absent: on, with the defaults)."""
    node = root.node("ari")
    if node is None:
        return AriSettings(stores=stores)
    if isinstance(node.value, bool):
        return AriSettings(enabled=node.value, stores=stores)
    options = root.section("ari")
    if "directory" in options:
        where = options.node("directory")
        raise ConfigError(
            str(where.where if where else options.where),
            "ari.directory belongs on a store (stores[N].ari.directory): renewal"
            " information is asked only of the CA a store's certificates came from",
        )
    settings = AriSettings(
        enabled=options.boolean("enabled", True),
        max_requests_per_pass=options.integer(
            "max_requests_per_pass", DEFAULT_MAX_REQUESTS, minimum=0
        ),
        concurrency=options.integer("concurrency", 4, minimum=1),
        timeout=options.duration("timeout", timedelta(seconds=10)),
        interval=options.duration("interval", DEFAULT_INTERVAL),
        ca_bundle=options.path("ca_bundle", must_exist=True) if "ca_bundle" in options else None,
        stores=stores,
    )
    options.finish()
    return settings
