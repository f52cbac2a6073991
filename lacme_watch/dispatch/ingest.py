"""Events that come from outside a scan: `lacme-watch emit`, and later the spool and bridge.

They are recorded (history + outbox) in one transaction, then delivered like any other.
"""

from __future__ import annotations

import logging
import re
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .. import events as _events
from ..config import Config
from ..config.routes import route
from ..errors import EventFormatError
from ..events.cloudevents import Envelope, decode_event, wrap
from ..statedb import IdConflict, StateStore
from . import spool
from .delivery import DeliveryReport, drain

if TYPE_CHECKING:
    from ..events import CertificateExpiring, Event

EXTERNAL_STORE = "external"
log = logging.getLogger(__name__)


def event_from_arguments(kind: str, arguments: Mapping[str, str]) -> Event:
    """Build an event from `--field value` strings, converting numbers, lists and booleans."""
    event_type = _events.event_type(kind)
    if event_type is None:
        raise EventFormatError(f"unknown event kind {kind!r}; known: {', '.join(_events.KINDS)}")
    hints = typing.get_type_hints(event_type)
    data: dict[str, object] = {}
    for name, text in arguments.items():
        _check_text(name, text)
        hint = hints.get(name)
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if int in options and bool not in options:
            try:
                data[name] = int(text)
            except ValueError:
                raise EventFormatError(
                    f"--{_flag(name)}: expected an integer, got {text!r}"
                ) from None
        elif bool in options:
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise EventFormatError(f"--{_flag(name)}: expected true or false, got {text!r}")
            data[name] = text.lower() in ("true", "yes", "1")
        elif any(typing.get_origin(option) is tuple for option in options):
            data[name] = [part for part in text.replace(",", " ").split() if part]
        else:
            data[name] = text
    data.setdefault("store", EXTERNAL_STORE)
    try:
        return decode_event(event_type, data)
    except EventFormatError as exc:
        # The field names become the flags they were given as; the kind keeps its name.
        message = re.sub(r"\bdata\.(\w+)", lambda m: f"--{_flag(m.group(1))}", str(exc))
        raise EventFormatError(message) from None


def _check_text(name: str, text: str) -> None:
    """An argument that is not UTF-8 (Python hands its bytes over as lone surrogates,
    which no log line, JSON or database row can hold) is this flag's error."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = exc.object[exc.start : exc.end].encode("utf-8", "surrogateescape")
        raise EventFormatError(
            f"--{_flag(name)}: not UTF-8 text (byte 0x{raw[0]:02x} at character {exc.start + 1})"
        ) from None


TEST_DOMAIN = "test.lacme-watch.invalid"


def test_event(now: datetime) -> CertificateExpiring:
    """What `sinks test` sends: realistic, and plainly a drill (RFC 2606 .invalid, test=true)."""
    expires = now + timedelta(days=9)
    return _events.CertificateExpiring(
        domain=TEST_DOMAIN,
        domains=(TEST_DOMAIN, f"www.{TEST_DOMAIN}"),
        expires_at=expires,
        days_remaining=9,
        threshold="14d",
        store="lacme-watch sinks test",
        test=True,
    )


def _flag(name: str) -> str:
    return name.replace("_", "-")


def record(
    config: Config,
    store: StateStore,
    events: Sequence[Event],
    now: datetime,
    *,
    deliver: bool = True,
) -> tuple[list[Envelope], DeliveryReport]:
    """Record external events (new ids: each occurrence is its own event) and deliver them."""
    import uuid  # events given in by hand (emit, the bridge): a scan's pass makes none

    envelopes = [wrap(event, host=config.host, time=now, id=str(uuid.uuid4())) for event in events]
    return envelopes, record_envelopes(config, store, envelopes, now, deliver=deliver)


def record_envelopes(
    config: Config,
    store: StateStore,
    envelopes: Sequence[Envelope],
    now: datetime,
    *,
    deliver: bool = True,
) -> DeliveryReport:
    """History and outbox rows for ready CloudEvents (their ids kept: a resend is a no-op;
    an id already taken by a different event is logged, and the event recorded anew)."""
    _warn(store.record_events(route(config.sinks, envelopes), now))
    if not deliver:
        return DeliveryReport()
    return drain(store, config.sinks, now, config.retry)


def ingest_spool(config: Config, store: StateStore, now: datetime) -> spool.Collected:
    """The daemon's between-passes look at the spool: record, then remove."""
    if not config.spool:
        return spool.Collected()
    found = spool.collect(config.spool)
    if found.envelopes:
        _warn(store.record_events(route(config.sinks, found.envelopes), now))
    found.remove_ingested()
    return found


def record_reset(config: Config, store: StateStore, now: datetime) -> Envelope | None:
    """If the state database was just replaced (it was damaged), queue a `state_reset`
    event for the sinks, once, and return it so the caller can say so on stderr too."""
    reset = store.reset
    if reset is None:
        return None
    event = _events.StateReset(
        path=str(reset.path),
        reason=reset.reason,
        moved_to=str(reset.moved_to),
        reset_at=now,
        host=config.host,
    )
    envelope = wrap(event, host=config.host, time=now, salt=store.id_salt)
    store.record_events(route(config.sinks, [envelope]), now)
    store.clear_reset()
    return envelope


def _warn(conflicts: Sequence[IdConflict]) -> None:
    for conflict in conflicts:
        log.warning("%s", conflict.message())
