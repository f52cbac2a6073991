"""Live TLS endpoints: what a server actually serves, read even when it does not verify.

Each `host:port` is a lineage `tls:host:port`; an endpoint that cannot be reached keeps
its last certificate (reported `unreachable`). SNI defaults to the host name. The
served leaf is read with verification off on purpose: an expired or self-signed
certificate is exactly what must be reported, not refused. The whole served chain is
read (through pyOpenSSL, see `_handshake`) and handed on for chain checks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Self

from cryptography import x509

from ..errors import ConfigError
from ..observations import Observation, Problem, ScanResult, ServedChain
from ..options import Options
from ..reader import CertificateReader, describe
from ._handshake import served_chain


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
        chains: list[ServedChain] = []
        for endpoint in self.endpoints:
            server_name = endpoint.sni or (None if _is_address(endpoint.host) else endpoint.host)
            try:
                served = served_chain(
                    endpoint.host, endpoint.port, server_name, self.timeout.total_seconds()
                )
                certificate = x509.load_der_x509_certificate(served[0])
            except (OSError, ValueError, x509.InvalidVersion) as exc:
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
            try:
                facts = describe(certificate)
            except Exception as exc:  # a served certificate is hostile input too
                problems.append(
                    Problem(
                        f"{endpoint.host}:{endpoint.port}",
                        "bad_certificate",
                        f"{type(exc).__name__}: {exc}",
                        lineage=endpoint.lineage,
                    )
                )
                continue
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
            chains.append(
                ServedChain(
                    lineage=endpoint.lineage,
                    location=f"{endpoint.host}:{endpoint.port}",
                    requested_name=server_name,
                    certificates=tuple(served),
                )
            )
        return ScanResult(
            observations=tuple(observations), problems=tuple(problems), chains=tuple(chains)
        )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
