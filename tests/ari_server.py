"""A small RFC 9773 ACME server for tests: a directory and renewalInfo on loopback HTTP.

Debian's pebble 2.4 has no renewalInfo, so this stands in for a CA's ARI: real HTTP on
127.0.0.1, real certificates (given as the files a client saved), certIDs computed here
independently of lacme-watch (the serial's DER bytes are taken from the certificate's
own encoding, not re-encoded), windows as Let's Encrypt's Boulder computes them unless
moved, Retry-After, injected failures, and a count of every request.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .acme import free_port


def _tlv(der: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `offset`."""
    tag = der[offset]
    length = der[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    return tag, start, start + length


def raw_serial(certificate: x509.Certificate) -> bytes:
    """The serialNumber INTEGER's content octets exactly as the certificate encodes them."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    _, certificate_start, _ = _tlv(der, 0)  # Certificate SEQUENCE
    _, position, _ = _tlv(der, certificate_start)  # tbsCertificate SEQUENCE
    tag, start, end = _tlv(der, position)
    if tag == 0xA0:  # [0] EXPLICIT version
        tag, start, end = _tlv(der, end)
    assert tag == 0x02, "serialNumber is an INTEGER"
    return der[start:end]


def server_cert_id(certificate: x509.Certificate) -> str:
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    key_id = aki.value.key_identifier
    assert key_id is not None

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{b64(key_id)}.{b64(raw_serial(certificate))}"


def boulder_window(certificate: x509.Certificate) -> tuple[datetime, datetime]:
    """Let's Encrypt's usual window (Boulder core.RenewalInfoSimple): centred two thirds
    into the lifetime (one half under ten days), 1% of the lifetime either side."""
    issued, expires = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    validity = expires + timedelta(seconds=1) - issued
    offset = validity / 2 if validity < timedelta(days=10) else validity / 3
    ideal = expires - offset
    margin = validity / 100
    return (ideal - margin).replace(microsecond=0), (ideal + margin).replace(microsecond=0)


@dataclass
class Window:
    start: datetime
    end: datetime
    explanation_url: str | None = None


class AriServer:
    """Start with `AriServer()`, `.add()` certificates, `.stop()` at the end."""

    def __init__(self, *, renewal_info: bool = True, tls: trustme.CA | None = None) -> None:
        self.with_renewal_info = renewal_info
        self.renewal_info_base: str | None = None
        """Advertise renewalInfo under another base URL (another host) than the directory."""
        self.windows: dict[str, Window] = {}
        self.retry_after: str | None = "21600"
        self.fail_status: int | None = None
        """Answer renewalInfo (and the directory when `fail_directory`) with this status."""
        self.fail_directory = False
        self.redirect_to: str | None = None
        """Answer renewalInfo with a 302 to this base URL instead."""
        self.delay = 0.0
        """Seconds to sleep before answering renewalInfo: a CA that hangs."""
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # the stdlib's name
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self._http = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._http.daemon_threads = True
        scheme = "http"
        if tls is not None:  # a real TLS certificate for 127.0.0.1 from the given CA
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.issue_cert("127.0.0.1").configure_cert(context)
            self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
            scheme = "https"
        self.base = f"{scheme}://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def directory(self) -> str:
        return f"{self.base}/directory"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def add(self, certificate: x509.Certificate | Path) -> str:
        """Know a certificate (or the first in a PEM file); its usual window; its certID."""
        if isinstance(certificate, Path):
            certificate = x509.load_pem_x509_certificates(certificate.read_bytes())[0]
        identifier = server_cert_id(certificate)
        start, end = boulder_window(certificate)
        with self._lock:
            self.windows[identifier] = Window(start, end)
        return identifier

    def move(
        self, identifier: str, start: datetime, end: datetime, explanation_url: str | None = None
    ) -> None:
        with self._lock:
            self.windows[identifier] = Window(start, end, explanation_url)

    def count(self, prefix: str = "/") -> int:
        with self._lock:
            return sum(n for path, n in self.requests.items() if path.startswith(prefix))

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        with self._lock:
            self.requests[path] += 1
        if path == "/directory":
            if self.fail_directory and self.fail_status:
                return self._send(request, self.fail_status, {"detail": "broken"})
            directory = {
                "newNonce": f"{self.base}/new-nonce",
                "newAccount": f"{self.base}/new-account",
                "newOrder": f"{self.base}/new-order",
            }
            if self.with_renewal_info:
                directory["renewalInfo"] = f"{self.renewal_info_base or self.base}/renewal-info"
            return self._send(request, 200, directory)
        if path.startswith("/renewal-info/") and self.with_renewal_info:
            if self.delay:
                time.sleep(self.delay)
            if self.redirect_to:
                target = self.redirect_to + path
                return self._send(request, 302, {}, {"Location": target})
            if self.fail_status:
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return self._send(request, self.fail_status, {"detail": "try later"}, headers)
            identifier = path.removeprefix("/renewal-info/")
            if identifier.count(".") != 1:
                return self._send(request, 400, {"type": "urn:ietf:params:acme:error:malformed"})
            with self._lock:
                window = self.windows.get(identifier)
            if window is None:
                return self._send(request, 404, {"type": "urn:ietf:params:acme:error:malformed"})
            body: dict[str, object] = {
                "suggestedWindow": {
                    "start": window.start.isoformat().replace("+00:00", "Z"),
                    "end": window.end.isoformat().replace("+00:00", "Z"),
                }
            }
            if window.explanation_url:
                body["explanationURL"] = window.explanation_url
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return self._send(request, 200, body, headers)
        return self._send(request, 404, {"detail": "not here"})

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler,
        status: int,
        body: object,
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = json.dumps(body).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a timeout test)
