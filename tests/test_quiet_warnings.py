"""A quiet pass prints nothing, even over certificates the parser warns about.

Some roots still shipped in /usr/share/ca-certificates (Go Daddy Class 2, Starfield
Class 2) have a serial of zero; cryptography emits a CryptographyDeprecationWarning
at every parse of a non-positive serial, and cron mails whatever reaches stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from lacme_watch.reading.certfacts import describe

from .acme import require
from .conftest import write_config


def _negative_serial(path: Path) -> None:
    """A real certificate with serial -7, as openssl still makes them."""
    subprocess.run(
        [
            require("openssl"),
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "/dev/null", "-subj", "/CN=negative.example",
            "-addext", "subjectAltName=DNS:negative.example",
            "-set_serial", "-7", "-days", "300", "-out", str(path),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def _lacme_watch(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lacme_watch", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_negative_serial_is_watched_without_a_warning_on_stderr(tmp_path: Path) -> None:
    _negative_serial(tmp_path / "negative.pem")
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "lacme-watch.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/*.pem']}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    for _ in range(2):  # the baseline, then a pass that finds the file unchanged
        done = _lacme_watch(config, "watch", "--once")
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    status = _lacme_watch(config, "status")
    assert (status.returncode, status.stderr) == (0, "")
    assert "negative.example" in status.stdout  # still watched: parsed, not refused
    assert not log.exists() or all(
        json.loads(line)["type"] != "lacme.certificate_unreadable"
        for line in log.read_text().splitlines()
    )


def test_a_negative_serial_keeps_its_sign(tmp_path: Path) -> None:
    """`-07` as openssl prints it, not `0-7` (a serial that matches nothing)."""
    _negative_serial(tmp_path / "negative.pem")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        certificate = x509.load_pem_x509_certificate((tmp_path / "negative.pem").read_bytes())
        assert describe(certificate).serial == "-07"
