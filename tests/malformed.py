"""Real certificates (trustme, openssl) made malformed in the ways the reader must survive."""

from __future__ import annotations

import base64
import subprocess
from datetime import datetime
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

UTF8_STRING = 0x0C


def leaf_der(ca: trustme.CA, name: str, *, not_after: datetime | None = None) -> bytes:
    """A trustme leaf for `name` (also its CN), as DER."""
    leaf = ca.issue_cert(name, common_name=name, not_after=not_after)
    certificate = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return certificate.public_bytes(serialization.Encoding.DER)


def openssl_der(tmp: Path, subject: str = "/CN=openssl.example/O=Ex\u00e4mple") -> bytes:
    """A self-signed certificate from the openssl command line, with a UTF-8 subject."""
    key, cert = tmp / "openssl-key.pem", tmp / "openssl-cert.der"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-outform",
            "DER",
            "-out",
            str(cert),
            "-days",
            "30",
            "-utf8",
            "-subj",
            subject,
            "-addext",
            "subjectAltName=DNS:openssl.example,IP:192.0.2.1",
        ],
        check=True,
        capture_output=True,
    )
    key.unlink()
    return cert.read_bytes()


def to_pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def _subject_cn(der: bytes, cn: str) -> int:
    """Where the subject's CN value starts (its first occurrence is the subject's: trustme
    and openssl put the issuer, a different name, first only for self-signed ones)."""
    value = cn.encode()
    at = der.index(value)
    while der[at - 2] != UTF8_STRING:
        at = der.index(value, at + 1)
    return at


def non_utf8_cn(der: bytes, cn: str) -> bytes:
    """The subject's CN (a UTF8String) holding bytes that are not UTF-8."""
    at = _subject_cn(der, cn)
    return der[:at] + b"\xff" * len(cn) + der[at + len(cn) :]


def bad_subject_tag(der: bytes, cn: str, tag: int = 0x1F) -> bytes:
    """The subject's CN value under an ASN.1 tag no Name may hold."""
    at = _subject_cn(der, cn) - 2
    return der[:at] + bytes([tag]) + der[at + 1 :]


def bad_version(der: bytes, version: int = 7) -> bytes:
    """X.509 version field (`[0] INTEGER 2` for v3) set to a value that does not exist."""
    at = der.index(b"\xa0\x03\x02\x01\x02")
    return der[: at + 4] + bytes([version]) + der[at + 5 :]
