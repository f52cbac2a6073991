"""`lacme-watch`: argparse + rich, the commands.

Output for people is printed here (the demo prints its own walk-through). `now` for a
pass comes from here too: `--now`, or the real clock; detection itself never reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__, logconfig
from . import check as check_line
from .cloudevents import format_time, from_json, parse_time, to_cloudevent, wrap
from .config import Config, find_config, load, zero_config
from .detect import EXPIRED, days_remaining
from .errors import ConfigError, LacmeWatchError, SinkError
from .events import EVENT_TYPES
from .ingest import event_from_arguments, record_envelopes, test_event
from .lock import StateLock
from .metrics import Metrics
from .passes import PassReport, pass_metrics, run_pass, scan_sources
from .statedb import StateStore

Handler = Callable[[argparse.Namespace, "Io"], int]


class Io:
    """Where the CLI writes: results to stdout, diagnostics to stderr."""

    def __init__(self) -> None:
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        return sys.stdout.isatty()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lacme-watch`; return the process exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)  # argparse exits 2 on usage errors
    io = Io()
    logconfig.configure(args.log_level, args.log_format)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    try:
        handler: Handler = args.handler
        return handler(args, io)
    except LacmeWatchError as exc:
        io.err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return exc.exit_code


def _instant(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lacme-watch",
        description="Watch certificate stores and CAs; turn what changed into typed events.",
    )
    parser.add_argument("--version", action="version", version=f"lacme-watch {__version__}")
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
    watch.set_defaults(handler=_watch)

    status = commands.add_parser("status", help="inventory: every certificate and its state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    events = commands.add_parser("events", help="recent events and their delivery per sink")
    events.add_argument("--json", action="store_true", help="machine-readable output")
    events.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    events.add_argument("--pending", action="store_true", help="only events not yet delivered")
    events.set_defaults(handler=_events)

    emit = commands.add_parser(
        "emit",
        help="record an external event (e.g. from an ACME client hook) and deliver it",
        description="Fields are given as --field value, e.g. --domain example.com"
        " --challenge-type http-01 --error '...'. Lists are space- or comma-separated.",
    )
    emit.add_argument(
        "--json", metavar="FILE", help="a whole CloudEvent from FILE ('-' for stdin), id kept"
    )
    emit.add_argument("kind", nargs="?", choices=sorted(EVENT_TYPES), metavar="KIND")
    emit.add_argument("extra", nargs=argparse.REMAINDER, metavar="--FIELD VALUE")
    emit.set_defaults(handler=_emit)

    config = commands.add_parser("config", help="configuration commands")
    config_commands = config.add_subparsers(metavar="ACTION")
    check = config_commands.add_parser("check", help="validate the configuration file")
    check.set_defaults(handler=_config_check)

    check = commands.add_parser(
        "check",
        help="one status line for Nagios/Icinga/Sensu: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
    )
    check.add_argument(
        "--warning", default="14d", type=check_line.limit, help="days (14d) or %% of life (33%%)"
    )
    check.add_argument(
        "--critical", default="7d", type=check_line.limit, help="days (7d) or %% of life (10%%)"
    )
    check.set_defaults(handler=_check)

    sinks = commands.add_parser("sinks", help="sink commands")
    sinks_commands = sinks.add_subparsers(metavar="ACTION")
    sinks_test = sinks_commands.add_parser(
        "test", help="send a clearly marked test event through one sink now"
    )
    sinks_test.add_argument("name", help="the sink's name (see `config check`)")
    sinks_test.set_defaults(handler=_sinks_test)

    demo = commands.add_parser("demo", help="show every event kind in a throw-away sandbox")
    demo.add_argument("--keep", metavar="DIR", help="build the sandbox here and keep it")
    demo.set_defaults(handler=_demo)
    return parser


def _clock(args: argparse.Namespace) -> datetime:
    now: datetime | None = args.now
    return now if now is not None else datetime.now(UTC)


def _config(args: argparse.Namespace, io: Io) -> Config:
    path = find_config(args.config)
    if path is None:
        config, watched = zero_config()
        io.err.print("lacme-watch: no configuration file; watching " + "; ".join(watched))
        return config
    config = load(path)
    for warning in config.warnings:
        io.err.print(f"[yellow]warning:[/] {escape(warning)}")
    return config


def _watch(args: argparse.Namespace, io: Io) -> int:
    config = _config(args, io)
    if not args.once:
        from .daemon import run_daemon

        return run_daemon(config, lambda: _config(args, io), now=args.now)
    with StateLock(config.state_dir), StateStore(config.state_dir) as store:
        report = run_pass(config, store, _clock(args))
        if config.metrics.textfile:
            metrics = Metrics()
            metrics.update(pass_metrics(report, config, store))
            metrics.write_textfile(config.metrics.textfile)
    _print_pass(report, io)
    return report.exit_code


def _print_pass(report: PassReport, io: Io) -> None:
    """Quiet on success when stdout is not a terminal (cron mails whatever a job prints)."""
    if not report.ok:
        for source, problem in report.problems:
            detail = f" ({problem.detail})" if problem.detail else ""
            io.err.print(f"lacme-watch: {source}: {problem.path}: {problem.reason}{detail}")
        for sink, reason in report.delivery.failures.items():
            io.err.print(f"lacme-watch: sink {sink}: {reason} (queued; will retry)")
        for path, reason in report.spool_rejected:
            io.err.print(f"lacme-watch: spool: {path}: not a valid event ({reason}); set aside")
        for row in report.delivery.rejected:
            io.err.print(
                f"lacme-watch: sink {row.sink}: refused {row.envelope.event.summary()} for good"
            )
        for row in report.delivery.expired:
            io.err.print(
                f"lacme-watch: sink {row.sink}: gave up on {row.envelope.event.summary()}"
                f" after {row.attempts} attempts: {row.last_error}"
            )
    if io.interactive:
        io.out.print(
            f"{report.certificates} certificates, {len(report.envelopes)} new events,"
            f" {report.delivery.delivered} deliveries, {len(report.problems)} problems"
        )


def _inventory(config: Config, now: datetime) -> tuple[PassReport, dict[tuple[str, str], int]]:
    """Scan every source as a pass would, and write nothing (status, check).

    Also returns the outbox's counts per (sink, state), for `status`.
    """
    with StateStore(config.state_dir) as store:
        return PassReport.of(scan_sources(config, store, now), now), store.outbox_counts()


def _status(args: argparse.Namespace, io: Io) -> int:
    config = _config(args, io)
    now = _clock(args)
    report, outbox = _inventory(config, now)
    rows = []
    for source, observation in report.inventory:
        facts = observation.certificate
        crossed = config.policy.crossed(facts.not_before, facts.not_after, now)
        state = "expired" if crossed[:1] == [EXPIRED] else "expiring" if crossed else "ok"
        rows.append(
            {
                "name": observation.domain,
                "store": source,
                "lineage": observation.lineage,
                "role": observation.role,
                "names": list(observation.domains),
                "not_after": format_time(facts.not_after),
                "days_left": days_remaining(facts.not_after, now),
                "state": state,
                "threshold": crossed[0] if crossed else None,
                "path": observation.path,
                "fingerprint": facts.fingerprint,
            }
        )
    rows.sort(key=lambda row: (str(row["not_after"]), str(row["name"])))
    problems = [
        {"store": source, "path": p.path, "reason": p.reason, "detail": p.detail}
        for source, p in report.problems
    ]
    deliveries: dict[str, dict[str, int]] = {}
    for (sink, state), count in sorted(outbox.items()):
        deliveries.setdefault(sink, {})[state] = count
    if args.json:
        io.out.print_json(
            json.dumps({"certificates": rows, "problems": problems, "deliveries": deliveries})
        )
        return report.exit_code
    table = Table(title=f"lacme-watch status at {format_time(now)}")
    for column in ("name", "store", "names", "not after", "days left", "state"):
        table.add_column(column, justify="right" if column == "days left" else "left")
    style = {"ok": "green", "expiring": "yellow", "expired": "bold red"}
    for row in rows:
        name = str(row["name"]) + ("" if row["role"] == "leaf" else f" ({row['role']})")
        state = str(row["state"]) + (f" ({row['threshold']})" if row["state"] == "expiring" else "")
        table.add_row(
            escape(name),
            escape(str(row["store"])),
            escape(" ".join(str(n) for n in row["names"])),  # type: ignore[attr-defined]
            str(row["not_after"])[:10],
            str(row["days_left"]),
            f"[{style[str(row['state'])]}]{state}[/]",
        )
    for problem in problems:
        table.add_row(
            escape(problem["path"]),
            escape(problem["store"]),
            "",
            "",
            "",
            f"[bold red]unreadable: {problem['reason']}[/]",
        )
    io.out.print(table)
    for sink, states in deliveries.items():
        trouble = {k: v for k, v in states.items() if k != "delivered"}
        if trouble:
            counts = ", ".join(f"{count} {state}" for state, count in trouble.items())
            io.out.print(
                f"[yellow]sink {escape(sink)}:[/] {counts} (see `lacme-watch events --pending`)"
            )
    return report.exit_code


def _check(args: argparse.Namespace, io: Io) -> int:
    """Monitoring-plugins output: `LACME-WATCH STATE - text | perfdata`, exit 0/1/2/3."""
    now = _clock(args)
    try:
        config = _config(args, io)
        report, _ = _inventory(config, now)
    except LacmeWatchError as exc:
        io.out.print(f"LACME-WATCH UNKNOWN - {escape(str(exc))}")
        return 3
    code, line = check_line.status_line(report, args.warning, args.critical, now)
    io.out.print(escape(line))
    return code


def _events(args: argparse.Namespace, io: Io) -> int:
    config = _config(args, io)
    with StateStore(config.state_dir) as store:
        entries = store.history(args.limit)
    if args.pending:
        entries = [e for e in entries if "pending" in e.deliveries.values()]
    if args.json:
        io.out.print_json(
            json.dumps(
                [
                    {"event": to_cloudevent(e.envelope), "deliveries": dict(e.deliveries)}
                    for e in entries
                ]
            )
        )
        return 0
    table = Table(title="recent events")
    for column in ("time", "event", "deliveries"):
        table.add_column(column)
    for entry in entries:
        deliveries = ", ".join(f"{sink}: {state}" for sink, state in entry.deliveries.items())
        table.add_row(
            format_time(entry.envelope.time),
            escape(entry.envelope.event.summary()),
            escape(deliveries or "no sink wanted it"),
        )
    io.out.print(table)
    return 0


def _emit(args: argparse.Namespace, io: Io) -> int:
    if args.json is not None:
        if args.kind or args.extra:
            raise ConfigError("emit", "give either --json FILE or KIND --field value, not both")
        try:
            text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
        except OSError as exc:
            raise ConfigError(args.json, f"cannot read: {exc.strerror}") from exc
        envelope = from_json(text)  # another tool's CloudEvent: its id is kept
        config = _config(args, io)
    elif args.kind is None:
        raise ConfigError("emit", "name the event kind, or give --json FILE")
    else:
        event = event_from_arguments(args.kind, _field_arguments(args.extra))
        config = _config(args, io)
        envelope = wrap(event, host=config.host, time=_clock(args), id=str(uuid.uuid4()))
    lock = StateLock(config.state_dir)
    # With a daemon running (holding the lock) the event is recorded and the daemon
    # delivers it on its next round; otherwise this process delivers it now.
    deliver = lock.acquire()
    try:
        with StateStore(config.state_dir) as store:
            delivery = record_envelopes(config, store, [envelope], _clock(args), deliver=deliver)
    finally:
        lock.release()
    for sink, reason in delivery.failures.items():
        io.err.print(f"lacme-watch: sink {sink}: {reason} (queued; will retry)")
    if io.interactive:
        queued = "" if deliver else " (queued for the running lacme-watch to deliver)"
        io.out.print(f"recorded {envelope.id}{queued}")
    return 0 if delivery.ok else 1


def _field_arguments(extra: Sequence[str]) -> dict[str, str]:
    """`--challenge-type http-01 --error=x` -> {"challenge_type": "http-01", "error": "x"}."""
    fields: dict[str, str] = {}
    items = list(extra)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or len(flag) == 2:
            raise ConfigError("emit", f"expected --field value, got {flag!r}")
        name, has_value, value = flag[2:].partition("=")
        if not has_value:
            if not items:
                raise ConfigError("emit", f"{flag} needs a value")
            value = items.pop(0)
        fields[name.replace("-", "_")] = value
    return fields


def _config_check(args: argparse.Namespace, io: Io) -> int:
    config = _config(args, io)
    counts = ", ".join(
        f"{count} {noun if count == 1 else plural}"
        for count, noun, plural in (
            (len(config.stores), "store", "stores"),
            (len(config.authorities), "authority", "authorities"),
            (len(config.sinks), "sink", "sinks"),
        )
    )
    io.out.print(
        f"{escape(config.path or 'zero configuration')}: OK — {counts};"
        f" state in {escape(str(config.state_dir))}; scans {config.schedule.describe()}"
    )
    return 0


def _sinks_test(args: argparse.Namespace, io: Io) -> int:
    """Deliver one drill event straight to a sink (no outbox, no filter), and say how it went."""
    config = _config(args, io)
    routes = {route.sink.name: route for route in config.sinks}
    route = routes.get(args.name)
    if route is None:
        raise ConfigError(
            "sinks test", f"no sink named {args.name!r}; configured: {', '.join(routes)}"
        )
    now = _clock(args)
    envelope = wrap(test_event(now), host=config.host, time=now, id=str(uuid.uuid4()))
    try:
        route.sink.deliver([envelope])
    except SinkError as exc:
        io.err.print(f"sink {escape(args.name)}: [bold red]FAILED[/]: {escape(exc.reason)}")
        return 1
    io.out.print(f"sink {escape(args.name)}: delivered test event {envelope.id}")
    return 0


def _demo(args: argparse.Namespace, io: Io) -> int:
    from .demo import run_demo

    return run_demo(io.out, Path(args.keep) if args.keep else None)


if __name__ == "__main__":  # pragma: no cover - `python -m lacme_watch` goes through __main__
    raise SystemExit(main())
