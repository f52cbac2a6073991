"""`lacme-watch systemd install`: the shipped systemd units, made right for this install.

The units in the repository's `systemd/` (shipped inside the wheel as
`lacme_watch/units/`) name `/usr/local/bin/lacme-watch` and the stock paths. A venv or
pipx install puts the script elsewhere, and `ProtectSystem=strict` makes every path
read-only that is not declared. This writes the units with the ExecStart of the
running lacme-watch and the configuration file in use, `ReadWritePaths=` for what the
configuration writes (state_dir, spool, metrics textfile, JSON log file) and
`ReadOnlyPaths=` for the stores it reads.
"""

from __future__ import annotations

import glob
import os
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import ConfigError

DAEMON = ("lacme-watch.service",)
TIMER = ("lacme-watch-once.service", "lacme-watch.timer")
STOCK_EXEC = "/usr/local/bin/lacme-watch"
STOCK_CONFIG = "/etc/lacme-watch/config.yaml"
STOCK_STATE = Path("/var/lib/lacme-watch")
_HOMES = ("/home", "/root", "/run/user")


@dataclass(frozen=True, slots=True, kw_only=True)
class Unit:
    name: str
    text: str


def templates() -> Path:
    """The shipped units: inside the wheel, or the checkout's systemd/ (editable install)."""
    package = Path(__file__).parents[1]
    for candidate in (package / "units", package.parent / "systemd"):
        if (candidate / DAEMON[0]).is_file():
            return candidate
    raise ConfigError("systemd install", "the unit templates are missing from this install")


def executable() -> list[str]:
    """How systemd should start this very lacme-watch: its script, or `python -m`."""
    script = Path(sys.argv[0])
    if script.name == "lacme-watch" and script.is_file():
        return [str(script.absolute())]
    return [sys.executable, "-m", "lacme_watch"]


def _programs() -> list[str]:
    """Where the started program and its interpreter really live (pipx as root puts both
    under /root, which ProtectHome=yes would hide)."""
    found = [*executable()[:1], sys.executable]
    return [str(Path(path).resolve()) for path in found] + found


def render(config: Config, config_path: Path, *, timer: bool) -> list[Unit]:
    """The units for this configuration (the daemon, or the oneshot and its timer)."""
    command = shlex.join([*executable(), "--config", str(config_path)])
    writable = " ".join(f"-{path}" for path in writable_paths(config))
    readable = " ".join(f"-{path}" for path in readable_paths(config))
    in_home = any(path.startswith(_HOMES) for path in [*readable_paths(config), *_programs()])
    units = []
    for name in TIMER if timer else DAEMON:
        lines = []
        for line in (templates() / name).read_text().splitlines():
            if line.startswith("ExecStart="):
                line = line.replace(f"{STOCK_EXEC} --config {STOCK_CONFIG}", command)
            elif line.startswith("Environment=LACME_WATCH_CONFIG="):
                line = f"Environment=LACME_WATCH_CONFIG={config_path}"
            elif line.startswith("ReadOnlyPaths=") and readable:
                line = f"ReadOnlyPaths={readable}"
            elif line == "ProtectHome=yes" and in_home:
                line = "ProtectHome=read-only"  # a store or the program in a home directory
            lines.append(line)
            if line.startswith("LogsDirectory=") and writable:
                lines.append(f"ReadWritePaths={writable}")
        units.append(Unit(name=name, text="\n".join(lines) + "\n"))
    return units


def writable_paths(config: Config) -> list[str]:
    """What lacme-watch writes besides its StateDirectory: state_dir if elsewhere, the
    spool, the metrics textfile's directory, each JSON log sink's directory."""
    found = []
    if config.state_dir != STOCK_STATE:
        found.append(str(config.state_dir))
    if config.spool:
        found.append(config.spool)
    if config.metrics.textfile:
        found.append(os.path.dirname(os.path.abspath(config.metrics.textfile)))
    for route in config.sinks:
        path = getattr(route.sink, "path", None)
        if isinstance(path, str):
            found.append(os.path.dirname(os.path.abspath(path)))
    return _unique(found)


def readable_paths(config: Config) -> list[str]:
    """The directories of the watched stores and authorities (a glob's fixed prefix)."""
    found = []
    for source in config.sources:
        path = getattr(source, "path", None)
        if isinstance(path, str):
            found.append(os.path.abspath(path))
        for pattern in getattr(source, "patterns", ()):
            fixed = pattern.split("*")[0].split("?")[0].split("[")[0]
            found.append(fixed if glob.escape(pattern) == pattern else os.path.dirname(fixed))
    return _unique(path.rstrip("/") or "/" for path in found)


def install(units: Iterable[Unit], directory: Path) -> list[Path]:
    """Write each unit (0644) into `directory`, created if missing."""
    written = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for unit in units:
            path = directory / unit.name
            path.write_text(unit.text)
            path.chmod(0o644)
            written.append(path)
    except OSError as exc:
        raise ConfigError("systemd install", f"cannot write {directory}: {exc.strerror}") from exc
    return written


def missing_lines(config: Config) -> list[str]:
    """ReadWritePaths= opens only directories that exist: name the ones that do not."""
    return [
        f"create {path} before starting: it must exist"
        for path in writable_paths(config)
        if not os.path.isdir(path)
    ]


def _unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))
