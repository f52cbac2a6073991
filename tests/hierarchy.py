"""A real certificate hierarchy for chain tests, and `openssl s_server` to serve it.

trustme makes one CA and its leaves; chains need more control: the same intermediate
key under two certificates (cross-signed, superseded, expired), roots that sign CRLs.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .acme import free_port, require

Key = ec.EllipticCurvePrivateKey


@dataclass
class Issued:
    certificate: x509.Certificate
    key: Key

    @property
    def pem(self) -> bytes:
        return pem(self.certificate)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(
    cn: str,
    *,
    issuer: Issued | None,
    not_before: datetime,
    not_after: datetime,
    key: Key | None = None,
    ca: bool = True,
    names: Sequence[str] = (),
    crl_url: str | None = None,
    issuer_name: x509.Name | None = None,
) -> Issued:
    """A certificate for `cn` (self-signed when `issuer` is None), reusing `key` if given."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name or (issuer.certificate.subject if issuer else _name(cn)))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    if crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


def crl(
    issuer: Issued,
    revoked: Sequence[tuple[x509.Certificate, x509.ReasonFlags]],
    *,
    this_update: datetime,
    next_update: datetime,
    number: int = 1,
) -> bytes:
    """A CRL signed by `issuer` listing `revoked` (DER)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for certificate_, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(certificate_.serial_number)
            .revocation_date(this_update)
            .add_extension(x509.CRLReason(reason), critical=False)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class OpenSslServer:
    """`openssl s_server -cert_chain` on 127.0.0.1 (a free port), serving a leaf and a chain
    exactly in the order given."""

    def __init__(self, directory: Path, leaf: Issued, chain: Sequence[x509.Certificate]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "leaf.pem").write_bytes(leaf.pem)
        (directory / "leaf.key").write_bytes(key_pem(leaf.key))
        arguments = ["-cert", str(directory / "leaf.pem"), "-key", str(directory / "leaf.key")]
        if chain:
            (directory / "chain.pem").write_bytes(pem(*chain))
            arguments += ["-cert_chain", str(directory / "chain.pem")]
        self.port = free_port()
        self._process = subprocess.Popen(
            [
                require("openssl"),
                "s_server",
                "-quiet",
                "-accept",
                f"127.0.0.1:{self.port}",
                *arguments,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("openssl s_server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()


class CrlServer:
    """A real http.server on 127.0.0.1 serving CRL files, read afresh on every request.

    It counts requests and honours If-None-Match (ETag: a digest of the content),
    as a CA's CDN does; `conditional` counts the requests that carried one.
    """

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.requests: list[tuple[str, str | None, int]] = []
        """(path, If-None-Match sent, status answered)."""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                source = owner.files.get(self.path)
                sent = self.headers.get("If-None-Match")
                if source is None or not source.exists():
                    owner.requests.append((self.path, sent, 404))
                    self.send_error(404)
                    return
                body = source.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                status = 304 if sent == etag else 200
                owner.requests.append((self.path, sent, status))
                self.send_response(status)
                self.send_header("ETag", etag)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", "0" if status == 304 else str(len(body)))
                self.end_headers()
                if status == 200:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test reads `requests`, not stderr

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
