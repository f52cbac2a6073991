"""The daemon under signal storms: a real process, hundreds of real SIGHUPs."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .conftest import read_events
from .test_daemon import notify_socket, wait_for, wait_until, write_cert

__all__ = ["notify_socket"]  # the fixture, imported so pytest finds it here


def test_a_storm_of_sighups_neither_kills_nor_wedges_the_daemon(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    certs = tmp_path / "certs"
    certs.mkdir()
    write_cert(certs, "first.example")
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{certs}/*.pem']\n"
        "schedule: {scan: 1s, deliver: 1s}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": path}
    command = [sys.executable, "-m", "lacme_watch", "--config", str(config), "--log-level", "info"]
    seen: list[str] = []
    rng = random.Random(9)  # noqa: S311  # timing jitter, not cryptography

    # The notify socket is not read during the storms: a lagging systemd must not wedge us.
    with subprocess.Popen(
        [*command, "watch"], env=env, stderr=subprocess.PIPE, text=True
    ) as daemon:
        try:
            wait_for(sock, "READY=1", seen)
            for storm in range(3):
                for _ in range(300):
                    daemon.send_signal(signal.SIGHUP)
                    if rng.random() < 0.05:
                        time.sleep(rng.random() / 100)
                # Still scanning after the storm: a new certificate is reported.
                write_cert(certs, f"after-storm-{storm}.example")
                wait_until(
                    lambda storm=storm: any(
                        event["subject"] == f"after-storm-{storm}.example"
                        for event in read_events(log)
                    ),
                    timeout=60,
                )
            assert daemon.poll() is None, "the daemon died in the storm"

            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
        stderr = daemon.stderr.read() if daemon.stderr else ""
    assert "Traceback" not in stderr
    assert "configuration reloaded" in stderr
    reloads = stderr.count("configuration reloaded")
    assert 1 <= reloads < 900, "bursts coalesce into far fewer reloads than signals"
