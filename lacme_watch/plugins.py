"""The two seams plugin authors implement (a Source reads, a Sink delivers), and how
a YAML `type:` finds its class.

Both are built from their YAML mapping by `from_options`, and are unaware of each other.
Types are found through entry points; built-ins are registered in pyproject.toml exactly
as a third-party package would register its own, and are also listed here so a source
checkout works uninstalled.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol, Self

from .cloudevents import Envelope
from .errors import ConfigError
from .observations import ScanResult
from .options import Options
from .reader import CertificateReader


class Source(Protocol):
    """A store or authority: scan() reports what is there now, and never judges."""

    id: str
    """Stable identity in the state database, e.g. `lacme:/etc/lacme`."""

    @classmethod
    def from_options(cls, options: Options) -> Self: ...

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        """What the source holds now. `cursor` is what its last ScanResult.cursor said
        (None on its first pass); raise SourceError when it cannot be read at all."""
        ...


class Sink(Protocol):
    """Delivers events to a place where an operator will see them.

    deliver() gets one pass's due events as a batch; it returns or raises SinkError.
    """

    name: str

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self: ...

    def deliver(self, events: Sequence[Envelope]) -> None: ...


GROUPS = {
    "stores": "lacme_watch.stores",
    "authorities": "lacme_watch.authorities",
    "sinks": "lacme_watch.sinks",
}

BUILT_IN: dict[str, dict[str, str]] = {
    "lacme_watch.stores": {
        "lacme": "lacme_watch.stores.lacme:LacmeStore",
        "pem": "lacme_watch.stores.pem:PemStore",
        "certbot": "lacme_watch.stores.certbot:CertbotStore",
        "dehydrated": "lacme_watch.stores.dehydrated:DehydratedStore",
        "tls": "lacme_watch.stores.tls:TlsStore",
        "crl": "lacme_watch.stores.crl:CrlStore",
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
"""The same table as pyproject.toml's entry points (a test holds them equal)."""

_PROTOCOLS = {
    "lacme_watch.stores": ("store", ("from_options", "scan")),
    "lacme_watch.authorities": ("authority", ("from_options", "scan")),
    "lacme_watch.sinks": ("sink", ("from_options", "deliver")),
}


def available(group: str) -> dict[str, str]:
    """type name -> "module:attribute" for one entry-point group.

    A name registered with two different targets (a plugin reusing a built-in's name,
    or two plugins one name) maps to every target, joined by " | ": lookup() refuses it.
    """
    targets: dict[str, list[str]] = {
        name: [target] for name, target in BUILT_IN.get(group, {}).items()
    }
    from importlib.metadata import entry_points  # read only when a config names a type

    for entry in entry_points(group=group):
        found = targets.setdefault(entry.name, [])
        if entry.value not in found:
            found.append(entry.value)
    return {name: " | ".join(found) for name, found in targets.items()}


def lookup(group: str, name: str, where: str) -> Any:
    """The class registered under `name`, checked against its protocol.

    An unknown name, a name two packages claim, a target that cannot be imported or
    a class without the protocol's methods is a configuration error at `where`.
    """
    known = available(group)
    target = known.get(name)
    if target is None:
        raise ConfigError(where, f"unknown type {name!r}; known: {', '.join(sorted(known))}")
    if " | " in target:
        raise ConfigError(
            where,
            f"type {name!r} is registered more than once ({target});"
            " uninstall one of the packages, or rename its entry point",
        )
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(where, f"type {name!r} cannot be loaded: {exc}") from exc
    role, methods = _PROTOCOLS.get(group, ("plugin", ()))
    missing = [method for method in methods if not callable(getattr(cls, method, None))]
    if missing:
        raise ConfigError(
            where,
            f"type {name!r} ({target}) is not a {role} plugin:"
            f" it has no {' and no '.join(missing)}()",
        )
    return cls
