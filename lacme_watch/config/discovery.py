"""Where the configuration file is found, where state lives by default, and what is
watched with no file at all (zero configuration)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from ..plugins import Source
from .model import Config
from .routes import SinkRoute

SYSTEM_CONFIG = Path("/etc/lacme-watch/config.yaml")
LOCAL_CONFIG = Path("lacme-watch.yaml")


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


def hostname() -> str:
    """The default `host`: what socket.gethostname() returns (on Linux, glibc's
    gethostname() is uname()'s nodename), without importing socket (~1.5 ms)."""
    return os.uname().nodename


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """/var/lib/lacme-watch for root; else $XDG_STATE_HOME or ~/.local/state."""
    environ = os.environ if environ is None else environ
    if os.geteuid() == 0:
        return Path("/var/lib/lacme-watch")
    base = environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "lacme-watch"


def zero_config(home: Path | None = None) -> tuple[Config, list[str]]:
    """Watch the default places of the tools lacme-watch knows that exist and are readable.

    Returns the configuration and the places watched (the CLI says them on stderr).
    """
    from ..sources.authorities.lacme import LacmeAuthority
    from ..sources.stores.certbot import CertbotStore
    from ..sources.stores.dehydrated import DehydratedStore
    from ..sources.stores.lacme import LacmeStore

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
    from ..sinks.log import LogSink

    config = Config(
        path=None,
        state_dir=default_state_dir(),
        host=hostname(),
        stores=tuple(stores),
        authorities=tuple(authorities),
        sinks=(SinkRoute(sink=LogSink("log")),),
    )
    return config, watched
