"""The daemon as systemd runs it: a real process, a real notify socket, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.run.notify import Notifier

from .conftest import kinds, read_events
from .sinks.conftest import free_port


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    yield sock, path
    sock.close()


def wait_for(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    """Read notify datagrams until one carries `wanted` (e.g. READY=1)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.splitlines():
            return
    raise AssertionError(f"never got {wanted}; got {seen}")


def wait_until(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def write_cert(directory: Path, name: str, days: int = 60) -> None:
    now = datetime.now(UTC)
    leaf = trustme.CA().issue_cert(
        name, not_before=now - timedelta(days=90 - days), not_after=now + timedelta(days=days)
    )
    (directory / f"{name}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())


def test_notifier_speaks_sd_notify_over_a_real_socket(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})

    notifier.send(ready="1", status="3 certificates")

    assert sock.recv(4096) == b"READY=1\nSTATUS=3 certificates"
    assert notifier.watchdog == timedelta(seconds=4)
    assert Notifier({}).enabled is False


def test_notifier_ignores_a_watchdog_meant_for_another_process() -> None:
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog is None


def _daemon_config(tmp_path: Path, certs: Path, log: Path, port: int, extra: str = "") -> str:
    return (
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        "schedule: {scan: 1s, deliver: 1s}\n"
        f"metrics: {{listen: '127.0.0.1:{port}', textfile: {tmp_path / 'lacme_watch.prom'}}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n" + extra
    )


def test_the_daemon_lifecycle(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    certs = tmp_path / "certs"
    certs.mkdir()
    write_cert(certs, "first.example")
    log, other_log = tmp_path / "events.jsonl", tmp_path / "other.jsonl"
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(_daemon_config(tmp_path, certs, log, port))
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    command = [sys.executable, "-m", "lacme_watch", "--config", str(config), "--log-level", "info"]
    seen: list[str] = []

    with subprocess.Popen(
        [*command, "watch"], env=env, stderr=subprocess.PIPE, text=True
    ) as daemon:
        try:
            wait_for(sock, "READY=1", seen)
            assert any(
                line.startswith("STATUS=1 certificate,") for m in seen for line in m.split("\n")
            )

            # A change in the store is seen within the next pass.
            write_cert(certs, "second.example")
            wait_until(lambda: "certificate_issued" in kinds(read_events(log)))

            # Metrics: scrape the endpoint; the textfile is written after each pass.
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            assert b"x509_cert_not_after{" in scraped
            assert b'domain="second.example"' in scraped
            assert b'lacme_watch_source_up{store="pem:' in scraped
            assert b"x509_cert_not_after" in (tmp_path / "lacme_watch.prom").read_bytes()

            # A second instance on the same state_dir refuses to start.
            second = subprocess.run(
                [*command, "watch", "--once"], capture_output=True, text=True, check=False
            )
            assert second.returncode == 1
            assert f"another lacme-watch (pid {daemon.pid})" in second.stderr

            wait_for(sock, "WATCHDOG=1", seen)

            # SIGHUP with a broken file: logged with file:line, the old config keeps running.
            config.write_text(config.read_text() + "schedule_typo: 1\n")
            daemon.send_signal(signal.SIGHUP)
            wait_for(sock, "RELOADING=1", seen)
            wait_for(sock, "READY=1", seen)
            write_cert(certs, "third.example")
            wait_until(
                lambda: (
                    len([e for e in read_events(log) if e["type"] == "lacme.certificate_issued"])
                    == 2
                )
            )

            # SIGHUP with a good file: the new sink takes over without a restart.
            config.write_text(_daemon_config(tmp_path, certs, other_log, port))
            daemon.send_signal(signal.SIGHUP)
            wait_for(sock, "RELOADING=1", seen)
            wait_for(sock, "READY=1", seen)
            write_cert(certs, "fourth.example")
            wait_until(lambda: "certificate_issued" in kinds(read_events(other_log)))

            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0
            wait_for(sock, "STOPPING=1", seen)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        stderr = daemon.stderr.read() if daemon.stderr else ""
    assert f"{config}:" in stderr
    assert "schedule_typo: unknown key" in stderr
    assert "keeping the running configuration" in stderr


SLOW_HOOK = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text("started")
time.sleep(3)
"""


def test_sigterm_lets_a_slow_delivery_finish_and_commit(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    write_cert(certs, "soon.example", days=3)
    hook = tmp_path / "hook.py"
    hook.write_text(SLOW_HOOK)
    marker = tmp_path / "started"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        f"sinks:\n  - type: shell\n    command: ['{sys.executable}', '{hook}', '{marker}']\n"
    )
    with subprocess.Popen(
        [sys.executable, "-m", "lacme_watch", "--config", str(config), "watch"],
        stderr=subprocess.DEVNULL,
    ) as daemon:
        wait_until(marker.exists)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    assert code == 0
    assert time.monotonic() - started > 1.5  # it waited for the hook...
    db = sqlite3.connect(tmp_path / "state" / "state.sqlite3")
    states = db.execute("SELECT state FROM outbox").fetchall()
    db.close()
    assert states == [("delivered",)]  # ...and committed its delivery


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    analyze = subprocess.run(["which", "systemd-analyze"], capture_output=True, text=True)
    assert analyze.returncode == 0, (
        "systemd-analyze is needed to verify the units (.ci/run installs it)"
    )
    executable = (
        subprocess.run(
            [sys.executable, "-c", "import shutil; print(shutil.which('lacme-watch') or '')"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        or sys.executable
    )
    units = Path(__file__).parents[1] / "systemd"
    names = sorted(p.name for p in units.iterdir())
    assert names == ["lacme-watch-once.service", "lacme-watch.service", "lacme-watch.timer"]
    for name in names:
        text = (units / name).read_text().replace("/usr/local/bin/lacme-watch", executable)
        (tmp_path / name).write_text(text)

    done = subprocess.run(
        ["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True
    )

    assert (done.returncode, done.stderr.strip()) == (0, "")
    service = (units / "lacme-watch.service").read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=lacme-watch",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "WatchdogSec=",
    ):
        assert line in service, line


def test_textfile_metrics_after_a_cron_pass_keep_expired_certificates(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    write_cert(certs, "gone.example", days=-2)
    write_cert(certs, "fine.example", days=60)
    textfile = tmp_path / "lacme_watch.prom"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nstores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        f"metrics: {{textfile: {textfile}}}\nheartbeat: true\n"
        f"sinks:\n  - {{type: log, format: json, path: {tmp_path / 'log.jsonl'}}}\n"
    )
    command = [sys.executable, "-m", "lacme_watch", "--config", str(config), "watch", "--once"]

    done = subprocess.run(command, capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    text = textfile.read_text()
    expired = [line for line in text.splitlines() if line.startswith("x509_cert_expired{")]
    assert any('domain="gone.example"' in line and line.endswith(" 1.0") for line in expired)
    assert any('domain="fine.example"' in line and line.endswith(" 0.0") for line in expired)
    assert "lacme_watch_last_success_timestamp_seconds" in text
    assert (
        'lacme_watch_sink_events{sink="log",state="delivered"} 2.0' in text
    )  # expired + heartbeat
    beat = read_events(tmp_path / "log.jsonl")[-1]
    assert beat["type"] == "lacme.heartbeat"
    assert json.dumps(beat["data"]).count('"certificates": 2') == 1


def test_the_watchdog_goes_silent_when_a_pass_is_stuck(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    from lacme_watch.config import Config
    from lacme_watch.run.daemon import Daemon

    sock, path = notify_socket
    config = Config(path=None, state_dir=tmp_path, host="h", stores=(), authorities=())
    daemon = Daemon(
        config, lambda: config, Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    )

    daemon._ping_watchdog()
    assert sock.recv(64) == b"WATCHDOG=1"

    daemon._busy_since = time.monotonic() - 5  # a pass running for 5 s, past the 1 s watchdog
    daemon._ping_watchdog()
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(64)
