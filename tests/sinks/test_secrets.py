"""Secrets stay out of every output: planted in the environment and in a file, used for
real against an SMTP server (which accepts them) and a webhook (which refuses, so there
are errors to print), then searched for in everything lacme-watch printed, logged at
debug level, recorded or wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from ..conftest import CliRunner
from .conftest import Mailbox, WebServer

SMTP_SECRET = "s3cret pass"  # the one password the test SMTP server accepts
TOKEN_SECRET = "PLANTED-token-4d2a0f"


def test_a_planted_secret_reaches_no_output(
    tmp_path: Path,
    cli: CliRunner,
    smtp_starttls_server: Mailbox,
    web_server: WebServer,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LW_SMTP_PASSWORD", SMTP_SECRET)
    monkeypatch.setenv("LW_TOKEN", TOKEN_SECRET)
    password_file = tmp_path / "smtp-password"
    password_file.write_text(SMTP_SECRET + "\n")
    certs = tmp_path / "certs"
    certs.mkdir()
    soon = datetime.now(UTC) + timedelta(days=5)
    leaf = trustme.CA().issue_cert("soon.example", not_after=soon)
    (certs / "cert.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    refused: dict[str, str] = {}
    web_server.answers = [(500, refused)] * 10 + [(401, refused)] * 10
    smtp = (
        f"{{host: 127.0.0.1, port: {smtp_starttls_server.port}, security: starttls,"
        f" ca_file: {ca_file}, username: watcher"
    )
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: pem, paths: ['{certs}/*.pem']}}\n"
        "sinks:\n"
        f"  - {{type: log, format: json, path: {log}}}\n"
        f"  - {{type: email, name: mail-env, from: w@example.com, to: [o@example.com],"
        f" smtp: {smtp}, password: '${{LW_SMTP_PASSWORD}}'}}}}\n"
        f"  - {{type: email, name: mail-file, from: w@example.com, to: [o@example.com],"
        f" smtp: {smtp}, password_file: {password_file}}}}}\n"
        f"  - {{type: webhook, name: hook, url: '{web_server.url}',"
        " headers: {Authorization: 'Bearer ${LW_TOKEN}'}}\n"
    )
    base = ("--config", str(config), "--log-level", "debug")

    results = [
        cli(*base, "config", "check"),
        cli(*base, "watch", "--once"),
        cli(*base, "watch", "--once"),
        cli(*base, "sinks", "test", "mail-env"),
        cli(*base, "sinks", "test", "mail-file"),
        cli(*base, "sinks", "test", "hook"),
        cli(*base, "status"),
        cli(*base, "status", "--json"),
        cli(*base, "events"),
        cli(*base, "events", "--pending", "--json"),
        cli(*base, "check"),
    ]

    # The secrets were live: used against the real servers (two sinks log in, one with
    # the password from the environment, one from the file).
    assert smtp_starttls_server.logins.count(("watcher", SMTP_SECRET)) >= 2
    assert smtp_starttls_server.messages
    assert f"Bearer {TOKEN_SECRET}" in {r.headers["authorization"] for r in web_server.requests}
    assert results[1].code == 1  # the failing sinks are reported
    written = b"".join(
        path.read_bytes()
        for path in tmp_path.rglob("*")
        if path.is_file() and path != password_file
    )
    printed = "".join(result.out + result.err for result in results)
    for secret in (SMTP_SECRET, TOKEN_SECRET):
        assert secret not in printed
        assert secret.encode() not in written
