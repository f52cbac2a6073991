"""certbot's store and log, produced by real certbot runs against pebble on loopback."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lacme_watch.events.cloudevents import parse_time
from lacme_watch.observations import Problem
from lacme_watch.sources.stores._certbot_log import challenge_failures, is_record_start
from lacme_watch.sources.stores._logfollow import follow

from ..acme import Certbot, Pebble
from ..conftest import CliRunner, data, kinds, watch


@pytest.fixture
def certbot(pebble: Pebble, tmp_path: Path) -> Certbot:
    return Certbot(pebble, tmp_path / "certbot")


def config_for(tmp_path: Path, certbot: Certbot) -> tuple[Path, Path]:
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    root = certbot.pebble.write_root(tmp_path / "pebble-root.pem")
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{root}]\n"
        f"stores:\n  - type: certbot\n    path: {certbot.config_dir}\n    log: {certbot.log}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    return config, log


@pytest.mark.acme
def test_issue_renew_and_fail_with_real_certbot(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    assert certbot.issue("probe1.example.com", "www.probe1.example.com").returncode == 0
    certbot.fail_challenge("early-fail.example.com")  # before the baseline
    config, log = config_for(tmp_path, certbot)

    assert watch(cli, config, log) == (0, [])  # the baseline: nothing already in the log

    renewed = certbot.renew("probe1.example.com")
    assert renewed.returncode == 0, renewed.stderr
    assert certbot.issue("probe2.example.com").returncode == 0
    code, events = watch(cli, config, log)
    assert code == 0
    assert sorted(kinds(events)) == ["certificate_issued", "certificate_renewed"]
    renewal = next(data(e) for e in events if e["type"] == "lacme.certificate_renewed")
    assert renewal["domain"] == "probe1.example.com"
    assert renewal["domains"] == ["probe1.example.com", "www.probe1.example.com"]
    old_expiry = parse_time(str(renewal["previous_expires_at"]))
    assert parse_time(str(renewal["expires_at"])) >= old_expiry
    assert str(renewal["path"]).endswith("live/probe1.example.com/fullchain.pem")

    certbot.fail_challenge("fail-http.example.com")
    code, events = watch(cli, config, log)
    assert code == 0
    assert kinds(events) == ["challenge_failed"]
    failure = data(events[0])
    assert (failure["domain"], failure["challenge_type"]) == ("fail-http.example.com", "http-01")
    assert str(failure["error"]).startswith("connection: ")
    assert "connection refused" in str(failure["error"])

    assert watch(cli, config, log) == (0, [])  # each failure once


@pytest.mark.acme
def test_a_lineage_name_collision_is_its_own_lineage(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    assert certbot.issue("dup.example.com").returncode == 0
    config, log = config_for(tmp_path, certbot)
    watch(cli, config, log)

    again = certbot.run(
        "certonly",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        str(certbot.pebble.http_port),
        "--agree-tos",
        "--register-unsafely-without-email",
        "--duplicate",
        "-d",
        "dup.example.com",
    )
    assert again.returncode == 0, again.stderr

    _, events = watch(cli, config, log)
    assert [(e["type"], data(e)["lineage"]) for e in events] == [
        ("lacme.certificate_issued", "dup.example.com-0001")
    ]


@pytest.mark.acme
def test_a_renewal_conf_without_its_lineage_is_reported(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    assert certbot.issue("gone.example.com").returncode == 0
    shutil.rmtree(certbot.config_dir / "live" / "gone.example.com")
    config, _ = config_for(tmp_path, certbot)

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 1
    assert "renewal/gone.example.com.conf: not_found" in result.err


@pytest.mark.acme
def test_an_unreadable_live_directory_says_how_to_fix_it(certbot: Certbot, tmp_path: Path) -> None:
    assert certbot.issue("locked.example.com").returncode == 0
    config, _ = config_for(tmp_path, certbot)
    subprocess.run(
        [sys.executable, "-m", "lacme_watch", "--config", str(config), "watch", "--once"],
        check=True,
        capture_output=True,
    )
    live = certbot.config_dir / "live"
    nobody = pwd.getpwnam("nobody")
    os.chown(live, nobody.pw_uid, nobody.pw_gid)
    live.chmod(0o700)
    setpriv = shutil.which("setpriv")
    assert setpriv

    done = subprocess.run(
        [
            setpriv,
            "--bounding-set=-dac_override,-dac_read_search",
            sys.executable,
            "-m",
            "lacme_watch",
            "--config",
            str(config),
            "watch",
            "--once",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 1
    assert (
        f"{live}: permission_denied (certbot keeps live/ and archive/ at mode 0700" in done.stderr
    )


LINE = "2026-11-22 18:45:42,186:INFO:certbot._internal.main:{}\n"


def read_on(log: Path, cursor: str | None) -> tuple[str, str | None]:
    followed = follow(str(log), cursor, is_record_start)
    assert not isinstance(followed, Problem), followed
    return followed


def test_following_a_log_across_upstream_rotation(tmp_path: Path) -> None:
    log = tmp_path / "letsencrypt.log"
    log.write_text(LINE.format("run 1 a"))
    _, cursor = read_on(log, None)
    log.write_text(log.read_text() + LINE.format("run 1 b") + LINE.format("run 1 c"))
    # certbot's doRollover at the next run: the log moves to .1, a fresh one begins.
    log.rename(tmp_path / "letsencrypt.log.1")
    log.write_text(LINE.format("run 2 a") + LINE.format("run 2 b"))

    text, cursor = read_on(log, cursor)

    assert [line.rsplit(":", 1)[-1] for line in text.splitlines()] == [
        "run 1 b",
        "run 1 c",
        "run 2 a",  # run 2 b is held back: it may still be growing
    ]


def test_following_a_log_that_is_appended_to(tmp_path: Path) -> None:
    log = tmp_path / "letsencrypt.log"
    log.write_text(LINE.format("old"))
    _, cursor = read_on(log, None)
    with log.open("a") as stream:
        stream.write(LINE.format("new 1") + "continuation line\n" + LINE.format("new 2"))

    text, cursor = read_on(log, cursor)
    assert text == LINE.format("new 1") + "continuation line\n"
    text, _ = read_on(log, cursor)
    assert text == ""  # "new 2" still waits for a successor


def test_the_report_block_is_the_fallback_without_json() -> None:
    text = (
        LINE.format("certbot version: 2.1.0")
        + "2026-11-22 18:45:40,000:INFO:certbot._internal.auth_handler:"
        "dns-01 challenge for a.example\n"
        + "2026-11-22 18:45:42,000:DEBUG:certbot._internal.display.obj:Notifying user: \n"
        + "Certbot failed to authenticate some domains (authenticator: manual). The Certificate"
        " Authority reported these problems:\n"
        + "  Domain: a.example\n  Type:   unauthorized\n"
        + "  Detail: No TXT record found at _acme-challenge.a.example\n\nHint: ...\n"
    )

    (failure,) = challenge_failures(text, store="s", path="p")

    assert (failure.domain, failure.challenge_type, failure.error) == (
        "a.example",
        "dns-01",
        "unauthorized: No TXT record found at _acme-challenge.a.example",
    )


@pytest.mark.acme
def test_a_store_missing_at_first_look_reports_its_first_certificates_as_issued(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    """'certbot has not run yet': the store does not exist, then certbot creates it."""
    config, log = config_for(tmp_path, certbot)
    assert not certbot.config_dir.exists()

    code, events = watch(cli, config, log)
    assert code == 1
    assert [(data(e)["path"], data(e)["reason"]) for e in events] == [
        (str(certbot.config_dir), "not_found")
    ]

    assert certbot.issue("first.example.com").returncode == 0
    code, events = watch(cli, config, log)
    assert code == 0
    assert kinds(events) == ["certificate_issued"]
    assert data(events[0])["domain"] == "first.example.com"


@pytest.mark.acme
def test_a_store_that_existed_and_went_missing_keeps_its_inventory(
    cli: CliRunner, certbot: Certbot, tmp_path: Path
) -> None:
    assert certbot.issue("kept.example.com").returncode == 0
    config, log = config_for(tmp_path, certbot)
    assert watch(cli, config, log) == (0, [])  # the baseline

    away = certbot.config_dir.with_name("config.away")
    certbot.config_dir.rename(away)
    code, events = watch(cli, config, log)
    assert (code, kinds(events)) == (1, ["certificate_unreadable"])
    status = cli("--config", str(config), "status", "--json").json()
    assert isinstance(status, dict)
    assert "kept.example.com" in [row["name"] for row in status["certificates"]]

    away.rename(certbot.config_dir)
    assert watch(cli, config, log) == (0, [])  # back as it was: nothing issued, nothing removed
