"""`check`: the monitoring-plugins convention (Nagios, Icinga, Sensu)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.run import logconfig

from .conftest import CliRunner

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """logconfig.configure() replaces the root handlers; give the next test its own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def store_with(tmp_path: Path, *certs: tuple[str, float, float]) -> Path:
    """(name, days left, lifetime in days) -> a config watching those certificates."""
    directory = tmp_path / "certs"
    directory.mkdir()
    ca = trustme.CA()
    for name, days_left, lifetime in certs:
        leaf = ca.issue_cert(
            name,
            not_before=NOW + timedelta(days=days_left - lifetime),
            not_after=NOW + timedelta(days=days_left),
        )
        (directory / f"{name}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nstores:\n  - type: pem\n    paths: ['{directory}/*']\n"
    )
    return config


def check(cli: CliRunner, config: Path, *args: str) -> tuple[int, str]:
    result = cli("--config", str(config), "--now", NOW.isoformat(), "check", *args)
    assert result.out.count("\n") == 1, result.out  # one line, as plugins must print
    return result.code, result.out.strip()


def test_ok(cli: CliRunner, tmp_path: Path) -> None:
    config = store_with(tmp_path, ("a.example", 60, 90))

    code, line = check(cli, config)

    assert code == 0
    assert line == (
        "LACME-WATCH OK - 1 certificate, none expire within 14 days (shorter lifetimes: 33%)"
        " | certificates=1;;; expiring=0;;; expired=0;;; unreadable=0;;;"
    )


def test_warning_lists_each_certificate_most_urgent_first(cli: CliRunner, tmp_path: Path) -> None:
    config = store_with(
        tmp_path, ("b.example", 12.5, 90), ("a.example", 9.5, 90), ("c.example", 60, 90)
    )

    code, line = check(cli, config)

    assert code == 1
    assert line == (
        "LACME-WATCH WARNING - 2 certificates expire within 14 days (shorter lifetimes: 33%):"
        " a.example (9d), b.example (12d)"
        " | certificates=3;;; expiring=2;;; expired=0;;; unreadable=0;;;"
    )


def test_critical_includes_expired(cli: CliRunner, tmp_path: Path) -> None:
    config = store_with(
        tmp_path, ("old.example", -2, 90), ("soon.example", 3.5, 90), ("b.example", 12.5, 90)
    )

    code, line = check(cli, config)

    assert code == 2
    assert line.startswith(
        "LACME-WATCH CRITICAL - 2 certificates expired or expire within 7 days"
        " (shorter lifetimes: 10%): old.example (-2d), soon.example (3d) |"
    )
    assert "expiring=2;;; expired=1;;;" in line


def test_thresholds_in_percent_of_lifetime(cli: CliRunner, tmp_path: Path) -> None:
    config = store_with(tmp_path, ("short.example", 1.5, 6))

    assert check(cli, config, "--critical", "7d")[0] == 2  # 1.5 days left is within 7 days
    assert check(cli, config, "--warning", "33%", "--critical", "10%")[0] == 1
    assert check(cli, config, "--warning", "20%", "--critical", "10%")[0] == 0


def test_unreadable_inputs_are_unknown_not_critical(cli: CliRunner, tmp_path: Path) -> None:
    config = store_with(tmp_path, ("a.example", 12, 90))
    (tmp_path / "certs" / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nMII")

    code, line = check(cli, config)

    assert code == 3
    assert line.startswith("LACME-WATCH UNKNOWN - 1 input unreadable:")
    assert "broken.pem: bad_pem" in line


def test_a_configuration_error_is_unknown(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("stores: oops\n")

    code, line = check(cli, config)

    assert code == 3
    assert line.startswith("LACME-WATCH UNKNOWN - ")
    assert "stores: expected a list" in line


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["check", "--warning", "soon"], id="bad-threshold"),
        pytest.param(["check", "--frobnicate"], id="unknown-option"),
        pytest.param(["--now", "yesterday", "check"], id="bad-global-option"),
    ],
)
def test_a_usage_error_is_unknown(cli: CliRunner, tmp_path: Path, arguments: list[str]) -> None:
    """Nagios and Icinga read exit 2 as CRITICAL; a mistake in the command is UNKNOWN (3)."""
    result = cli("--config", str(tmp_path / "c.yaml"), *arguments)

    assert result.code == 3
    assert result.out.startswith("LACME-WATCH UNKNOWN - usage: ")
    assert result.out.count("\n") == 1


@pytest.mark.parametrize(
    ("lifetime", "days_left", "code"),
    [
        pytest.param(6, 5, 0, id="lets-encrypt-6-day-at-issuance"),
        pytest.param(6, 1.9, 1, id="6-day-under-33%"),
        pytest.param(6, 0.5, 2, id="6-day-under-10%"),
        pytest.param(1, 0.9, 0, id="lacme-1-day-ca-leaf"),
        pytest.param(47, 13, 1, id="47-day-keeps-14d"),
        pytest.param(47, 6, 2, id="47-day-keeps-7d"),
        pytest.param(90, 25, 0, id="90-day-ignores-percent"),
    ],
)
def test_the_default_limits_follow_the_lifetime_rule_of_the_events(
    cli: CliRunner, tmp_path: Path, lifetime: float, days_left: float, code: int
) -> None:
    config = store_with(tmp_path, ("short.example", days_left, lifetime))

    assert check(cli, config)[0] == code


def test_explicit_day_limits_keep_their_plain_meaning(cli: CliRunner, tmp_path: Path) -> None:
    config = store_with(tmp_path, ("short.example", 5, 6))

    code, line = check(cli, config, "--warning", "14d", "--critical", "3d")

    assert code == 1
    assert "expires within 14 days: short.example (5d)" in line


def test_json_logs_for_shippers() -> None:
    stream = io.StringIO()
    logconfig.configure("info", "json", stream)

    logging.getLogger("lacme_watch.test").info("pass done: %d certificates", 3)

    entry = json.loads(stream.getvalue())
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "info",
        "lacme_watch.test",
        "pass done: 3 certificates",
    )


def test_plain_logs_under_systemd_have_no_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    stream = io.StringIO()
    logconfig.configure("warning", "text", stream)

    logging.getLogger("lacme_watch.test").warning("sink %s failing", "email")
    logging.getLogger("apscheduler.scheduler").info("Running job")

    assert stream.getvalue() == "WARNING lacme_watch.test: sink email failing\n"
