"""Fakes for tests, ours and plugin authors': sinks that record or fail, a static source,
and a TLS server on loopback."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from .cloudevents import Envelope
from .errors import SinkError
from .observations import ScanResult
from .options import Options
from .reader import CertificateReader


class RecordingSink:
    """Keeps every batch it is given."""

    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.batches: list[list[Envelope]] = []

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        return cls(name)

    def deliver(self, events: Sequence[Envelope]) -> None:
        self.batches.append(list(events))

    @property
    def envelopes(self) -> list[Envelope]:
        return [envelope for batch in self.batches for envelope in batch]

    @property
    def kinds(self) -> list[str]:
        return [envelope.event.kind for envelope in self.envelopes]


class FailingSink(RecordingSink):
    """Raises SinkError for the first `failures` deliveries, then records like RecordingSink."""

    def __init__(self, name: str = "failing", failures: int = 1_000_000) -> None:
        super().__init__(name)
        self.failures = failures
        self.attempts = 0

    def deliver(self, events: Sequence[Envelope]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise SinkError(self.name, f"failure {self.attempts} of {self.failures}")
        super().deliver(events)


class StaticSource:
    """A source that reports a fixed ScanResult (change `.result` between passes)."""

    def __init__(self, id: str, result: ScanResult | None = None) -> None:
        self.id = id
        self.result = result or ScanResult()

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(options.string("id"))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        return self.result


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
