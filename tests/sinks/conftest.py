"""Real servers on loopback for the sink tests: SMTP (aiosmtpd) and HTTP(S)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from lacme_watch.events import CertificateExpiring, CertificateRenewed, ChallengeFailed
from lacme_watch.events.cloudevents import Envelope, wrap

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def sample_envelopes() -> list[Envelope]:
    """Three events of three kinds, as one pass might produce them."""
    renewed = CertificateRenewed(
        domain="shop.example.com",
        domains=("shop.example.com",),
        expires_at=NOW + timedelta(days=90),
        previous_expires_at=NOW + timedelta(days=5),
        store="lacme:/etc/lacme",
    )
    expiring = CertificateExpiring(
        domain="api.example.com",
        domains=("api.example.com", "www.api.example.com"),
        expires_at=datetime(2026, 12, 1, 12, tzinfo=UTC),
        days_remaining=9,
        threshold="14d",
        store="lacme:/etc/lacme",
    )
    failed = ChallengeFailed(domain="new.example.com", challenge_type="http-01", error="404")
    return [wrap(event, host="web1.example.com", time=NOW) for event in (renewed, expiring, failed)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """What the SMTP server received."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


def _server_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def _start(mailbox: Mailbox, **options: Any) -> Controller:
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port, **options)
    controller.start()
    return controller


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    mailbox = Mailbox("127.0.0.1", free_port())
    controller = _start(mailbox)
    yield mailbox
    controller.stop()


@pytest.fixture
def smtp_starttls_server(tls_ca: trustme.CA) -> Iterator[Mailbox]:
    """STARTTLS required, and a login: what a real submission server asks."""
    mailbox = Mailbox("127.0.0.1", free_port())

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            mailbox.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=data.password == b"s3cret pass")
        return AuthResult(success=False)

    controller = _start(
        mailbox,
        tls_context=_server_context(tls_ca),
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    yield mailbox
    controller.stop()


@pytest.fixture
def smtp_tls_server(tls_ca: trustme.CA) -> Iterator[Mailbox]:
    """Implicit TLS from the first byte (SMTPS, port 465 style)."""
    mailbox = Mailbox("127.0.0.1", free_port())
    controller = _start(mailbox, ssl_context=_server_context(tls_ca))
    yield mailbox
    controller.stop()


@dataclass
class Recorded:
    """One HTTP request the test server received."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebServer:
    """A real HTTP(S) server on loopback; `answers` scripts the next responses."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)
    """CloudEvent type -> the status answered for a structured event of that type."""


def _event_type(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("type") if isinstance(document, dict) else None


def _serve(tls: ssl.SSLContext | None) -> Iterator[WebServer]:
    server_box: list[WebServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            web = server_box[0]
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            web.requests.append(
                Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status, headers = web.answers.pop(0) if web.answers else (200, {})
            kind = _event_type(body)
            if kind in web.refuse:
                status, headers = web.refuse[kind], {}
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            payload = b"" if status < 300 else b"nope"
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls else "http"
    server_box.append(WebServer(f"{scheme}://127.0.0.1:{httpd.server_address[1]}/events"))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server_box[0]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def web_server() -> Iterator[WebServer]:
    yield from _serve(None)


@pytest.fixture
def tls_web_server(tls_ca: trustme.CA) -> Iterator[WebServer]:
    yield from _serve(_server_context(tls_ca))
