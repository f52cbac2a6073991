"""`lacme-watch`: runs the command arguments.py parsed, and prints its results with rich
(tables and lines from views.py); errors become one message and their exit status.

Output for people is printed here (the demo prints its own walk-through). `now` for a
pass comes from here too: `--now`, or the real clock; detection itself never reads it.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

# Only what `watch --once` needs is imported here: cron starts it cold every few
# minutes. Every other command imports its own modules where it runs.
from .. import __version__
from ..config import Config, find_config, load_keeping, zero_config
from ..dispatch.ingest import record_reset
from ..errors import ConfigError, LacmeWatchError, SinkError
from ..run import logconfig
from ..run.passes import PassReport, run_pass
from ..statedb import StateStore
from ..statedb.lock import StateLock
from .arguments import UsageError, command_named, parse_arguments
from .terminal import Io, markup_safe

if TYPE_CHECKING:
    from ..ari.window import AriRecord

log = logging.getLogger("lacme_watch")

Handler = Callable[[argparse.Namespace, "Io"], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lacme-watch`; return the process exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    io = Io()
    try:
        parser, args = parse_arguments(__version__, arguments)
    except UsageError as exc:
        if command_named(arguments) == "check":  # a plugin's usage error is UNKNOWN, not CRITICAL
            from . import check as check_line  # the check command's own module

            io.out.print(markup_safe(check_line.unknown_line(f"usage: {exc}")))
            return check_line.UNKNOWN
        exc.parser.print_usage(sys.stderr)
        exc.parser.exit(2, f"{exc.parser.prog}: error: {exc}\n")  # as argparse itself does
    logconfig.configure(args.log_level, args.log_format)
    handler = _HANDLERS.get(getattr(args, "command", ""))
    if handler is None:  # no command, or `config` / `sinks` / `systemd` without an action
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args, io)
    except LacmeWatchError as exc:
        io.note(str(exc), "error:", "bold red")
        return exc.exit_code
    except sqlite3.Error as exc:  # a read outside a transaction: still one line, not a trace
        io.note(f"the state database failed: {exc}", "error:", "bold red")
        return 1


def _clock(args: argparse.Namespace) -> datetime:
    now: datetime | None = args.now
    return now if now is not None else datetime.now(UTC)


def _config(args: argparse.Namespace, io: Io, *, announce: bool = False) -> Config:
    """The configuration. Zero configuration says what it watches where a person looks
    (`config check`, `status`, a terminal) and at --log-level info, never to cron."""
    config, keep = _config_keeping(args, io, announce=announce)
    keep()
    return config


def _config_keeping(
    args: argparse.Namespace, io: Io, *, announce: bool = False
) -> tuple[Config, Callable[[], None]]:
    """_config(), and what keeps the parsed file in state_dir once it exists."""
    path = find_config(args.config)
    if path is None:
        config, watched = zero_config()
        notice = "no configuration file; watching " + "; ".join(watched)
        if announce or io.interactive:
            io.note(f"lacme-watch: {notice}")
        else:
            log.info("%s", notice)
        return config, lambda: None
    config, keep = load_keeping(path)
    for warning in config.warnings:
        io.note(warning, "warning:", "yellow")
    return config, keep


def _watch(args: argparse.Namespace, io: Io) -> int:
    if not args.once:
        from ..run.daemon import run_daemon

        return run_daemon(_config(args, io), lambda: _config(args, io), now=args.now)
    config, keep = _config_keeping(args, io)
    with StateLock(config.state_dir), StateStore(config.state_dir) as store:
        keep()  # the first pass made state_dir: the next start need not parse the file
        was_reset = _announce_reset(config, store, _clock(args), io)
        report = run_pass(config, store, _clock(args))
        if config.metrics.textfile:
            from ..run.metrics import Metrics  # prometheus_client: only when metrics are on
            from ..run.passes import pass_metrics

            metrics = Metrics()
            metrics.update(pass_metrics(report, config, store))
            metrics.write_textfile(config.metrics.textfile)
    _print_pass(report, io)
    return max(report.exit_code, 1 if was_reset else 0)


def _print_pass(report: PassReport, io: Io) -> None:
    """Quiet on success when stdout is not a terminal (cron mails whatever a job prints)."""
    if report.ok and not io.interactive:
        return
    from . import views  # only when there is something to print

    if not report.ok:
        _say(io, views.pass_lines(report))
    if io.interactive:
        io.out.print(views.pass_summary(report))


def _say(io: Io, lines: Iterable[str]) -> None:
    for line in lines:
        io.note(f"lacme-watch: {line}")


def _complain(io: Io, message: str) -> None:
    io.note("lacme-watch: " + message)


def _announce_reset(config: Config, store: StateStore, now: datetime, io: Io) -> bool:
    """Say loudly that a damaged state database was replaced, and queue the event."""
    envelope = record_reset(config, store, now)
    if envelope is None:
        return False
    io.note(envelope.event.summary().split(": ", 1)[1], "error:", "bold red")
    _complain(
        io,
        "events of what changed since the last good pass may be missing;"
        " a state_reset event was sent to the sinks",
    )
    return True


def _inventory(config: Config, now: datetime) -> tuple[PassReport, dict[tuple[str, str], int]]:
    """Scan every source as a pass would, and write nothing (status, check).

    Also returns the outbox's counts per (sink, state), for `status`; the renewal
    agents' last runs land in `report.agent_runs`.
    """
    from ..run.scans import scan_sources  # status and check only; a pass imports it itself

    with StateStore(config.state_dir, read_only=True) as store:
        report = PassReport.of(scan_sources(config, store, now), now)
        for source, agent in store.agent_runs().items():
            seen = report.agent_runs.get(source, agent.last_run)
            report.agent_runs[source] = max(agent.last_run, seen)
        return report, store.outbox_counts()


def _status(args: argparse.Namespace, io: Io) -> int:
    import json  # the commands below `watch` import their own modules, not cron's pass

    from ..ari import view as ari_view
    from ..events.cloudevents import format_time
    from ..run.passes import stale_agents
    from . import views
    from .inventory import (
        STATUS_COLUMNS,
        WINDOW_COLUMN,
        AgentRow,
        CertificateRow,
        CrlRow,
        ProblemRow,
    )

    config = _config(args, io, announce=True)
    now = _clock(args)
    report, outbox = _inventory(config, now)
    wrong: dict[tuple[str, str], list[str]] = {}
    for source, lineage, finding in report.findings:
        wrong.setdefault((source, lineage), []).append(finding)
    windows, notes = _renewal_information(config)
    certificates = sorted(
        (
            CertificateRow.of(
                source,
                o,
                config.policy,
                now,
                wrong.get((source, o.lineage), ()),
                renewal_window=ari_view.window_json(windows.get(o.fingerprint), now),
            )
            for source, o in report.inventory
        ),
        key=lambda row: (row.not_after, row.name),
    )
    crls = sorted(
        (CrlRow.of(source, crl, config.policy, now) for source, crl in report.crls),
        key=lambda row: (row.next_update is None, row.next_update or now, row.path),
    )
    problems = [ProblemRow.of(source, problem) for source, problem in report.problems]
    late = {agent.store for agent, _ in stale_agents(config, {}, report.agent_runs, [], now)}
    agents = [
        AgentRow(store=store, last_run=when, stale=store in late)
        for store, when in sorted(report.agent_runs.items())
    ]
    if args.json:
        document = {
            "certificates": [row.as_json() for row in certificates],
            "crls": [row.as_json() for row in crls],
            "problems": [row.as_json() for row in problems],
            "deliveries": views.deliveries_json(outbox),
            "agents": [row.as_json() for row in agents],
        }
        if notes:
            document["ari_directories"] = notes
        io.out.print_json(json.dumps(document))
        return report.exit_code
    window = any(row.renewal_window for row in certificates)
    views.render(
        io.out,
        f"lacme-watch status at {format_time(now.replace(microsecond=0))}",
        (*STATUS_COLUMNS, WINDOW_COLUMN) if window else STATUS_COLUMNS,
        [
            *(row.cells(window=window) for row in certificates),
            *(row.cells() for row in crls),
            *(row.cells() for row in problems),
        ],
        interactive=io.interactive,
    )
    for line in [*(row.line() for row in agents), *views.sink_lines(outbox)]:
        io.out.print(markup_safe(line))
    for note in notes:
        io.out.print(markup_safe(f"ARI {note['directory']}: {note['error']}"))
    return report.exit_code


def _renewal_information(
    config: Config,
) -> tuple[dict[str, AriRecord], list[dict[str, object]]]:
    """The CAs' last ARI answers by fingerprint, and the directories that failed; read
    from the state database (status and check never ask a CA)."""
    if not config.ari.enabled:
        return {}, []
    from ..ari import view as ari_view  # only with ARI configured

    with StateStore(config.state_dir, read_only=True) as store:
        return ari_view.known_windows(store.connection), ari_view.directory_notes(store.connection)


def _check(args: argparse.Namespace, io: Io) -> int:
    """Monitoring-plugins output: `LACME-WATCH STATE - text | perfdata`, exit 0/1/2/3."""
    from ..ari import view as ari_view
    from . import check as check_line  # the check command's own modules

    now = _clock(args)
    try:
        config = _config(args, io)
        report, _ = _inventory(config, now)
    except LacmeWatchError as exc:
        io.out.print(markup_safe(check_line.unknown_line(str(exc))))
        return check_line.UNKNOWN
    warning, critical = check_line.defaults(config.policy)
    late: list[str] = []
    if args.ari_grace is not None:
        windows, _ = _renewal_information(config)
        late = ari_view.late_certificates(report.inventory, windows, now, args.ari_grace)
    code, line = check_line.status_line(
        report, args.warning or warning, args.critical or critical, now, late=late
    )
    io.out.print(markup_safe(line))
    return code


def _events(args: argparse.Namespace, io: Io) -> int:
    import json  # the events command's own modules

    from . import views

    config = _config(args, io)
    with StateStore(config.state_dir, read_only=True) as store:
        entries = store.history(args.limit)
    if args.undelivered:
        entries = [entry for entry in entries if views.undelivered(entry)]
    if args.json:
        io.out.print_json(json.dumps([views.history_json(entry) for entry in entries]))
        return 0
    views.render(
        io.out,
        "recent events",
        views.EVENTS_COLUMNS,
        [row.cells() for row in views.delivery_rows(entries)],
        interactive=io.interactive,
    )
    return 0


def _emit(args: argparse.Namespace, io: Io) -> int:
    import uuid  # the emit command's own modules

    from ..dispatch.ingest import event_from_arguments, record_envelopes
    from ..events import RenewalAgentRun
    from ..events.cloudevents import from_json, wrap
    from . import views

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
    if isinstance(envelope.event, RenewalAgentRun):
        _known_store(config, envelope.event.store)
    lock = StateLock(config.state_dir)
    # With a daemon running (holding the lock) the event is recorded and the daemon
    # delivers it on its next round; otherwise this process delivers it now.
    deliver = lock.acquire()
    try:
        with StateStore(config.state_dir, repair=deliver) as store:
            if deliver:
                _announce_reset(config, store, _clock(args), io)
            delivery = record_envelopes(config, store, [envelope], _clock(args), deliver=deliver)
    finally:
        lock.release()
    _say(io, views.delivery_lines(delivery))
    if io.interactive:
        queued = "" if deliver else " (queued for the running lacme-watch to deliver)"
        io.out.print(f"recorded {envelope.id}{queued}")
    return 0 if delivery.ok else 1


def _known_store(config: Config, store: str | None) -> None:
    """A run must name a configured source, or nobody would ever watch it."""
    known = [source.id for source in config.sources]
    if store not in known:
        raise ConfigError(
            "emit", f"--store {store!r} is not a configured source; one of: {', '.join(known)}"
        )


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
    config = _config(args, io, announce=True)
    counts = ", ".join(
        f"{count} {noun if count == 1 else plural}"
        for count, noun, plural in (
            (len(config.stores), "store", "stores"),
            (len(config.authorities), "authority", "authorities"),
            (len(config.sinks), "sink", "sinks"),
        )
    )
    io.out.print(
        f"{markup_safe(config.path or 'zero configuration')}: OK — {counts};"
        f" state in {markup_safe(str(config.state_dir))}; scans {config.schedule.describe()}"
    )
    return 0


def _sinks_test(args: argparse.Namespace, io: Io) -> int:
    """Deliver one drill event straight to a sink (no outbox, no filter), and say how it went."""
    import uuid  # the sinks test command's own modules

    from ..dispatch.ingest import test_event
    from ..events.cloudevents import wrap

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
        io.err.print(
            f"sink {markup_safe(args.name)}: [bold red]FAILED[/]: {markup_safe(exc.reason)}"
        )
        return 1
    io.out.print(f"sink {markup_safe(args.name)}: delivered test event {envelope.id}")
    return 0


def _systemd_install(args: argparse.Namespace, io: Io) -> int:
    from . import units

    path = find_config(args.config)
    if path is None:
        raise ConfigError(
            "systemd install", "give --config PATH: the units start lacme-watch with that file"
        )
    config = _config(args, io)
    rendered = units.render(config, path.absolute(), timer=args.timer)
    if args.print:
        io.out.out("".join(f"# {unit.name}\n{unit.text}" for unit in rendered), highlight=False)
        return 0
    written = units.install(rendered, Path(args.root) / args.unit_dir.lstrip("/"))
    for unit_path in written:
        io.out.print(f"wrote {markup_safe(str(unit_path))}")
    _say(io, units.missing_lines(config))
    enable = "lacme-watch.timer" if args.timer else "lacme-watch"
    io.out.print(f"next: systemctl daemon-reload && systemctl enable --now {enable}")
    return 0


def _demo(args: argparse.Namespace, io: Io) -> int:
    from .demo import run_demo

    return run_demo(io.out, Path(args.keep) if args.keep else None)


_HANDLERS: dict[str, Handler] = {
    "watch": _watch,
    "status": _status,
    "events": _events,
    "emit": _emit,
    "config check": _config_check,
    "check": _check,
    "sinks test": _sinks_test,
    "systemd install": _systemd_install,
    "demo": _demo,
}


if __name__ == "__main__":  # pragma: no cover - `python -m lacme_watch` goes through __main__
    raise SystemExit(main())
