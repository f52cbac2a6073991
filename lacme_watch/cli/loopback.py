"""Servers on loopback for the demo (and tests): a TLS endpoint, and an ACME CA's
directory with RFC 9773 renewalInfo."""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class TlsServer:
    """Serves one certificate on 127.0.0.1 (any free port) until stopped; `serve()` swaps it,
    as a server reload would. Each connection is answered with a handshake, nothing more."""

    def __init__(self, chain_pem: bytes, key_pem: bytes) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="lacme-watch-tls-")
        self.serve(chain_pem, key_pem)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def serve(self, chain_pem: bytes, key_pem: bytes) -> None:
        directory = Path(self._directory.name)
        (directory / "chain.pem").write_bytes(chain_pem)
        (directory / "key.pem").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "chain.pem", directory / "key.pem")
        self._context = context

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            try:
                with self._context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except OSError:  # a client that hangs up mid-handshake is no test failure
                pass

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._listener.close()
        self._directory.cleanup()


__all__ = ["TlsServer"]


class RenewalInfoServer:
    """An ACME directory with `renewalInfo` on 127.0.0.1 (plain HTTP): `answers` maps a
    certID to the JSON body served for it; anything else is a 404."""

    def __init__(self, retry_after: int = 3600) -> None:
        self.answers: dict[str, dict[str, object]] = {}
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # the demo prints its own story

            def do_GET(self) -> None:
                base = f"http://{self.headers.get('Host')}"
                body: dict[str, object] | None = None
                if self.path == "/directory":
                    body = {"newOrder": f"{base}/new-order", "renewalInfo": f"{base}/ari"}
                elif self.path.startswith("/ari/"):
                    body = answers.get(self.path.removeprefix("/ari/"))
                payload = json.dumps(body or {"detail": "unknown certificate"}).encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", str(retry_after))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.directory = f"http://127.0.0.1:{self._server.server_address[1]}/directory"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
