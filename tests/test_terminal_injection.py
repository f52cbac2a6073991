"""Names from certificates and file names reach every human-readable output escaped.

A CR/LF must not forge a second line (a fake `check` status, a fake log entry); ESC,
OSC and NUL must not reach the operator's terminal. JSON output escapes by itself.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lacme_watch.run import logconfig

from .conftest import CliRunner

FORGED = "\r\nLACME-WATCH OK - all fine | forged=1\n"
HOSTILE = f"evil.example{FORGED}\x1b[2J\x1b]0;owned\x07\x00"  # SANs are ASCII
HOSTILE_CN = "cn\r\n\x1b]0;t\x07\u202ereversed"
RAW = ("\x1b", "\x07", "\x00", "\r", "\u202e")


def _certificate(path: Path, cn: str, days_left: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTILE_CN)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=85))
        .not_valid_after(now + timedelta(days=days_left))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _assert_inert(text: str, lines: int | None = None) -> None:
    for char in RAW:
        assert char not in text, (char, text)
    assert "forged=1" not in text.splitlines()[0] or "\\n" in text
    if lines is not None:
        assert len(text.splitlines()) == lines, text


def test_hostile_names_are_escaped_in_every_human_readable_output(
    tmp_path: Path, cli: CliRunner
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _certificate(certs / "hostile.pem", HOSTILE, days_left=5)
    (certs / f"broken{FORGED}\x1b[31m.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        f"sinks:\n  - {{type: log, format: text, path: {tmp_path / 'events.log'}}}\n"
    )

    watch = cli("--config", str(config), "watch", "--once")
    assert watch.code == 1  # the broken file is a problem
    _assert_inert(watch.err)
    assert "broken\\r\\nLACME-WATCH OK" in watch.err

    check = cli("--config", str(config), "check")
    assert check.code == 2
    _assert_inert(check.out, lines=1)
    assert check.out.startswith("LACME-WATCH CRITICAL")

    for command in (["status"], ["events"]):
        shown = cli("--config", str(config), *command)
        _assert_inert(shown.out + shown.err)
        assert not any(line.startswith("LACME-WATCH OK") for line in shown.out.splitlines())

    _assert_inert((tmp_path / "events.log").read_text())
    assert len((tmp_path / "events.log").read_text().splitlines()) == 2  # expiring + unreadable


def test_daemon_log_lines_escape_control_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logconfig.configure("warning", "text", stream)
        logging.getLogger("lacme_watch.run.daemon").warning(
            "%s: %s", "pem:/x", "a\nERROR forged\x1b[2J"
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    assert stream.getvalue() == "WARNING lacme_watch.run.daemon: pem:/x: a\\nERROR forged\\x1b[2J\n"
