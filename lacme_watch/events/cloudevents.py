"""CloudEvents 1.0 JSON: the one wire format of the log sink, shell stdin, emit and the spool.

An :class:`Envelope` is an event plus what CloudEvents adds (id, source, time).
Ids of detected events derive from what makes the event unique, so a retry or a
pass repeated after a crash sends the same id and receivers can deduplicate. They
are salted with a secret kept in the state database: whoever can write the spool
cannot compute the id of a coming alert and plant it first to have the alert dropped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from .. import boundedjson
from .. import events as _events
from ..errors import EventFormatError
from ..instants import format_time as format_time  # re-exported: the wire's time format
from ..instants import parse_time as parse_time

if TYPE_CHECKING:
    from . import Change, Event

TYPE_PREFIX = "lacme."
SOURCE_SCHEME = "lacme-watch"
_ID_NAMESPACE = bytes.fromhex("6f1c3a525d0e4f579a431b7f6f0c2a11")
"""The UUID 6f1c3a52-5d0e-4f57-9a43-1b7f6f0c2a11 (as bytes: uuid is not imported for it)."""
_ENVELOPE_KEYS = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One event as it travels: the event and its CloudEvents attributes."""

    id: str
    source: str
    time: datetime
    event: Event
    _json: str | None = dataclass_field(default=None, init=False, repr=False, compare=False)
    """to_json()'s line, kept once made: the outbox row and the log sink's line are one."""

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.event.kind


def event_id(host: str, event: Event, salt: str = "") -> str:
    """A stable id: the same detected event always gets the same one (per salt)."""
    parts = (salt, host, event.store or "", event.kind, *event.identity())
    return uuid5_text(_ID_NAMESPACE, "\x1f".join(parts if salt else parts[1:]))


def uuid5_text(namespace: bytes, name: str) -> str:
    """`str(uuid.uuid5(UUID(bytes=namespace), name))` (RFC 4122 4.3), without building
    the UUID object: half the cost, for every event of a pass."""
    text = hashlib.sha1(namespace + name.encode(), usedforsecurity=False).hexdigest()
    variant = _VARIANT[text[16]]  # the RFC 4122 variant: the top two bits 10
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{variant}{text[17:20]}-{text[20:32]}"


_VARIANT = {digit: f"{int(digit, 16) & 0x3 | 0x8:x}" for digit in "0123456789abcdef"}


@functools.lru_cache(maxsize=256)
def source_uri(host: str, store: str | None) -> str:
    """`lacme-watch://HOST/STORE`: names the host and the store, as the spec asks
    (remembered: a pass's events come from a few stores)."""
    return f"{SOURCE_SCHEME}://{quote(host, safe='')}/{quote(store or '', safe='/:@')}"


def host_of(source: str) -> str:
    """The host named by a source URI (empty when the URI is not ours)."""
    parts = urlsplit(source)
    return unquote(parts.netloc) if parts.scheme == SOURCE_SCHEME else ""


def wrap(
    event: Event, *, host: str, time: datetime, id: str | None = None, salt: str = ""
) -> Envelope:
    """Put an event in its envelope; the id is derived (with `salt`) unless one is given."""
    return Envelope(
        id=id or event_id(host, event, salt),
        source=source_uri(host, event.store),
        time=time,
        event=event,
    )


def event_data(event: Event) -> dict[str, Any]:
    """The `data` object: the kind's own (lacme) fields first, then non-empty context."""
    data: dict[str, Any] = {}
    for name in _data_order(type(event)):
        value = getattr(event, name)
        plain = type(value)
        if plain is str or plain is int or plain is bool:  # most fields: as they are
            data[name] = value
            continue
        if value is None:
            continue
        data[name] = event_data_value(value)
    return data


def event_data_value(value: object) -> object:
    """A field's value as the `data` object holds it: times as text, tuples as lists."""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, tuple):
        return [_change_data(item) if isinstance(item, _events.Change) else item for item in value]
    return value


_DATA_ORDERS: dict[type[Event], tuple[str, ...]] = {}


def _data_order(event_type: type[Event]) -> tuple[str, ...]:
    """The kind's own field names, then the context's, worked out once per kind: every
    event written to the outbox, a log line or a webhook goes through event_data."""
    found = _DATA_ORDERS.get(event_type)
    if found is None:
        own = _events.lacme_fields(event_type)
        rest = (f.name for f in fields(event_type) if f.name not in own)
        found = _DATA_ORDERS[event_type] = (*own, *rest)
    return found


def _change_data(change: Change) -> dict[str, Any]:
    def plain(value: object) -> object:
        return list(value) if isinstance(value, tuple) else value

    return {"field": change.field, "before": plain(change.before), "after": plain(change.after)}


def to_cloudevent(envelope: Envelope) -> dict[str, Any]:
    """The CloudEvents 1.0 JSON object for an envelope."""
    return {
        "specversion": "1.0",
        "id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "time": _time_text(envelope.time),
        "subject": envelope.event.subject,
        "datacontenttype": "application/json",
        "data": event_data(envelope.event),
    }


@functools.lru_cache(maxsize=64)
def _time_text(moment: datetime) -> str:
    """format_time(), remembered: a pass's events share its `now` (equal instants,
    whatever their zone, are the same UTC text)."""
    return format_time(moment)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""json.dumps() with these arguments builds an encoder per call: this one is reused."""
_STRING = json.encoder.encode_basestring
"""How _ENCODER writes a string (ensure_ascii=False): the C function it calls itself."""


def to_json(envelope: Envelope) -> str:
    """One line of JSON, no trailing newline (made once per envelope: it is immutable).

    The very text `_ENCODER.encode(to_cloudevent(envelope))` makes, written straight
    from the fields: no `data` dict built and walked for each of a pass's thousands
    of events (tests/test_cloudevents.py holds the two equal for every kind)."""
    text = envelope._json
    if text is None:
        event = envelope.event
        text = "".join(
            (
                '{"specversion":"1.0","id":',
                _STRING(envelope.id),
                ',"source":',
                _STRING(envelope.source),
                ',"type":',
                _STRING(TYPE_PREFIX + event.kind),
                ',"time":',
                _STRING(_time_text(envelope.time)),
                ',"subject":',
                _STRING(event.subject),
                ',"datacontenttype":"application/json","data":{',
                _data_json(event),
                "}}",
            )
        )
        object.__setattr__(envelope, "_json", text)  # a cache of its own fields, not a change
    return text


def _data_json(event: Event) -> str:
    """event_data(event) as _ENCODER writes it, without the braces."""
    parts: list[str] = []
    for name, key in _data_keys(type(event)):
        value = getattr(event, name)
        plain = type(value)
        if plain is str:
            parts.append(key + _STRING(value))
        elif value is None:
            continue
        elif plain is bool:
            parts.append(key + ("true" if value else "false"))
        elif plain is int:
            parts.append(key + int.__repr__(value))
        elif plain is datetime:
            parts.append(key + _STRING(format_time(value)))
        elif plain is tuple and (names := _strings(value)) is not None:
            parts.append(key + names)
        else:  # changes, or a value of another type: as event_data() makes it
            parts.append(key + _ENCODER.encode(event_data_value(value)))
    return ",".join(parts)


def _strings(value: tuple[object, ...]) -> str | None:
    """A tuple of strings as a JSON list; None if it holds anything else (changes)."""
    try:
        return "[" + ",".join(map(_STRING, value)) + "]"  # type: ignore[arg-type]
    except TypeError:  # encode_basestring takes strings only
        return None


_DATA_KEYS: dict[type[Event], tuple[tuple[str, str], ...]] = {}


def _data_keys(event_type: type[Event]) -> tuple[tuple[str, str], ...]:
    """(field name, its JSON key with the colon) in _data_order()'s order, once per kind."""
    found = _DATA_KEYS.get(event_type)
    if found is None:
        found = _DATA_KEYS[event_type] = tuple(
            (name, _STRING(name) + ":") for name in _data_order(event_type)
        )
    return found


def from_json(text: str | bytes) -> Envelope:
    """Decode one CloudEvent JSON document; raises EventFormatError saying what is wrong."""
    try:
        document = boundedjson.loads(text)
    except ValueError as exc:  # UnicodeDecodeError and the depth/size limits included
        raise EventFormatError(f"not JSON: {exc}") from None
    return from_cloudevent(document)


def from_cloudevent(document: object) -> Envelope:
    """Decode a parsed CloudEvent object into an envelope."""
    if not isinstance(document, Mapping):
        raise EventFormatError("a CloudEvent must be a JSON object")
    if unknown := sorted(set(document) - _ENVELOPE_KEYS):
        raise EventFormatError(f"unknown CloudEvent attribute(s): {', '.join(unknown)}")
    if document.get("specversion") != "1.0":
        raise EventFormatError(f"specversion must be '1.0', got {document.get('specversion')!r}")
    kind = _require_str(document, "type")
    event_type = (
        _events.event_type(kind[len(TYPE_PREFIX) :]) if kind.startswith(TYPE_PREFIX) else None
    )
    if event_type is None:
        raise EventFormatError(f"unknown event type {kind!r}")
    contenttype = document.get("datacontenttype", "application/json")
    if contenttype != "application/json":
        raise EventFormatError(f"datacontenttype must be application/json, got {contenttype!r}")
    data = document.get("data")
    if not isinstance(data, Mapping):
        raise EventFormatError("data must be a JSON object")
    try:
        time = parse_time(_require_str(document, "time"))
    except (ValueError, OverflowError):
        raise EventFormatError(f"time is not ISO 8601: {document.get('time')!r}") from None
    return Envelope(
        id=_require_str(document, "id"),
        source=_require_str(document, "source"),
        time=time,
        event=decode_event(event_type, data),
    )


def decode_event(event_type: type[Event], data: Mapping[str, object]) -> Event:
    """Build an event from its `data` object, checking every field's type."""
    hints, known = _schema(event_type)
    if unknown := sorted(set(data) - set(known)):
        raise EventFormatError(f"{event_type.kind}: unknown data field(s): {', '.join(unknown)}")
    values: dict[str, object] = {}
    for name, field in known.items():
        if name not in data:
            if field.default is MISSING:
                raise EventFormatError(f"{event_type.kind}: data.{name} is required")
            continue
        values[name] = _convert(event_type.kind, name, hints[name], data[name])
    return event_type(**values)  # type: ignore[arg-type]  # each value narrowed above


_Schema = tuple[dict[str, Any], dict[str, Field[Any]]]
_SCHEMAS: dict[type[Event], _Schema] = {}


def _schema(event_type: type[Event]) -> _Schema:
    """Field types and fields of an event class, resolved once: `get_type_hints` costs
    more than decoding the event itself."""
    found = _SCHEMAS.get(event_type)
    if found is None:
        hints = typing.get_type_hints(event_type)
        found = _SCHEMAS[event_type] = (hints, {f.name: f for f in fields(event_type)})
    return found


def _convert(kind: str, name: str, hint: object, value: object) -> object:
    """Narrow one JSON value to the declared field type."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if isinstance(value, list) and _is_changes(option):
            return tuple(_decode_change(kind, name, item) for item in value)
        if option is datetime and isinstance(value, str):
            try:
                return parse_time(value)
            except (ValueError, OverflowError):
                continue
        if (
            typing.get_origin(option) is tuple
            and isinstance(value, list)
            and all(isinstance(item, str) for item in value)
        ):
            return tuple(value)
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is str and isinstance(value, str):
            return value
    expected = " or ".join(_describe(option) for option in options)
    raise EventFormatError(f"{kind}: data.{name}: expected {expected}, got {value!r}")


def _is_changes(option: object) -> bool:
    """`tuple[Change, ...]`. The name is compared first: decoding a kind without changes
    does not load the event family that Change lives in."""
    args = typing.get_args(option)
    return (
        len(args) == 2
        and getattr(args[0], "__name__", None) == "Change"
        and args == (_events.Change, ...)
    )


def _decode_change(kind: str, name: str, item: object) -> Change:
    """One `{field, before, after}` object; values are strings, numbers, flags or lists."""
    if not isinstance(item, Mapping) or set(item) != {"field", "before", "after"}:
        raise EventFormatError(f"{kind}: data.{name}: expected {{field, before, after}} objects")
    field = item["field"]
    if not isinstance(field, str):
        raise EventFormatError(f"{kind}: data.{name}: field must be a string, got {field!r}")

    def value(raw: object) -> str | int | bool | tuple[str, ...] | None:
        if raw is None or isinstance(raw, str | int | bool):
            return raw
        if isinstance(raw, list) and all(isinstance(part, str) for part in raw):
            return tuple(raw)
        raise EventFormatError(f"{kind}: data.{name}: {field}: unexpected value {raw!r}")

    return _events.Change(field=field, before=value(item["before"]), after=value(item["after"]))


def _describe(option: object) -> str:
    if option is datetime:
        return "an ISO 8601 time"
    if typing.get_origin(option) is tuple:
        return "a list of strings"
    if option is type(None):
        return "null"
    return getattr(option, "__name__", str(option))


def _require_str(document: Mapping[str, object], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise EventFormatError(f"{key} must be a non-empty string, got {value!r}")
    return value
