"""The two seams plugin authors implement (a Source reads, a Sink delivers), and how
a YAML `type:` finds its class.

Both are built from their YAML mapping by `from_options`, and are unaware of each other.
Types are found through entry points; built-ins are registered in pyproject.toml exactly
as a third-party package would register its own, and are also listed here so a source
checkout works uninstalled.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

from .errors import ConfigError

if TYPE_CHECKING:
    from .events.cloudevents import Envelope
    from .observations import Listing, ScanResult
    from .options import Options
    from .reading.reader import CertificateReader


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


class ListedSource(Source, Protocol):
    """A file store that can name what a scan would read without reading it, and read
    just some of it: a pass reads a large one in slices (slices.py), and only what
    changed since the last pass (rescans.py). Built-in: pem and lacme."""

    def listing(self, reader: CertificateReader) -> Listing:
        """Every entry (path, is a directory) a scan reads, and what the store says as a
        whole (its roots' problems, issuance history); nothing is read yet."""
        ...

    def rescan(
        self, reader: CertificateReader, changed: Sequence[tuple[str, bool]]
    ) -> ScanResult | None:
        """Only these entries (their ScanResult's `covered` says which lineages it
        speaks for); None when only a full scan can tell. Never called with none: a
        pass where nothing changed but certificates came due reads nothing (scans.py)."""
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
        "lacme": "lacme_watch.sources.stores.lacme:LacmeStore",
        "pem": "lacme_watch.sources.stores.pem:PemStore",
        "certbot": "lacme_watch.sources.stores.certbot:CertbotStore",
        "dehydrated": "lacme_watch.sources.stores.dehydrated:DehydratedStore",
        "tls": "lacme_watch.sources.stores.tls:TlsStore",
        "crl": "lacme_watch.sources.stores.crl:CrlStore",
    },
    "lacme_watch.authorities": {
        "lacme": "lacme_watch.sources.authorities.lacme:LacmeAuthority",
        "easyrsa": "lacme_watch.sources.authorities.easyrsa:EasyRsaAuthority",
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
    if _only_built_ins():
        return {name: found[0] for name, found in targets.items()}
    from importlib.metadata import entry_points  # read only when a plugin may be installed

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


def _only_built_ins() -> bool:
    """_installed_only_built_ins() for the sys.path of now, read again when an entry of it
    changes (installing or removing a distribution changes its directory's mtime)."""
    stamps: list[tuple[str, int]] = []
    for entry in sys.path:
        directory = os.path.abspath(entry or ".")  # "" is the working directory of now
        try:
            stamps.append((directory, os.stat(directory).st_mtime_ns))
        except OSError:
            stamps.append((directory, -1))
    return _installed_only_built_ins(tuple(stamps))


@functools.lru_cache(maxsize=8)
def _installed_only_built_ins(stamps: tuple[tuple[str, int], ...]) -> bool:
    """True when no distribution on sys.path registers a lacme_watch entry point other
    than a built-in's own line (lacme-watch's installed entry_points.txt): entry_points()
    would then add nothing to BUILT_IN, and importlib.metadata, which imports email,
    zipfile and csv and reads every distribution's metadata, is not needed. Anything
    this cannot read as plainly as importlib.metadata would (a zip on sys.path, a finder
    of its own, an unusual line) answers False, and the full lookup decides."""
    from importlib.machinery import PathFinder

    if any(
        finder is not PathFinder and hasattr(finder, "find_distributions")
        for finder in sys.meta_path
    ):
        return False
    for directory, _ in stamps:
        if not os.path.isdir(directory):
            if os.path.exists(directory):
                return False  # a zip file: importlib.metadata looks inside it
            continue
        try:
            names = os.listdir(directory)
        except OSError:
            continue  # importlib.metadata cannot list it either
        for name in names:
            if name.lower().endswith((".dist-info", ".egg-info")) and not _registers_built_ins(
                os.path.join(directory, name, "entry_points.txt")
            ):
                return False
    return True


def _registers_built_ins(path: str) -> bool:
    """Whether an entry_points.txt (the INI-style file of the PyPA entry points
    specification) registers nothing in our groups but BUILT_IN's exact lines."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return True  # what importlib.metadata reads as no entry points (most distributions)
    except (OSError, UnicodeDecodeError):
        return False
    if "lacme_watch." not in text:
        return True
    group: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
            continue
        if group is None or not group.startswith("lacme_watch"):
            continue
        name, equals, value = line.partition("=")
        if not equals or BUILT_IN.get(group, {}).get(name.strip()) != value.strip():
            return False
    return True
