"""A TLS server on loopback: the demo's endpoint, and a real server for tests."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
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
