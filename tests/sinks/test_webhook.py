"""The webhook sink against a real HTTP(S) server on loopback."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from lacme_watch.cloudevents import from_json, to_cloudevent
from lacme_watch.config import build
from lacme_watch.errors import ConfigError, SinkError
from lacme_watch.events import ChallengeFailed
from lacme_watch.options import parse_yaml
from lacme_watch.sinks.webhook import WebhookSink

from .conftest import WebServer, sample_envelopes


def sink_from(yaml_text: str) -> WebhookSink:
    text = (
        "stores:\n  - {type: pem, paths: [/tmp/x/*.pem]}\nsinks:\n  - type: webhook\n" + yaml_text
    )
    sink = build(parse_yaml(text, "c.yaml"), "c.yaml").sinks[0].sink
    assert isinstance(sink, WebhookSink)
    return sink


def test_structured_mode_posts_each_event_as_a_cloudevent(web_server: WebServer) -> None:
    envelopes = sample_envelopes()

    WebhookSink("hook", web_server.url).deliver(envelopes)

    assert [r.headers["content-type"] for r in web_server.requests] == [
        "application/cloudevents+json"
    ] * 3
    assert [from_json(r.body) for r in web_server.requests] == envelopes


def test_binary_mode_puts_attributes_in_ce_headers(web_server: WebServer) -> None:
    envelope = sample_envelopes()[1]

    WebhookSink("hook", web_server.url, mode="binary").deliver([envelope])

    (request,) = web_server.requests
    document = to_cloudevent(envelope)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["ce-specversion"] == "1.0"
    assert request.headers["ce-id"] == envelope.id
    assert request.headers["ce-type"] == "lacme.certificate_expiring"
    assert request.headers["ce-subject"] == "api.example.com"
    assert request.headers["ce-source"] == document["source"]
    assert request.json() == document["data"]


def test_binary_headers_percent_encode_hostile_values(web_server: WebServer) -> None:
    envelope = sample_envelopes()[2]
    assert isinstance(envelope.event, ChallengeFailed)
    hostile = replace(envelope, event=replace(envelope.event, domain="a b\r\nX-Injected: 1 é%"))

    WebhookSink("hook", web_server.url, mode="binary").deliver([hostile])

    (request,) = web_server.requests
    assert "x-injected" not in request.headers
    assert request.headers["ce-subject"] == "a%20b%0D%0AX-Injected:%201%20%C3%A9%25"


def test_batch_mode_posts_one_array_per_pass(web_server: WebServer) -> None:
    envelopes = sample_envelopes()

    WebhookSink("hook", web_server.url, batch=True).deliver(envelopes)

    (request,) = web_server.requests
    assert request.headers["content-type"] == "application/cloudevents-batch+json"
    assert [from_json(json.dumps(item)) for item in request.json()] == envelopes


def test_custom_headers_take_secrets_from_the_environment(
    web_server: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLLECTOR_TOKEN", "t0ken")
    sink = sink_from(
        f"    url: {web_server.url}\n"
        "    headers: {Authorization: 'Bearer ${COLLECTOR_TOKEN}', X-Fleet: eu-1}\n"
    )

    sink.deliver(sample_envelopes()[:1])

    headers = web_server.requests[0].headers
    assert (headers["authorization"], headers["x-fleet"]) == ("Bearer t0ken", "eu-1")


def test_429_is_retried_after_the_receivers_retry_after(web_server: WebServer) -> None:
    web_server.answers = [(429, {"Retry-After": "120"})]

    with pytest.raises(SinkError) as caught:
        WebhookSink("hook", web_server.url).deliver(sample_envelopes())

    assert caught.value.retry_after == timedelta(seconds=120)
    assert not caught.value.permanent
    assert caught.value.delivered == frozenset()


def test_5xx_is_retried_and_what_got_through_is_not_resent(web_server: WebServer) -> None:
    envelopes = sample_envelopes()
    web_server.answers = [(200, {}), (503, {})]

    with pytest.raises(SinkError) as caught:
        WebhookSink("hook", web_server.url).deliver(envelopes)

    assert "answered 503" in caught.value.reason
    assert caught.value.permanent is False
    assert caught.value.delivered == frozenset({envelopes[0].id})


def test_other_4xx_are_permanent(web_server: WebServer) -> None:
    web_server.answers = [(400, {})]

    with pytest.raises(SinkError) as caught:
        WebhookSink("hook", web_server.url).deliver(sample_envelopes()[:1])

    assert caught.value.permanent
    assert "answered 400" in caught.value.reason


def test_https_is_verified_against_ca_file(tls_web_server: WebServer, ca_file: Path) -> None:
    with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED"):
        WebhookSink("hook", tls_web_server.url).deliver(sample_envelopes()[:1])
    assert tls_web_server.requests == []

    WebhookSink("hook", tls_web_server.url, ca_file=str(ca_file)).deliver(sample_envelopes()[:1])

    assert len(tls_web_server.requests) == 1


def test_a_closed_port_is_a_retryable_failure() -> None:
    with pytest.raises(SinkError) as caught:
        WebhookSink("hook", "http://127.0.0.1:9/", timeout=timedelta(seconds=2)).deliver(
            sample_envelopes()[:1]
        )
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        pytest.param(
            "    url: ftp://x.example/\n", "c.yaml:5: sinks[0].url: not an http(s) URL", id="scheme"
        ),
        pytest.param(
            "    url: https://x.example/\n    mode: binary\n    batch: true\n",
            "batches exist in structured mode only",
            id="binary-batch",
        ),
        pytest.param(
            "    url: https://x.example/\n    mode: soap\n", "expected one of structured", id="mode"
        ),
    ],
)
def test_configuration_mistakes(yaml_text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sink_from(yaml_text)
    assert message in str(caught.value)
