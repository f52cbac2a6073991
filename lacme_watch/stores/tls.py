"""Live TLS endpoints: what a server actually serves, read even when it does not verify.

Each `host:port` is a lineage `tls:host:port`; an endpoint that cannot be reached keeps
its last certificate (reported `unreachable`). SNI defaults to the host name. The
served leaf is read with verification off on purpose: an expired or self-signed
certificate is exactly what must be reported, not refused. Python before 3.13 exposes
only the leaf of the served chain.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import Self

from cryptography import x509

from ..errors import ConfigError
from ..observations import Observation, Problem, ScanResult
from ..options import Options
from ..reader import CertificateReader, describe


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

    def __init__(self, endpoints: tuple[Endpoint, ...], timeout: timedelta) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
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
        return cls(tuple(endpoints), options.duration("timeout", timedelta(seconds=10)))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        observations: list[Observation] = []
        problems: list[Problem] = []
        for endpoint in self.endpoints:
            try:
                der = self._served(endpoint)
                certificate = x509.load_der_x509_certificate(der)
            except (OSError, ValueError) as exc:
                detail = str(exc) or type(exc).__name__
                problems.append(
                    Problem(
                        f"{endpoint.host}:{endpoint.port}",
                        "unreachable",
                        detail,
                        lineage=endpoint.lineage,
                    )
                )
                continue
            facts = describe(certificate)
            names = facts.names or (endpoint.sni or endpoint.host,)
            observations.append(
                Observation(
                    lineage=endpoint.lineage,
                    role="leaf",
                    path=f"tls://{endpoint.host}:{endpoint.port}",
                    domain=names[0],
                    domains=names,
                    certificate=facts,
                )
            )
        return ScanResult(observations=tuple(observations), problems=tuple(problems))

    def _served(self, endpoint: Endpoint) -> bytes:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # read what is served, valid or not
        server_name = endpoint.sni or (None if _is_address(endpoint.host) else endpoint.host)
        timeout = self.timeout.total_seconds()
        with (
            socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        if not der:
            raise ValueError("the server sent no certificate")
        return der


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
