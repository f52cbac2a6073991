"""The shell sink's timeout bounds everything, and hooks never outlive lacme-watch.

Real processes throughout: hooks that leave children behind, children that escape
their process group with setsid, and a real SIGKILL of `lacme-watch emit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from lacme_watch.errors import SinkError
from lacme_watch.events import CertificateRenewed
from lacme_watch.sinks.shell import ShellSink

from .conftest import sample_envelopes

ESCAPER = """
import os, subprocess, sys, time
# A grandchild in its own session, holding the hook's stderr open for a minute.
child = subprocess.Popen(["setsid", "sleep", "60"], stderr=sys.stderr)
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
if sys.argv[2] == "hang":
    time.sleep(60)
print("hook done", file=sys.stderr)
"""

WAITER = """
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids the test started indirectly; killed at the end whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _deliver_bounded(sink: ShellSink, bound: float) -> BaseException | None:
    """Deliver one event in a thread; fail the test if it has not returned within `bound`."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            sink.deliver(sample_envelopes()[:1])
        except BaseException as exc:  # handed back to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(bound)
    assert outcome, f"deliver() was still running after {bound} s: the timeout is not a bound"
    return outcome[0]


def _escaper(tmp_path: Path, mode: str, timeout: float) -> tuple[ShellSink, Path]:
    script = tmp_path / "escaper.py"
    script.write_text(ESCAPER)
    pid_file = tmp_path / "grandchild.pid"
    argv = [sys.executable, str(script), str(pid_file), mode]
    return ShellSink("hook", argv, timeout=timedelta(seconds=timeout)), pid_file


def test_a_setsid_grandchild_holding_stderr_does_not_stretch_the_timeout(
    tmp_path: Path, leftovers: list[int]
) -> None:
    sink, pid_file = _escaper(tmp_path, "hang", timeout=1)

    failure = _deliver_bounded(sink, bound=30)
    leftovers.append(int(pid_file.read_text()))

    assert isinstance(failure, SinkError)
    assert "timed out" in failure.reason


def test_a_hook_that_exits_0_leaving_a_background_child_is_delivered(
    tmp_path: Path, leftovers: list[int]
) -> None:
    sink, pid_file = _escaper(tmp_path, "exit", timeout=20)

    failure = _deliver_bounded(sink, bound=40)
    leftovers.append(int(pid_file.read_text()))

    assert failure is None


def test_a_hook_that_fails_leaving_a_background_child_reports_its_own_status(
    tmp_path: Path, leftovers: list[int]
) -> None:
    script = tmp_path / "fails.py"
    script.write_text(
        "import subprocess, sys\n"
        "child = subprocess.Popen(['sleep', '60'], stderr=sys.stderr)\n"
        "open(sys.argv[1], 'w').write(str(child.pid))\n"
        "print('cannot reload nginx', file=sys.stderr)\n"
        "sys.exit(4)\n"
    )
    pid_file = tmp_path / "child.pid"
    sink = ShellSink(
        "hook", [sys.executable, str(script), str(pid_file)], timeout=timedelta(seconds=20)
    )

    failure = _deliver_bounded(sink, bound=40)
    leftovers.append(int(pid_file.read_text()))

    assert isinstance(failure, SinkError)
    assert failure.reason.endswith("exited 4: cannot reload nginx")


def test_a_hook_that_never_reads_a_large_stdin_still_runs_and_succeeds(tmp_path: Path) -> None:
    script = tmp_path / "deaf.py"
    script.write_text("import sys; sys.exit(0)\n")
    sink = ShellSink("hook", [sys.executable, str(script)], timeout=timedelta(seconds=20))
    envelope = sample_envelopes()[0]
    many = tuple(f"n{i}.example.com" for i in range(20000))
    assert isinstance(envelope.event, CertificateRenewed)
    big = dataclasses.replace(envelope, event=dataclasses.replace(envelope.event, domains=many))

    sink.deliver([big])  # the 400 KB on stdin are never read: EPIPE is not a failure


def test_a_hook_dies_with_lacme_watch_on_sigkill(tmp_path: Path, leftovers: list[int]) -> None:
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    pid_file = tmp_path / "hook.pid"
    config = tmp_path / "lacme-watch.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores: [{{type: pem, paths: ['{tmp_path}/none/*.pem']}}]\n"
        "sinks:\n"
        f"  - {{type: shell, timeout: 5m, command: [{sys.executable}, {script}, {pid_file}]}}\n"
    )
    emit = subprocess.Popen(
        [sys.executable, "-m", "lacme_watch", "--config", str(config), "emit",
         "challenge_failed", "--domain", "example.com", "--challenge-type", "http-01",
         "--error", "boom"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and emit.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_file.exists(), "the hook never started"
        hook = int(pid_file.read_text())
        leftovers.append(hook)
        assert _alive(hook)
    finally:
        emit.send_signal(signal.SIGKILL)
        emit.wait()

    deadline = time.monotonic() + 10
    while _alive(hook) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(hook), "the hook kept running after lacme-watch was SIGKILLed"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie is dead, waiting for its parent to reap it
