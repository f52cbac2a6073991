"""The lacme bridge: events lacme raises in-process reach lacme-watch's sinks.

    from lacme.events import EventDispatcher
    from lacme_watch.bridge import attach

    dispatcher = EventDispatcher()
    attach(dispatcher, "/var/spool/lacme-watch")      # then pass dispatcher to lacme's Client

Every lacme event (challenge failures and rate-limit warnings above all, which
leave no trace on disk) is written atomically into lacme-watch's spool as a
CloudEvent; the next pass (or the daemon within `schedule.deliver`) delivers it.
lacme is not imported here: any object with lacme's event fields is translated.

lacme's RenewalManager raises no event when a sweep finds nothing due, so a sweep
reports itself with one more line, and lacme-watch can tell when sweeps stop
(`renewal_agent_stale`):

    await manager.check_and_renew()
    report_run("/var/spool/lacme-watch", store="lacme:/etc/lacme")
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .dispatch.spool import write
from .events import EVENT_TYPES, Event, RenewalAgentRun
from .events.cloudevents import wrap

log = logging.getLogger(__name__)

# lacme's event classes carry the same names as ours (lacme.events); translate by name.
_BY_CLASS_NAME: dict[str, type[Event]] = {cls.__name__: cls for cls in EVENT_TYPES.values()}


class Dispatcher(Protocol):
    """lacme.events.EventDispatcher, as far as the bridge needs it."""

    def subscribe(self, callback: Callable[..., Any], event_type: Any = None) -> None: ...


def translate(lacme_event: object, *, store: str = "lacme") -> Event | None:
    """lacme's event object as ours (None for a kind lacme-watch does not know)."""
    ours = _BY_CLASS_NAME.get(type(lacme_event).__name__)
    if ours is None or not dataclasses.is_dataclass(lacme_event):
        return None
    fields = {f.name: getattr(lacme_event, f.name) for f in dataclasses.fields(lacme_event)}
    return ours(**fields, store=store)


def attach(
    dispatcher: Dispatcher,
    spool: str | Path,
    *,
    host: str | None = None,
    store: str = "lacme",
    kinds: Collection[str] | None = None,
) -> Callable[[object], None]:
    """Subscribe to a lacme EventDispatcher; returns the callback (pass it to
    `dispatcher.unsubscribe` to detach). `kinds` limits what is spooled, e.g.
    `{"challenge_failed", "rate_limit_warning"}` when lacme-watch already watches the
    store and the CA (lacme re-emits ca_initialized at every process start)."""
    name = host or socket.gethostname()

    def forward(lacme_event: object) -> None:
        event = translate(lacme_event, store=store)
        if event is None:
            log.warning("lacme-watch does not know %s; not spooled", type(lacme_event).__name__)
            return
        if kinds is not None and event.kind not in kinds:
            return
        envelope = wrap(event, host=name, time=datetime.now(UTC), id=str(uuid.uuid4()))
        write(spool, envelope)

    dispatcher.subscribe(forward)
    return forward


def report_run(
    spool: str | Path, *, store: str, host: str | None = None, when: datetime | None = None
) -> Path:
    """Spool a `renewal_agent_run` for `store` (its id as `lacme-watch status` shows it,
    e.g. `lacme:/etc/lacme`): the renewal sweep ran. Returns the spool file."""
    ran_at = when or datetime.now(UTC)
    event = RenewalAgentRun(store=store, ran_at=ran_at)
    envelope = wrap(event, host=host or socket.gethostname(), time=ran_at, id=str(uuid.uuid4()))
    return write(spool, envelope)
