"""The command line's grammar: every command, option and help text, parsed by argparse.

cli.py runs what is parsed: each command sets `command` (e.g. "systemd install"), and
cli.py maps it to its handler. Usage errors raise UsageError rather than exiting, so
`check` can report them as UNKNOWN (exit 3) as monitoring plugins must.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from .. import events as _events
from ..events.cloudevents import parse_time
from ..options import parse_duration

if TYPE_CHECKING:
    from .check import Limit


class UsageError(Exception):
    """A command-line mistake; main() decides the exit status (check's is UNKNOWN)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting 2, so `check` can exit 3."""

    building = False
    """While build_parser() runs: argparse asks for a formatter at every add_argument
    (to check a metavar) and a formatter measures the terminal, which imports shutil
    and with it zlib, bz2 and lzma (~2 ms of every cron start). Help and usage
    messages, formatted after the build, measure it as argparse always does."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        if _Parser.building:
            return argparse.HelpFormatter(prog=self.prog, width=_BUILD_WIDTH)
        return super()._get_formatter()


_BUILD_WIDTH = 78
"""argparse's own default (80 columns, less 2): what the build's formatters use."""


_GLOBAL_VALUES = ("--config", "--now", "--log-level", "--log-format")


def command_named(arguments: Sequence[str]) -> str | None:
    """The subcommand named on a command line, found without argparse (which failed)."""
    items = iter(arguments)
    for item in items:
        if item in _GLOBAL_VALUES:
            next(items, None)
        elif not item.startswith("-"):
            return item
    return None


def _help_before_command(arguments: Sequence[str]) -> bool:
    """`-h` or `--help` (or a prefix argparse takes for it) before the subcommand: the
    top-level help, which must list every command, not the watch-only grammar's one."""
    items = iter(arguments)
    for item in items:
        if item in _GLOBAL_VALUES:
            next(items, None)
        elif not item.startswith("-"):
            return False
        elif item.startswith("-h") or (len(item) > 2 and "--help".startswith(item)):
            return True
    return False


def _instant(text: str) -> datetime:
    try:
        moment = parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if not 1970 <= moment.year <= 9000:  # room for the date arithmetic of thresholds
        raise argparse.ArgumentTypeError(f"{text!r}: give a time between 1970 and 9000")
    return moment


def _duration(text: str) -> timedelta:
    found = parse_duration(text)
    if found is None or found <= timedelta(0):
        raise argparse.ArgumentTypeError(f"expected a duration like 12h or 1d, got {text!r}")
    return found


def _limit(text: str) -> Limit:
    from .check import limit  # check's module loads only when --warning/--critical is given

    return limit(text)


def parse_arguments(
    version: str, arguments: Sequence[str]
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and what it parsed. `watch` (what cron starts) is parsed by a parser
    that knows only it (the other commands' grammar is ~2 ms of every start): what it
    accepts, the whole grammar reads the same way, since the first positional picks
    the subcommand in both; anything it refuses is parsed again by the whole grammar,
    so errors and their usage lines are the whole grammar's."""
    if command_named(arguments) == "watch" and not _help_before_command(arguments):
        parser = build_parser(version, watch_only=True)
        try:
            return parser, parser.parse_args(arguments)
        except UsageError:
            pass
    parser = build_parser(version)
    return parser, parser.parse_args(arguments)


def build_parser(version: str, *, watch_only: bool = False) -> argparse.ArgumentParser:
    _Parser.building = True
    try:
        return _build(version, watch_only)
    finally:
        _Parser.building = False


def _build(version: str, watch_only: bool) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lacme-watch",
        description="Watch certificate stores and CAs; turn what changed into typed events.",
    )
    parser.add_argument("--version", action="version", version=f"lacme-watch {version}")
    parser.add_argument("--config", metavar="PATH", help="configuration file (see README)")
    parser.add_argument(
        "--now",
        type=_instant,
        metavar="ISO8601",
        help="evaluate as if the current time were this instant (UTC if no offset)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="log verbosity (default: warning; the daemon's pass summaries are info)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text: rich on a terminal, plain lines otherwise; json: one object per line",
    )
    commands = parser.add_subparsers(metavar="COMMAND")

    watch = commands.add_parser("watch", help="run the daemon, or one pass with --once")
    watch.add_argument("--once", action="store_true", help="run one full pass and exit")
    watch.set_defaults(command="watch")
    if watch_only:
        return parser

    status = commands.add_parser("status", help="inventory: every certificate and its state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(command="status")

    events = commands.add_parser("events", help="recent events and their delivery per sink")
    events.add_argument("--json", action="store_true", help="machine-readable output")
    events.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    events.add_argument(
        "--undelivered",
        "--pending",
        action="store_true",
        help="only events some sink has not delivered (pending, retrying, rejected, expired)",
    )
    events.set_defaults(command="events")

    emit = commands.add_parser(
        "emit",
        help="record an external event (e.g. from an ACME client hook) and deliver it",
        description="Fields are given as --field value, e.g. --domain example.com"
        " --challenge-type http-01 --error '...'. Lists are space- or comma-separated.",
    )
    emit.add_argument(
        "--json", metavar="FILE", help="a whole CloudEvent from FILE ('-' for stdin), id kept"
    )
    emit.add_argument("kind", nargs="?", choices=sorted(_events.KINDS), metavar="KIND")
    emit.add_argument("extra", nargs=argparse.REMAINDER, metavar="--FIELD VALUE")
    emit.set_defaults(command="emit")

    config = commands.add_parser("config", help="configuration commands")
    config_commands = config.add_subparsers(metavar="ACTION")
    check = config_commands.add_parser("check", help="validate the configuration file")
    check.set_defaults(command="config check")

    check = commands.add_parser(
        "check",
        help="one status line for Nagios/Icinga/Sensu: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
    )
    check.add_argument(
        "--warning",
        type=_limit,
        help="days (14d) or %% of life (33%%); default 14d, or 33%% for lifetimes under 28 days",
    )
    check.add_argument(
        "--critical",
        type=_limit,
        help="days (7d) or %% of life (10%%); default 7d, or 10%% for lifetimes under 14 days",
    )
    check.add_argument(
        "--ari-grace",
        type=_duration,
        metavar="DURATION",
        help="WARNING when the CA's renewal window (ARI) has been open this long (e.g. 1d)"
        " and the certificate is not renewed",
    )
    check.set_defaults(command="check")

    sinks = commands.add_parser("sinks", help="sink commands")
    sinks_commands = sinks.add_subparsers(metavar="ACTION")
    sinks_test = sinks_commands.add_parser(
        "test", help="send a clearly marked test event through one sink now"
    )
    sinks_test.add_argument("name", help="the sink's name (see `config check`)")
    sinks_test.set_defaults(command="sinks test")

    systemd = commands.add_parser("systemd", help="systemd commands")
    systemd_commands = systemd.add_subparsers(metavar="ACTION")
    systemd_install = systemd_commands.add_parser(
        "install",
        help="write the systemd units for this install and configuration",
        description="Writes lacme-watch.service (or, with --timer, lacme-watch-once.service"
        " and lacme-watch.timer) with ExecStart naming this lacme-watch and --config,"
        " ReadWritePaths for state_dir, spool, metrics textfile and log files, and"
        " ReadOnlyPaths for the watched stores.",
    )
    systemd_install.add_argument(
        "--timer", action="store_true", help="the oneshot + timer pair instead of the daemon"
    )
    systemd_install.add_argument(
        "--root", metavar="DIR", default="/", help="install under this root (default /)"
    )
    systemd_install.add_argument(
        "--unit-dir",
        metavar="DIR",
        default="/etc/systemd/system",
        help="where units go, under --root (default /etc/systemd/system)",
    )
    systemd_install.add_argument(
        "--print", action="store_true", help="print the units instead of writing them"
    )
    systemd_install.set_defaults(command="systemd install")

    demo = commands.add_parser("demo", help="show every event kind in a throw-away sandbox")
    demo.add_argument("--keep", metavar="DIR", help="build the sandbox here and keep it")
    demo.set_defaults(command="demo")
    return parser
