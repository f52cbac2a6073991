"""What a person reads: where each line comes from, full lines in pipes, plurals, notices."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from lacme import FileStore

from lacme_watch.events import CertificateExpiring, CertificateRenewed, Heartbeat
from lacme_watch.wording import duration, plural

from .conftest import CliRunner

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures the root logger; give the next test its own handlers back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _pem_config(tmp_path: Path, sinks: str = "") -> Path:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = trustme.CA()
    name = "a-rather-long-name-that-would-never-fit.short.internal.example.com"
    leaf = ca.issue_cert(
        name,
        not_before=datetime.now(UTC) - timedelta(days=80),
        not_after=datetime.now(UTC) + timedelta(days=10),
    )
    (certs / "long.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: pem, paths: ['{certs}/*.pem']}}\n" + sinks
    )
    return config


def test_status_in_a_pipe_is_tab_separated_and_never_cut(cli: CliRunner, tmp_path: Path) -> None:
    config = _pem_config(tmp_path)

    result = cli("--config", str(config), "status")

    header, row = result.out.splitlines()
    assert header.split("\t") == ["name", "store", "names", "not after", "days left", "state"]
    name, store, names, _, days_left, state = row.split("\t")
    assert names == name
    assert name == "a-rather-long-name-that-would-never-fit.short.internal.example.com"
    assert store == f"pem:{tmp_path / 'certs'}/*.pem"
    assert (days_left, state) == ("9", "expiring (14d)")


def test_events_name_the_store_and_each_sinks_attempts_next_retry_and_error(
    cli: CliRunner, tmp_path: Path
) -> None:
    config = _pem_config(
        tmp_path,
        "sinks:\n  - {type: webhook, name: collector, url: 'http://127.0.0.1:9/', timeout: 2s}\n"
        f"  - {{type: log, format: json, path: {tmp_path / 'log.jsonl'}}}\n",
    )
    first = cli("--config", str(config), "watch", "--once")
    second = cli("--config", str(config), "watch", "--once")  # while the webhook backs off

    assert (first.code, second.code) == (1, 1)
    assert "sink collector: 1 event retrying, next attempt " in second.err

    result = cli("--config", str(config), "events")
    header, *rows = result.out.splitlines()
    assert header.split("\t") == [
        "time",
        "event",
        "store",
        "sink",
        "delivery",
        "attempts",
        "next retry",
        "last error",
    ]
    cells = {row.split("\t")[3]: row.split("\t") for row in rows}
    assert cells["collector"][2] == f"pem:{tmp_path / 'certs'}/*.pem"
    assert cells["collector"][4:6] == ["retrying", "1"]
    assert cells["collector"][6].endswith("Z")
    assert "127.0.0.1:9/" in cells["collector"][7]
    assert cells["log"][4:8] == ["delivered", "1", "-", "-"]

    (entry,) = json.loads(cli("--config", str(config), "events", "--json").out)
    assert entry["deliveries"] == {"collector": "retrying", "log": "delivered"}
    assert entry["delivery"]["collector"]["attempts"] == 1
    assert entry["delivery"]["collector"]["next_attempt"] is not None


def test_undelivered_lists_rejected_and_expired_too(cli: CliRunner, tmp_path: Path) -> None:
    config = _pem_config(
        tmp_path,
        "delivery: {max_age: 1h}\n"
        "sinks:\n  - {type: webhook, name: collector, url: 'http://127.0.0.1:9/', timeout: 2s}\n",
    )
    cli("--config", str(config), "watch", "--once")
    later = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    expired = cli("--config", str(config), "--now", later, "watch", "--once")

    assert expired.code == 1
    assert "sink collector: expired certificate_expiring: " in expired.err
    assert "older than 1h were never delivered" in expired.err  # not "1:00:00"
    listed = json.loads(cli("--config", str(config), "events", "--json", "--undelivered").out)
    assert [entry["deliveries"] for entry in listed] == [{"collector": "expired"}]
    status = cli("--config", str(config), "status")
    assert "sink collector: 1 expired (see `lacme-watch events --undelivered`)" in status.out


def test_zero_configuration_is_quiet_for_cron_and_said_where_a_person_looks(
    cli: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_store: FileStore,
    store_dir: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store_dir.rename(home / ".lacme") if store_dir.exists() else (home / ".lacme").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("LACME_WATCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    # As root the default state_dir is /var/lib/lacme-watch: the test must not write the
    # machine's real state, so it runs as the ordinary user it describes.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    watched = cli("watch", "--once")
    assert (watched.code, watched.out, watched.err) == (0, "", "")

    notice = f"no configuration file; watching lacme store {home / '.lacme'}"
    assert notice in cli("status").err
    assert notice in cli("config", "check").err
    assert notice in cli("--log-level", "info", "watch", "--once").err


def test_demo_keep_refuses_a_directory_with_something_in_it(cli: CliRunner, tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "notes.txt").write_text("mine")

    result = cli("demo", "--keep", str(sandbox))

    assert result.code == 2
    assert f"{sandbox} is not empty" in result.err
    assert [p.name for p in sandbox.iterdir()] == ["notes.txt"]


def test_demo_keep_reuses_an_empty_directory_and_says_where_each_line_comes_from(
    cli: CliRunner, tmp_path: Path
) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()

    result = cli("demo", "--keep", str(sandbox))

    assert result.code == 0, result.err
    shop = [line for line in result.out.splitlines() if "│ shop.example.com" in line]
    assert any("lacme store" in line and "shop.example.com expires" in line for line in shop)
    assert any("shop.example.com at 127.0.0.1:" in line for line in shop), shop
    assert any("shop.example.com at localhost:" in line for line in shop), shop


def test_plurals_and_durations() -> None:
    assert [plural(n, "day") for n in (0, 1, 2)] == ["0 days", "1 day", "2 days"]
    assert plural(1, "problem") == "1 problem"
    assert plural(2, "delivery") == "2 deliveries"
    assert [duration(timedelta(days=7)), duration(timedelta(seconds=90))] == ["7d", "1m30s"]


def test_summaries_read_as_english() -> None:
    expiring = CertificateExpiring(
        domain="a.example", domains=("a.example",), expires_at=NOW, days_remaining=1
    )
    assert expiring.summary().endswith("(1 day left)")
    beat = Heartbeat(pass_at=NOW, certificates=1, sources=1, sources_failed=0, events=1, problems=1)
    assert beat.summary() == "heartbeat: 1 certificate in 1 source, 1 event, 1 problem"
    renewed = CertificateRenewed(
        domain="a.example",
        domains=("a.example",),
        expires_at=NOW + timedelta(hours=6),
        previous_expires_at=NOW,
    )
    assert renewed.summary() == (
        "certificate_renewed: a.example renewed, expires 2026-11-22 18:00:00Z"
        " (was 2026-11-22 12:00:00Z)"
    )


def test_emit_errors_name_the_kind_as_it_is_spelled(cli: CliRunner, tmp_path: Path) -> None:
    config = _pem_config(tmp_path)

    result = cli("--config", str(config), "emit", "challenge_failed", "--domain", "a.example")

    assert result.code == 2
    assert "challenge_failed: --challenge-type is required" in result.err
