"""EventDispatcher with lacme's API: subscribe/unsubscribe, async emit, emit_sync.

In-process subscribers see each event of a pass after it is committed. As in
lacme, a failing subscriber is logged and never reaches the caller or the others;
typed subscribers run first, then global ones; callbacks run outside the lock.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import events as _events

if TYPE_CHECKING:
    from ..events import Event

log = logging.getLogger(__name__)

Callback = Callable[["Event"], Any]


class EventDispatcher:
    """Thread-safe registry of sync and async event subscribers."""

    def __init__(self) -> None:
        self._typed: dict[type[Event], list[Callback]] = {}
        self._global: list[Callback] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callback, event_type: type[Event] | str | None = None) -> None:
        """Register `callback` for events of `event_type` (a class, as in lacme, or the
        event's name such as "certificate_issued"), or for all events. Anything else is a
        TypeError now, rather than a subscription that silently never matches."""
        if isinstance(event_type, str):
            found = _events.event_type(event_type)
            if found is None:
                raise TypeError(
                    f"unknown event name {event_type!r}; known: {', '.join(sorted(_events.KINDS))}"
                )
            event_type = found
        elif event_type is not None and not (
            isinstance(event_type, type) and issubclass(event_type, _events.Event)
        ):
            raise TypeError(f"event_type must be an Event class or name, not {event_type!r}")
        with self._lock:
            if event_type is None:
                self._global.append(callback)
            else:
                self._typed.setdefault(event_type, []).append(callback)

    def unsubscribe(self, callback: Callback) -> None:
        """Remove `callback` from every subscription list."""
        with self._lock:
            self._global = [cb for cb in self._global if cb != callback]
            for event_type, callbacks in self._typed.items():
                self._typed[event_type] = [cb for cb in callbacks if cb != callback]

    def _callbacks(self, event: Event) -> list[Callback]:
        with self._lock:
            return [*self._typed.get(type(event), []), *self._global]

    async def emit(self, event: Event) -> None:
        """Call every matching subscriber; awaitable results are awaited."""
        for callback in self._callbacks(event):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one subscriber's bug must not reach the caller or the others
                log.exception("event callback %r failed for %s", callback, event.kind)

    def emit_sync(self, event: Event) -> None:
        """Call every matching sync subscriber; coroutine functions are skipped with a warning."""
        for callback in self._callbacks(event):
            if inspect.iscoroutinefunction(callback):
                log.warning("skipping async callback %r in emit_sync for %s", callback, event.kind)
                continue
            try:
                result = callback(event)
            except Exception:  # one subscriber's bug must not reach the caller or the others
                log.exception("event callback %r failed for %s", callback, event.kind)
                continue
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # never leave an un-awaited coroutine behind
                log.warning(
                    "sync callback %r returned an awaitable in emit_sync for %s; discarded",
                    callback,
                    event.kind,
                )
