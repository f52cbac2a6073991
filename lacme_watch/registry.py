"""Finds store, authority and sink types by their YAML `type:` through entry points.

Built-ins are registered in pyproject.toml exactly as a third-party package would
register its own; they are also listed here so a source checkout works uninstalled.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError

GROUPS = {
    "stores": "lacme_watch.stores",
    "authorities": "lacme_watch.authorities",
    "sinks": "lacme_watch.sinks",
}

_BUILT_IN = {
    "lacme_watch.stores": {
        "lacme": "lacme_watch.stores.lacme:LacmeStore",
        "pem": "lacme_watch.stores.pem:PemStore",
        "certbot": "lacme_watch.stores.certbot:CertbotStore",
        "dehydrated": "lacme_watch.stores.dehydrated:DehydratedStore",
        "tls": "lacme_watch.stores.tls:TlsStore",
    },
    "lacme_watch.authorities": {
        "lacme": "lacme_watch.authorities.lacme:LacmeAuthority",
        "easyrsa": "lacme_watch.authorities.easyrsa:EasyRsaAuthority",
    },
    "lacme_watch.sinks": {
        "log": "lacme_watch.sinks.log:LogSink",
        "email": "lacme_watch.sinks.email:EmailSink",
        "shell": "lacme_watch.sinks.shell:ShellSink",
        "webhook": "lacme_watch.sinks.webhook:WebhookSink",
    },
}


def available(group: str) -> dict[str, str]:
    """type name -> "module:attribute" for one entry-point group."""
    found = {entry.name: entry.value for entry in entry_points(group=group)}
    return {**found, **_BUILT_IN.get(group, {})}


def lookup(group: str, name: str, where: str) -> Any:
    """The class registered under `name`; an unknown name is a configuration error."""
    known = available(group)
    target = known.get(name)
    if target is None:
        raise ConfigError(where, f"unknown type {name!r}; known: {', '.join(sorted(known))}")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(where, f"type {name!r} cannot be loaded: {exc}") from exc
    return getattr(module, attribute)
