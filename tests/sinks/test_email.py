"""The email sink against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lacme_watch import testing
from lacme_watch.config import build
from lacme_watch.errors import ConfigError, SinkError
from lacme_watch.events import (
    EVENT_TYPES,
    CertificateRevoked,
    ChainProblem,
    ChallengeFailed,
    CrlExpiring,
)
from lacme_watch.events.cloudevents import wrap
from lacme_watch.options import parse_yaml
from lacme_watch.sinks.email import EmailSink

from .conftest import Mailbox, free_port, sample_envelopes


def sink_from(yaml_text: str) -> EmailSink:
    text = "stores:\n  - {type: pem, paths: [/tmp/x/*.pem]}\nsinks:\n" + yaml_text
    config = build(parse_yaml(text, "c.yaml"), "c.yaml")
    sink = config.sinks[0].sink
    assert isinstance(sink, EmailSink)
    return sink


def plain_sink(mailbox: Mailbox, **extra: str) -> EmailSink:
    lines = "".join(f"    {key}: {value}\n" for key, value in extra.items())
    return sink_from(
        "  - type: email\n"
        f"    smtp: {{host: {mailbox.host}, port: {mailbox.port}}}\n"
        "    from: lacme-watch@web1.example.com\n"
        "    to: [ops@example.com, oncall@example.com]\n" + lines
    )


def test_one_digest_per_pass_to_every_recipient(smtp_server: Mailbox) -> None:
    sink = plain_sink(smtp_server)

    sink.deliver(sample_envelopes())

    assert len(smtp_server.messages) == 1
    assert smtp_server.envelopes == [
        ("lacme-watch@web1.example.com", ["ops@example.com", "oncall@example.com"])
    ]
    message = smtp_server.messages[0]
    assert message["From"] == "lacme-watch@web1.example.com"
    assert message["To"] == "ops@example.com, oncall@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Subject"] == (
        "[lacme-watch] web1.example.com: 3 events: 1 certificate_expiring,"
        " 1 challenge_failed, 1 certificate_renewed"
    )
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    plain = text.get_content()
    # Most urgent first; each domain with its expiry date and days left.
    assert (
        plain.index("Expiring (1)") < plain.index("Challenge failed (1)") < plain.index("Renewed")
    )
    assert "api.example.com expires 2026-12-01 (9 days left)" in plain
    assert "shop.example.com renewed, expires 2027-02-20 (was 2026-11-27)" in plain
    assert "<li>api.example.com expires 2026-12-01 (9 days left)</li>" in html.get_content()


def test_every_kind_gets_its_own_heading_in_urgency_order(smtp_server: Mailbox) -> None:
    """Headings come from the event classes, so a new kind cannot show its raw name."""
    batch = testing.sample_envelopes()
    assert {e.event.kind for e in batch} == set(EVENT_TYPES)

    plain_sink(smtp_server).deliver(batch)

    text = smtp_server.messages[0].get_body(("plain",))
    assert text is not None
    lines = text.get_content().splitlines()
    by_urgency = sorted(EVENT_TYPES.values(), key=lambda cls: cls.urgency)
    headings = [line for line in lines if line and not line.startswith((" ", "lacme-", "Event"))]
    assert headings == [f"{cls.heading} (1)" for cls in by_urgency]
    assert {"Revoked (1)", "Served but not reloaded (1)", "Heartbeat (1)"} <= set(headings)
    assert not {line for line in headings if line.split(" (")[0] in EVENT_TYPES}  # no raw names


def test_every_kind_declares_its_presentation() -> None:
    for kind, cls in EVENT_TYPES.items():
        assert "heading" in vars(cls), f"{kind} has no heading of its own"
        assert "urgency" in vars(cls), f"{kind} has no urgency of its own"
    urgencies = [cls.urgency for cls in EVENT_TYPES.values()]
    assert len(set(urgencies)) == len(urgencies), "two kinds share an urgency"


def test_a_single_event_gets_its_summary_as_subject(smtp_server: Mailbox) -> None:
    plain_sink(smtp_server, subject="'{summary} on {host}'").deliver(sample_envelopes()[1:2])

    assert smtp_server.messages[0]["Subject"] == (
        "certificate_expiring: api.example.com expires 2026-12-01 (9 days left) on web1.example.com"
    )


def test_html_and_headers_are_safe_from_hostile_domains(smtp_server: Mailbox) -> None:
    envelope = sample_envelopes()[2]
    hostile = ChallengeFailed(
        domain="<script>x</script>\r\nBcc: victim@example.com",
        challenge_type="http-01",
        error="x",
    )
    plain_sink(smtp_server).deliver([replace(envelope, event=hostile)])

    message = smtp_server.messages[0]
    assert message["Bcc"] is None
    assert smtp_server.envelopes[0][1] == ["ops@example.com", "oncall@example.com"]
    html = message.get_body(("html",))
    assert html is not None
    assert "<script>" not in html.get_content()


def test_starttls_with_login_from_a_password_file(
    smtp_starttls_server: Mailbox, ca_file: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret pass\n")
    sink = sink_from(
        "  - type: email\n"
        f"    smtp: {{host: localhost, port: {smtp_starttls_server.port}, security: starttls,"
        f" username: lacme, password_file: {secret}, ca_file: {ca_file}}}\n"
        "    from: a@example.com\n    to: b@example.com\n"
    )

    sink.deliver(sample_envelopes())

    assert smtp_starttls_server.logins == [("lacme", "s3cret pass")]
    assert len(smtp_starttls_server.messages) == 1


def test_implicit_tls(smtp_tls_server: Mailbox, ca_file: Path) -> None:
    sink = sink_from(
        "  - type: email\n"
        f"    smtp: {{host: localhost, port: {smtp_tls_server.port}, security: tls,"
        f" ca_file: {ca_file}}}\n"
        "    from: a@example.com\n    to: b@example.com\n"
    )

    sink.deliver(sample_envelopes())

    assert len(smtp_tls_server.messages) == 1


def test_starttls_refuses_an_untrusted_server(smtp_starttls_server: Mailbox) -> None:
    sink = EmailSink(
        "mail",
        sender="a@example.com",
        recipients=["b@example.com"],
        host="localhost",
        port=smtp_starttls_server.port,
        security="starttls",
    )
    with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED"):
        sink.deliver(sample_envelopes())
    assert smtp_starttls_server.messages == []


def test_the_password_can_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, smtp_starttls_server: Mailbox, ca_file: Path
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret pass")
    sink = sink_from(
        "  - type: email\n"
        f"    smtp: {{host: localhost, port: {smtp_starttls_server.port}, security: starttls,"
        f" username: lacme, password: '${{SMTP_PASSWORD}}', ca_file: {ca_file}}}\n"
        "    from: a@example.com\n    to: b@example.com\n"
    )
    sink.deliver(sample_envelopes())
    assert smtp_starttls_server.logins == [("lacme", "s3cret pass")]


@pytest.mark.parametrize(
    ("smtp", "message"),
    [
        pytest.param(
            "{host: mail.example.com, username: u, password: hunter2}",
            "c.yaml:5: sinks[0].smtp.password: a secret must come from ${ENV_VAR} or password_file",
            id="plain-text-password",
        ),
        pytest.param(
            "{host: mail.example.com, username: u}",
            "username and password go together",
            id="half-credentials",
        ),
        pytest.param(
            "{host: mail.example.com, security: ssl}",
            "smtp.security: expected one of starttls, tls, none, got 'ssl'",
            id="bad-security",
        ),
        pytest.param(
            "{host: mail.example.com, password_file: /nonexistent/pw, username: u}",
            "cannot read /nonexistent/pw",
            id="unreadable-password-file",
        ),
    ],
)
def test_configuration_mistakes(smtp: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sink_from(
            f"  - type: email\n    smtp: {smtp}\n    from: a@x.example\n    to: b@x.example\n"
        )
    assert message in str(caught.value)


def test_a_bad_subject_template_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="placeholders"):
        sink_from(
            "  - type: email\n    from: a@x.example\n    to: b@x.example\n    subject: '{nope}'\n"
        )


def test_a_server_that_is_down_queues_the_digest_until_it_is_back(tmp_path: Path) -> None:
    """End to end: the outbox keeps the digest while SMTP is down, then sends it once."""
    from lacme_watch.config import Config
    from lacme_watch.dispatch.delivery import RetryPolicy, SinkRoute
    from lacme_watch.dispatch.ingest import record
    from lacme_watch.statedb import StateStore

    from .conftest import NOW, _start

    port = free_port()
    sink = EmailSink(
        "mail",
        sender="a@example.com",
        recipients=["b@example.com"],
        host="127.0.0.1",
        port=port,
        timeout=5,
    )
    config = Config(
        path=None,
        state_dir=tmp_path / "state",
        host="web1",
        stores=(),
        authorities=(),
        sinks=(SinkRoute(sink=sink),),
        retry=RetryPolicy(initial=timedelta(minutes=1)),
    )
    events = [envelope.event for envelope in sample_envelopes()]
    with StateStore(config.state_dir) as store:
        _, down = record(config, store, events, NOW)
        assert "mail" in down.failures
        assert "Connection refused" in down.failures["mail"]
        assert len(store.pending()) == 3

        mailbox = Mailbox("127.0.0.1", port)
        controller = _start(mailbox)
        try:
            from lacme_watch.dispatch.delivery import drain

            up = drain(store, config.sinks, NOW + timedelta(hours=1), config.retry)
        finally:
            controller.stop()

        assert (up.delivered, up.failures) == (3, {})
        assert len(mailbox.messages) == 1  # one digest, not three mails
        assert store.pending() == []


def test_lapsing_crls_revocations_and_chains_come_right_after_expiry(smtp_server: Mailbox) -> None:
    when = datetime(2026, 11, 22, tzinfo=UTC)
    news = [
        ChainProblem(
            domain="shop.example.com",
            location="shop.example.com:443",
            reason="expired",
            certificate_subject="CN=Old Intermediate",
            certificate_serial="01",
            certificate_fingerprint="ab" * 32,
            certificate_not_after=when,
        ),
        CrlExpiring(
            authority="VPN CA", path="/etc/openvpn/crl.pem", next_update=when, days_remaining=1
        ),
        CertificateRevoked(
            domain="vpn.example.com",
            domains=("vpn.example.com",),
            expires_at=when,
            reason="keyCompromise",
            revoked_at=when,
        ),
    ]
    plain_sink(smtp_server).deliver(
        [*sample_envelopes(), *(wrap(e, host="web1.example.com", time=when) for e in news)]
    )

    text = smtp_server.messages[0].get_body(("plain",))
    assert text is not None
    plain = text.get_content()
    order = ["Expiring (1)", "CRL about to lapse (1)", "Revoked (1)", "Broken chains (1)"]
    assert [plain.index(heading) for heading in order] == sorted(
        plain.index(heading) for heading in order
    )
    assert "shop.example.com at shop.example.com:443: expired (CN=Old Intermediate" in plain
