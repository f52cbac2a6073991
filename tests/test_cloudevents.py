"""CloudEvents 1.0 JSON: exact round trips, stable ids, clear errors for bad input."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import lacme.events as lacme_events
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lacme_watch.errors import EventFormatError
from lacme_watch.events import (
    EVENT_TYPES,
    CACertificateIssued,
    CertificateAuthorityInitialized,
    CertificateExpiring,
    CertificateIssued,
    CertificateRenewed,
    ChallengeFailed,
    Event,
    RateLimitWarning,
    lacme_fields,
)
from lacme_watch.events.cloudevents import (
    Envelope,
    event_id,
    from_json,
    to_cloudevent,
    to_json,
    uuid5_text,
    wrap,
)
from lacme_watch.testing import sample_envelopes

T = datetime(2026, 11, 22, 18, 52, 43, tzinfo=UTC)
T2 = datetime(2031, 11, 22, 18, 52, 43, 366241, tzinfo=UTC)

SAMPLES: list[Event] = [
    CertificateIssued(domain="a.example", domains=("a.example", "www.a.example"), expires_at=T2),
    CertificateRenewed(
        domain="a.example",
        domains=("a.example",),
        expires_at=T2,
        previous_expires_at=T,
        store="lacme:/etc/lacme",
        lineage="certs/a.example",
        fingerprint="ab" * 32,
        serial="0A",
        issuer="CN=R11,O=Let's Encrypt,C=US",
        not_before=T,
        path="/etc/lacme/x",
    ),
    CertificateExpiring(
        domain="a.example", domains=("a.example",), expires_at=T, days_remaining=-1, threshold="7d"
    ),
    ChallengeFailed(domain="a.example", challenge_type="http-01", error="connection refused"),
    RateLimitWarning(registered_domain="example.com", current_count=45, limit=50, window_hours=168),
    CertificateAuthorityInitialized(cn="Internal CA", expires_at=T2),
    CACertificateIssued(
        name="vpn", names=("vpn", "10.0.0.1"), is_client=True, expires_at=T, ca="CA"
    ),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: event.kind)
def test_every_kind_round_trips_exactly(event: Event) -> None:
    envelope = wrap(event, host="web1.example.com", time=T)

    line = to_json(envelope)
    decoded = from_json(line)

    assert decoded == envelope
    assert to_json(decoded) == line
    assert "\n" not in line


def test_the_seven_lacme_kinds_have_lacmes_names_and_fields() -> None:
    for lacme_type, name in lacme_events._EVENT_NAMES.items():
        ours = EVENT_TYPES[name]
        assert lacme_fields(ours)[: len(lacme_type.__slots__)] == lacme_type.__slots__, name


def test_the_cloudevent_attributes_follow_the_spec() -> None:
    event = CertificateExpiring(
        domain="a.example",
        domains=("a.example", "b.example"),
        expires_at=T2,
        days_remaining=9,
        store="lacme:/etc/lacme",
    )
    document = to_cloudevent(wrap(event, host="web1", time=T))

    assert document["specversion"] == "1.0"
    assert document["type"] == "lacme.certificate_expiring"
    assert document["source"] == "lacme-watch://web1/lacme:/etc/lacme"
    assert document["subject"] == "a.example"
    assert document["datacontenttype"] == "application/json"
    assert document["time"] == "2026-11-22T18:52:43Z"
    assert document["data"] == {
        "domain": "a.example",
        "domains": ["a.example", "b.example"],
        "expires_at": "2031-11-22T18:52:43.366241Z",
        "days_remaining": 9,
        "store": "lacme:/etc/lacme",
    }


@pytest.mark.parametrize(
    ("event", "subject"),
    [
        pytest.param(SAMPLES[3], "a.example", id="challenge-domain"),
        pytest.param(SAMPLES[4], "example.com", id="rate-limit-registered-domain"),
        pytest.param(SAMPLES[5], "Internal CA", id="ca-common-name"),
        pytest.param(SAMPLES[6], "CA", id="ca-issued-names-the-ca"),
    ],
)
def test_subject(event: Event, subject: str) -> None:
    assert to_cloudevent(wrap(event, host="h", time=T))["subject"] == subject


def test_the_same_detected_event_always_gets_the_same_id() -> None:
    first = CertificateExpiring(
        domain="a",
        domains=("a",),
        expires_at=T,
        days_remaining=9,
        threshold="14d",
        lineage="certs/a",
        fingerprint="ff",
    )
    later = CertificateExpiring(
        domain="a",
        domains=("a",),
        expires_at=T,
        days_remaining=8,
        threshold="14d",
        lineage="certs/a",
        fingerprint="ff",
    )
    other = CertificateExpiring(
        domain="a",
        domains=("a",),
        expires_at=T,
        days_remaining=6,
        threshold="7d",
        lineage="certs/a",
        fingerprint="ff",
    )

    assert event_id("h", first) == event_id("h", later)
    assert event_id("h", first) != event_id("h", other)
    assert event_id("h", first) != event_id("other-host", first)


def _document(**changes: object) -> str:
    document = to_cloudevent(wrap(SAMPLES[3], host="h", time=T))
    for key, value in changes.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{not json", "not JSON", id="not-json"),
        pytest.param("[]", "must be a JSON object", id="not-an-object"),
        pytest.param(_document(specversion="0.3"), "specversion must be '1.0'", id="specversion"),
        pytest.param(_document(type="lacme.unknown_kind"), "unknown event type", id="unknown-type"),
        pytest.param(_document(type="com.example.x"), "unknown event type", id="foreign-type"),
        pytest.param(_document(id=""), "id must be a non-empty string", id="empty-id"),
        pytest.param(_document(time="yesterday"), "time is not ISO 8601", id="bad-time"),
        pytest.param(_document(data=None), "data must be a JSON object", id="no-data"),
        pytest.param(_document(extra=1), "unknown CloudEvent attribute(s): extra", id="extra-attr"),
        pytest.param(
            _document(data={"domain": "a", "challenge_type": "http-01"}),
            "challenge_failed: data.error is required",
            id="missing-field",
        ),
        pytest.param(
            _document(data={"domain": "a", "challenge_type": 1, "error": "x"}),
            "data.challenge_type: expected str, got 1",
            id="wrong-type",
        ),
        pytest.param(
            _document(data={"domain": "a", "challenge_type": "x", "error": "x", "colour": "red"}),
            "unknown data field(s): colour",
            id="unknown-field",
        ),
        pytest.param(
            _document(datacontenttype="text/plain"),
            "datacontenttype must be application/json",
            id="content-type",
        ),
    ],
)
def test_malformed_cloudevents_are_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(EventFormatError, match=re.escape(message)):
        from_json(text)


def test_integers_are_not_booleans_on_decode() -> None:
    document = json.loads(to_json(wrap(SAMPLES[4], host="h", time=T)))
    document["data"]["limit"] = True

    with pytest.raises(EventFormatError, match=r"data\.limit: expected int"):
        from_json(json.dumps(document))


def test_event_ids_are_those_earlier_versions_recorded() -> None:
    """Ids are how receivers and the history deduplicate: they never change."""
    event = CertificateExpiring(
        domain="a",
        domains=("a",),
        expires_at=T,
        days_remaining=9,
        threshold="14d",
        lineage="certs/a",
        fingerprint="ff",
        store="pem:/etc/ssl",
    )
    assert [
        event_id("web1", event),
        event_id("web1", event, "salt"),
        event_id("wéb", event, "s"),
    ] == [
        "19e339b5-72ef-53c1-b1af-817b8c531879",
        "d53eeae9-7a9c-57ef-b424-7504dfee31c4",
        "28905568-ee49-5d91-9b87-911a79e546cd",
    ]


@given(namespace=st.uuids(), name=st.text())
def test_uuid5_text_is_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert uuid5_text(namespace.bytes, name) == str(uuid.uuid5(namespace, name))


def test_an_envelope_is_serialised_once_and_a_renamed_copy_anew() -> None:
    envelope = wrap(
        ChallengeFailed(domain="a.example", challenge_type="dns-01", error="x"), host="h", time=T
    )
    line = to_json(envelope)
    assert to_json(envelope) is line  # the outbox row and the log line are one string
    renamed = replace(envelope, id="renamed")
    assert json.loads(to_json(renamed))["id"] == "renamed"
    assert renamed == replace(envelope, id="renamed")  # the kept line is not compared
    assert renamed != envelope
    assert "_json" not in repr(envelope)


_ORACLE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""How the wire line was made before to_json() wrote it field by field: the oracle."""


@pytest.mark.parametrize("envelope", sample_envelopes(T), ids=lambda e: e.event.kind)
def test_the_line_of_every_kind_is_what_the_json_encoder_writes(envelope: Envelope) -> None:
    assert to_json(envelope) == _ORACLE.encode(to_cloudevent(envelope))


_ANY_TEXT = st.text(st.characters(blacklist_categories=()))
"""Every code point, lone surrogates included (st.text() alone never draws one)."""


@given(
    text=_ANY_TEXT,
    names=st.lists(_ANY_TEXT, max_size=3),
    number=st.integers(),
    moment=st.datetimes(timezones=st.just(UTC)),
)
def test_hostile_field_values_are_written_as_the_json_encoder_writes_them(
    text: str, names: list[str], number: int, moment: datetime
) -> None:
    """Control characters, quotes, backslashes, lone surrogates, any integer."""
    event = CertificateExpiring(
        domain=text or "x",
        domains=tuple(names),
        expires_at=moment,
        days_remaining=number,
        threshold=text,
        path=text,
        test=bool(number % 2),
    )
    # The host is configuration, which refuses a lone surrogate (options._SURROGATE).
    envelope = wrap(event, host="h", time=moment, id=text or "i")

    assert to_json(envelope) == _ORACLE.encode(to_cloudevent(envelope))
