"""Live TLS endpoints: what a server actually serves, read even when it does not verify.

Each `host:port` is a lineage `tls:host:port`; an endpoint that cannot be reached keeps
its last certificate (reported `unreachable`). SNI defaults to the host name. The
served leaf is read with verification off on purpose: an expired or self-signed
certificate is exactly what must be reported, not refused. The whole served chain is
read (through pyOpenSSL, see `_handshake`) and handed on for chain checks.

Endpoints are probed concurrently by a bounded pool of threads (`concurrency`), each
within its `timeout`: 20 endpoints that never answer cost about one timeout, not twenty.
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Self

from cryptography import x509

from ...errors import ConfigError
from ...observations import Observation, Problem, ScanResult, ServedChain
from ...options import Options
from ...reading.certfacts import describe
from ...reading.reader import CertificateReader
from ._handshake import served_chain

MAX_PROBES = 32
"""Endpoints probed at once by default: enough for hundreds within a few timeouts, few
enough for one host's file descriptors and for the servers probed."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    sni: str | None

    @property
    def lineage(self) -> str:
        return f"tls:{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint | None:
    """`host:port`, `[v6]:port`, optionally `host:port/sni-name`."""
    address, _, sni = text.partition("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return Endpoint(host.strip("[]"), int(port), sni or None)


class TlsStore:
    """Certificates served by TLS endpoints."""

    def __init__(
        self, endpoints: tuple[Endpoint, ...], timeout: timedelta, concurrency: int = MAX_PROBES
    ) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.concurrency = concurrency
        self.id = "tls:" + ",".join(f"{e.host}:{e.port}" for e in endpoints)

    @classmethod
    def from_options(cls, options: Options) -> Self:
        node = options.node("endpoints")
        texts = options.strings("endpoints")
        if not texts:
            raise ConfigError(str(options.where.child("endpoints")), "needs at least one host:port")
        endpoints = []
        items = node.value if node is not None and isinstance(node.value, list) else [node]
        for text, item in zip(texts, items, strict=True):
            endpoint = parse_endpoint(text)
            if endpoint is None:
                raise item.unexpected("host:port, optionally host:port/sni-name")
            endpoints.append(endpoint)
        concurrency = options.integer("concurrency", MAX_PROBES, minimum=1)
        timeout = options.duration("timeout", timedelta(seconds=10))
        return cls(tuple(endpoints), timeout, concurrency)

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        workers = max(1, min(self.concurrency, len(self.endpoints)))
        with ThreadPoolExecutor(workers, thread_name_prefix="lacme-watch-tls") as pool:
            found = list(pool.map(self._probe, self.endpoints))  # in configuration order
        observations = [o for o in found if not isinstance(o, Problem)]
        return ScanResult(
            observations=tuple(observation for observation, _ in observations),
            problems=tuple(p for p in found if isinstance(p, Problem)),
            chains=tuple(chain for _, chain in observations),
        )

    def _probe(self, endpoint: Endpoint) -> tuple[Observation, ServedChain] | Problem:
        """One endpoint: what it serves, or why it could not be read."""
        server_name = endpoint.sni or (None if _is_address(endpoint.host) else endpoint.host)
        try:
            served = served_chain(
                endpoint.host, endpoint.port, server_name, self.timeout.total_seconds()
            )
            certificate = x509.load_der_x509_certificate(served[0])
        except (OSError, ValueError, x509.InvalidVersion) as exc:
            detail = str(exc) or type(exc).__name__
            return Problem(
                f"{endpoint.host}:{endpoint.port}", "unreachable", detail, lineage=endpoint.lineage
            )
        try:
            facts = describe(certificate)
        except Exception as exc:  # a served certificate is hostile input too
            return Problem(
                f"{endpoint.host}:{endpoint.port}",
                "bad_certificate",
                f"{type(exc).__name__}: {exc}",
                lineage=endpoint.lineage,
            )
        names = facts.names or (endpoint.sni or endpoint.host,)
        observation = Observation(
            lineage=endpoint.lineage,
            role="leaf",
            path=f"tls://{endpoint.host}:{endpoint.port}",
            domain=names[0],
            domains=names,
            certificate=facts,
        )
        chain = ServedChain(
            lineage=endpoint.lineage,
            location=f"{endpoint.host}:{endpoint.port}",
            requested_name=server_name,
            certificates=tuple(served),
        )
        return observation, chain


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
