"""TLS endpoints on loopback: what is served, and whether it is older than the store's."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.reading.reader import CertificateReader
from lacme_watch.sources.stores.tls import Endpoint, TlsStore, parse_endpoint
from lacme_watch.testing import TlsServer

from ..conftest import CliRunner, kinds, read_events

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def served(ca: trustme.CA, tmp_path: Path) -> Iterator[TlsServer]:
    old = ca.issue_cert(
        "svc.example.com", not_before=NOW - timedelta(days=80), not_after=NOW + timedelta(days=10)
    )
    server = TlsServer(old.cert_chain_pems[0].bytes(), old.private_key_pem.bytes())
    yield server
    server.stop()


def write_config(
    tmp_path: Path, port: int, certs: Path, trust: trustme.CA | None = None
) -> tuple[Path, Path]:
    log, config = tmp_path / "events.jsonl", tmp_path / "c.yaml"
    roots = ""
    if trust is not None:
        trust.cert_pem.write_to_path(str(tmp_path / "root.pem"))
        roots = f"trust: [{tmp_path / 'root.pem'}]\n"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n{roots}"
        f"stores:\n  - type: tls\n    endpoints: ['127.0.0.1:{port}/svc.example.com']\n"
        "    timeout: 3s\n"
        f"  - type: pem\n    paths: ['{certs}/*.pem']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    return config, log


def test_a_served_certificate_older_than_the_stores_is_a_stale_deployment(
    cli: CliRunner, ca: trustme.CA, served: TlsServer, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    renewed = ca.issue_cert(
        "svc.example.com", not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=89)
    )
    (certs / "svc.pem").write_bytes(renewed.cert_chain_pems[0].bytes())
    config, log = write_config(tmp_path, served.port, certs, trust=ca)

    first = cli("--config", str(config), "watch", "--once")
    second = cli("--config", str(config), "watch", "--once")

    assert (first.code, second.code) == (0, 0)
    events = read_events(log)
    assert kinds(events) == ["certificate_expiring", "deployment_stale"]  # once, not twice
    stale = events[1]["data"]
    assert isinstance(stale, dict)
    assert stale["host"] == f"127.0.0.1:{served.port}"
    assert stale["lineage"] == f"tls:127.0.0.1:{served.port}"
    assert stale["domain"] == "svc.example.com"
    assert stale["newer_path"] == str(certs / "svc.pem")

    # The server reloads: the endpoint's lineage is renewed, and nothing is stale.
    served.serve(renewed.cert_chain_pems[0].bytes(), renewed.private_key_pem.bytes())
    assert cli("--config", str(config), "watch", "--once").code == 0
    assert kinds(read_events(log)[2:]) == ["certificate_renewed"]


def test_an_expired_self_signed_certificate_is_read_anyway(cli: CliRunner, tmp_path: Path) -> None:
    authority = trustme.CA()
    expired = authority.issue_cert(
        "old.example.com", not_before=NOW - timedelta(days=100), not_after=NOW - timedelta(days=3)
    )
    server = TlsServer(expired.cert_chain_pems[0].bytes(), expired.private_key_pem.bytes())
    try:
        (tmp_path / "certs").mkdir()
        config, log = write_config(tmp_path, server.port, tmp_path / "certs", trust=authority)
        assert cli("--config", str(config), "watch", "--once").code == 0
    finally:
        server.stop()
    event, mismatch = read_events(log)
    assert (event["type"], event["subject"]) == ("lacme.certificate_expiring", "old.example.com")
    # It was asked for svc.example.com (the SNI name in the config): not a name it covers.
    assert (mismatch["type"], mismatch["subject"]) == (
        "lacme.deployment_mismatch",
        "svc.example.com",
    )


def test_an_unreachable_endpoint_keeps_its_lineage(
    cli: CliRunner, served: TlsServer, tmp_path: Path
) -> None:
    (tmp_path / "certs").mkdir()
    config, log = write_config(tmp_path, served.port, tmp_path / "certs")
    cli("--config", str(config), "watch", "--once")
    served.stop()

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1
    assert f"127.0.0.1:{served.port}: unreachable" in result.err
    assert "certificate_removed" not in kinds(read_events(log))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com:443", ("example.com", 443, None)),
        ("10.0.0.1:8443/www.example.com", ("10.0.0.1", 8443, "www.example.com")),
        ("[::1]:443", ("::1", 443, None)),
        ("example.com", None),
        ("example.com:99999", None),
    ],
)
def test_endpoint_syntax(text: str, expected: tuple[str, int, str | None] | None) -> None:
    endpoint = parse_endpoint(text)
    assert (None if endpoint is None else (endpoint.host, endpoint.port, endpoint.sni)) == expected


def test_endpoints_that_never_answer_do_not_hold_up_the_others(ca: trustme.CA) -> None:
    """Silent listeners (TCP accepted by the kernel, no TLS ever) time out as `unreachable`
    while the answering endpoints, probed by the same bounded pool, are all read."""
    issued = [ca.issue_cert(f"svc{n}.example.com") for n in range(3)]
    servers = [TlsServer(c.cert_chain_pems[0].bytes(), c.private_key_pem.bytes()) for c in issued]
    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    try:
        ports = [s.port for s in servers] + [s.getsockname()[1] for s in silent]
        endpoints = tuple(Endpoint("127.0.0.1", port, None) for port in reversed(ports))
        store = TlsStore(endpoints, timedelta(seconds=1), concurrency=2)

        result = store.scan(CertificateReader())
    finally:
        for server in servers:
            server.stop()
        for listener in silent:
            listener.close()

    assert [o.domain for o in result.observations] == [f"svc{n}.example.com" for n in (2, 1, 0)]
    assert [(p.path, p.reason, p.lineage) for p in result.problems] == [
        (f"127.0.0.1:{port}", "unreachable", f"tls:127.0.0.1:{port}")
        for port in reversed(ports[3:])
    ]
    assert all("timed out" in p.detail for p in result.problems)


def test_one_certificate_at_two_endpoints_reads_apart(
    cli: CliRunner, ca: trustme.CA, served: TlsServer, tmp_path: Path
) -> None:
    """The same certificate at 127.0.0.1 and localhost: every human line says where."""
    (tmp_path / "certs").mkdir()
    config, log = write_config(tmp_path, served.port, tmp_path / "certs", trust=ca)
    text_log = tmp_path / "events.log"
    config.write_text(
        config.read_text()
        .replace(
            "endpoints: [",
            f"endpoints: ['localhost:{served.port}/svc.example.com', ",
        )
        .replace("sinks:\n", f"sinks:\n  - {{type: log, path: {text_log}}}\n")
    )

    assert cli("--config", str(config), "watch", "--once").code == 0
    status = cli("--config", str(config), "status")
    check = cli("--config", str(config), "check", "--warning", "20d", "--critical", "2d")

    at = [f"svc.example.com at {host}:{served.port}" for host in ("127.0.0.1", "localhost")]
    lines = text_log.read_text()
    for where in at:
        assert f"{where} expires" in lines
        assert where in status.out
        assert where in check.out
    assert kinds(read_events(log)) == ["certificate_expiring", "certificate_expiring"]
