"""What `status`, `events` and a pass show: typed rows and lines, one renderer.

Each row is a frozen record with its JSON form and its cells. On a terminal the rows
are a rich table; anywhere else (a pipe, cron, a file) they are tab-separated lines
with a header, never cut to a width, with control characters escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..dispatch.delivery import DeliveryReport
from ..events.cloudevents import Envelope, format_time, to_cloudevent
from ..printable import printable
from ..run.passes import PassReport
from ..statedb import Delivery, HistoryEntry
from ..wording import plural

if TYPE_CHECKING:
    from rich.console import Console

UNDELIVERED = ("pending", "retrying", "rejected", "expired")
"""Every outbox state except delivered: what `events --undelivered` shows."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One value in a table, with the rich style it gets on a terminal."""

    text: str
    style: str | None = None


def plain(text: str) -> str:
    """A value safe on one line: control characters (tab, newline, ESC, bidi overrides)
    escaped, as printable() does for every human-readable output."""
    return printable(text)


def render(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    interactive: bool,
) -> None:
    """A table on a terminal; tab-separated lines, header first, elsewhere."""
    if not interactive:
        lines = ["\t".join(columns)]
        lines += ["\t".join(plain(cell.text) or "-" for cell in row) for row in rows]
        console.file.write("\n".join(lines) + "\n")  # rich would expand the tabs
        return
    from rich.markup import escape  # a terminal only: cron's output never loads rich
    from rich.table import Table

    table = Table(title=escape(title))
    for column in columns:
        table.add_column(column, justify="right" if column in ("days left", "attempts") else "left")
    for row in rows:
        table.add_row(*(_markup(cell) for cell in row))
    console.print(table)


def _markup(cell: Cell) -> str:
    from rich.markup import escape

    text = escape(plain(cell.text))
    return f"[{cell.style}]{text}[/]" if cell.style else text


# -- a pass's lines ---------------------------------------------------------------


def pass_lines(report: PassReport) -> list[str]:
    """What went wrong in a pass, one line each, for stderr."""
    lines = []
    for source, problem in report.problems:
        detail = f" ({problem.detail})" if problem.detail else ""
        lines.append(f"{source}: {problem.path}: {problem.reason}{detail}")
    lines += [
        f"spool: {path}: not a valid event ({reason}); set aside"
        for path, reason in report.spool_rejected
    ]
    lines += report.id_conflicts
    return lines + delivery_lines(report.delivery)


def delivery_lines(delivery: DeliveryReport) -> list[str]:
    """One line per sink failing now or still backing off, and per event rejected or
    expired: a pass and `emit` say the same."""
    lines = [
        f"sink {sink}: {reason} (queued; will retry)" for sink, reason in delivery.failures.items()
    ]
    lines += [
        f"sink {sink}: {plural(backlog.events, 'event')} retrying,"
        f" next attempt {format_time(backlog.next_attempt)}: {backlog.last_error}"
        for sink, backlog in delivery.retrying.items()
        if sink not in delivery.failures
    ]
    lines += [
        f"sink {row.sink}: rejected {row.envelope.event.summary()}: {row.last_error}"
        for row in delivery.rejected
    ]
    lines += [
        f"sink {row.sink}: expired {row.envelope.event.summary()}"
        f" after {plural(row.attempts, 'attempt')}: {row.last_error}"
        for row in delivery.expired
    ]
    return lines


def pass_summary(report: PassReport) -> str:
    """The one line a pass prints on a terminal."""
    return (
        f"{plural(report.certificates, 'certificate')},"
        f" {plural(len(report.envelopes), 'new event')},"
        f" {plural(report.delivery.delivered, 'delivery')},"
        f" {plural(len(report.problems), 'problem')}"
    )


def sink_lines(counts: Mapping[tuple[str, str], int]) -> list[str]:
    """`sink hook: 2 retrying, 1 rejected (see ...)` for each sink with undelivered events."""
    per_sink: dict[str, dict[str, int]] = {}
    for (sink, state), count in sorted(counts.items()):
        per_sink.setdefault(sink, {})[state] = count
    lines = []
    for sink, states in per_sink.items():
        trouble = [f"{states[state]} {state}" for state in UNDELIVERED if states.get(state)]
        if trouble:
            lines.append(
                f"sink {sink}: {', '.join(trouble)} (see `lacme-watch events --undelivered`)"
            )
    return lines


def deliveries_json(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for (sink, state), count in sorted(counts.items()):
        found.setdefault(sink, {})[state] = count
    return found


# -- events -----------------------------------------------------------------------

EVENTS_COLUMNS = (
    "time",
    "event",
    "store",
    "sink",
    "delivery",
    "attempts",
    "next retry",
    "last error",
)
_DELIVERY_STYLE = {
    "delivered": "green",
    "pending": "cyan",
    "retrying": "yellow",
    "rejected": "bold red",
    "expired": "bold red",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRow:
    """One event's delivery to one sink, in `events` (one row per event and sink)."""

    envelope: Envelope
    sink: str | None
    delivery: Delivery | None

    def cells(self) -> list[Cell]:
        event = self.envelope.event
        delivery = self.delivery
        state = delivery.state if delivery else "no sink wanted it"
        return [
            Cell(format_time(self.envelope.time)),
            Cell(event.summary()),
            Cell(event.store or ""),
            Cell(self.sink or ""),
            Cell(state, _DELIVERY_STYLE.get(state)),
            Cell(str(delivery.attempts) if delivery else ""),
            Cell(format_time(delivery.next_attempt) if delivery and delivery.next_attempt else ""),
            Cell((delivery.last_error or "") if delivery and delivery.state != "delivered" else ""),
        ]


def delivery_rows(entries: Iterable[HistoryEntry]) -> list[DeliveryRow]:
    rows = []
    for entry in entries:
        if not entry.deliveries:
            rows.append(DeliveryRow(envelope=entry.envelope, sink=None, delivery=None))
        rows += [
            DeliveryRow(envelope=entry.envelope, sink=sink, delivery=delivery)
            for sink, delivery in entry.deliveries.items()
        ]
    return rows


def undelivered(entry: HistoryEntry) -> bool:
    return any(d.state in UNDELIVERED for d in entry.deliveries.values())


def history_json(entry: HistoryEntry) -> dict[str, object]:
    """`deliveries` keeps its sink -> state form; `delivery` adds attempts and errors."""
    return {
        "event": to_cloudevent(entry.envelope),
        "deliveries": {sink: d.state for sink, d in entry.deliveries.items()},
        "delivery": {
            sink: {
                "state": d.state,
                "attempts": d.attempts,
                "next_attempt": format_time(d.next_attempt) if d.next_attempt else None,
                "last_error": d.last_error,
            }
            for sink, d in entry.deliveries.items()
        },
    }
