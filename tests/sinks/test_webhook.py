"""The webhook sink against a real HTTP(S) server on loopback."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from lacme import CertificateAuthority

from lacme_watch.config import build
from lacme_watch.dispatch.delivery import DeliveryReport, RetryPolicy, SinkRoute, drain
from lacme_watch.errors import ConfigError, SinkError
from lacme_watch.events import ChallengeFailed
from lacme_watch.events.cloudevents import from_json, to_cloudevent
from lacme_watch.options import parse_yaml
from lacme_watch.sinks.webhook import WebhookSink
from lacme_watch.statedb import StateStore

from ..conftest import CliRunner
from .conftest import NOW, WebServer, free_port, sample_envelopes


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
    assert caught.value.delivered == {envelopes[0].id, envelopes[2].id}
    assert caught.value.failed == frozenset({envelopes[1].id})


def test_other_4xx_reject_that_event_for_good(web_server: WebServer) -> None:
    web_server.answers = [(400, {})]
    envelope = sample_envelopes()[0]

    with pytest.raises(SinkError) as caught:
        WebhookSink("hook", web_server.url).deliver([envelope])

    assert list(caught.value.rejected) == [envelope.id]
    assert "answered 400" in caught.value.rejected[envelope.id]


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


def _drain(sink: WebhookSink, tmp_path: Path) -> tuple[StateStore, DeliveryReport]:
    """The three sample events through the real outbox and drain()."""
    store = StateStore(tmp_path / "state")
    store.record_events([(envelope, ["hook"]) for envelope in sample_envelopes()], NOW)
    return store, drain(store, [SinkRoute(sink=sink)], NOW, RetryPolicy())


def _states(store: StateStore) -> dict[str, tuple[str, int]]:
    return {
        entry.envelope.event.kind: (
            entry.deliveries["hook"].state,
            entry.deliveries["hook"].attempts,
        )
        for entry in store.history()
    }


def test_one_refused_event_is_rejected_alone_and_the_others_are_sent(
    web_server: WebServer, tmp_path: Path
) -> None:
    web_server.refuse = {"lacme.certificate_renewed": 400}

    store, report = _drain(WebhookSink("hook", web_server.url), tmp_path)

    assert [r.json()["type"] for r in web_server.requests] == [
        "lacme.certificate_renewed",
        "lacme.certificate_expiring",
        "lacme.challenge_failed",
    ]
    assert _states(store) == {
        "certificate_renewed": ("rejected", 1),
        "certificate_expiring": ("delivered", 1),
        "challenge_failed": ("delivered", 1),
    }
    assert [row.envelope.event.kind for row in report.rejected] == ["certificate_renewed"]
    assert report.delivered == 2


def test_a_5xx_for_one_event_retries_that_event_and_sends_the_others(
    web_server: WebServer, tmp_path: Path
) -> None:
    web_server.refuse = {"lacme.certificate_expiring": 503}

    store, report = _drain(WebhookSink("hook", web_server.url), tmp_path)

    assert _states(store) == {
        "certificate_renewed": ("delivered", 1),
        "certificate_expiring": ("retrying", 1),
        "challenge_failed": ("delivered", 1),
    }
    assert report.retrying["hook"].events == 1
    assert "answered 503" in report.retrying["hook"].last_error


def test_an_unreachable_receiver_counts_an_attempt_only_for_the_event_tried(
    tmp_path: Path,
) -> None:
    sink = WebhookSink("hook", f"http://127.0.0.1:{free_port()}/", timeout=timedelta(seconds=2))

    store, report = _drain(sink, tmp_path)

    assert _states(store) == {
        "certificate_renewed": ("retrying", 1),
        "certificate_expiring": ("pending", 0),
        "challenge_failed": ("pending", 0),
    }
    assert not report.ok


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_retried_until_the_token_is_fixed(
    web_server: WebServer, status: int
) -> None:
    web_server.answers = [(status, {})]

    with pytest.raises(SinkError) as caught:
        WebhookSink("hook", web_server.url).deliver(sample_envelopes()[:1])

    assert not caught.value.permanent
    assert caught.value.rejected == {}
    assert caught.value.failed == frozenset({sample_envelopes()[0].id})


def test_the_url_expands_env_and_errors_redact_userinfo_and_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t")
    sink = sink_from(
        f"    url: 'http://user:pw@127.0.0.1:{port}/in?token=${{HOOK_TOKEN}}'\n    timeout: 2s\n"
    )
    assert sink.url == f"http://user:pw@127.0.0.1:{port}/in?token=s3cr3t"

    with pytest.raises(SinkError) as caught:
        sink.deliver(sample_envelopes()[:1])

    assert f"http://***@127.0.0.1:{port}/in?***" in caught.value.reason
    assert "s3cr3t" not in str(caught.value)
    assert ":pw@" not in str(caught.value)


def test_a_pass_whose_issued_event_is_refused_still_sends_the_cas_event(
    cli: CliRunner,
    web_server: WebServer,
    tmp_path: Path,
    store_dir: Path,
    lacme_ca: CertificateAuthority,
) -> None:
    """The issue's case: one pass, `certificate_issued` refused (400), the same pass's
    `ca_certificate_issued` must still be POSTed and delivered."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: lacme, path: {store_dir}}}\n"
        f"authorities:\n  - {{type: lacme, path: {store_dir}, name: root}}\n"
        f"sinks:\n  - {{type: webhook, name: collector, url: '{web_server.url}'}}\n"
    )
    assert cli("--config", str(config), "watch", "--once").code == 0  # baseline
    web_server.requests.clear()
    web_server.refuse = {"lacme.certificate_issued": 400}
    lacme_ca.issue(["app.internal"], validity_days=30)

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1
    assert sorted(r.json()["type"] for r in web_server.requests) == [
        "lacme.ca_certificate_issued",
        "lacme.certificate_issued",
    ]
    assert "sink collector: rejected certificate_issued: app.internal" in result.err
    history = cli("--config", str(config), "events", "--json").json()
    assert isinstance(history, list)
    assert {
        e["event"]["type"]: e["deliveries"]["collector"]
        for e in history
        if e["event"]["type"] != "lacme.ca_initialized"
    } == {
        "lacme.certificate_issued": "rejected",
        "lacme.ca_certificate_issued": "delivered",
    }
