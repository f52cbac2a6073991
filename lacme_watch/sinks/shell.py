"""The shell sink: runs a program once per event, with the event as data, never as code.

`command` is an argv list, run without a shell. The event reaches the program three
ways: as CloudEvent JSON on stdin; as environment variables (LACME_WATCH_EVENT, a
one-line LACME_WATCH_SUMMARY, LACME_WATCH_<FIELD> per data field) in a per-call
environment built from a minimal base, so the daemon's own secrets never reach the
hook; and as LACME_WATCH_EVENT_FILE, a private JSON file of the whole event, since
environment variables have size limits. A timeout bounds the whole run and kills the
whole process group; a hook dies with lacme-watch (a parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Self

from ..errors import ConfigError, SinkError
from ..events.cloudevents import Envelope, event_data, format_time, to_json
from ..options import Options
from ..wording import duration

PREFIX = "LACME_WATCH_"
MAX_VALUE = 64 * 1024
"""Longest single variable: Linux refuses an exec whose strings pass 128 KiB each."""
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME")
"""What a hook inherits from the daemon's environment; nothing else does."""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class Finished:
    """How one run ended."""

    returncode: int
    stderr: bytes


Runner = Callable[[Sequence[str], bytes, Mapping[str, str], float], Finished]


def run_in_own_group(
    argv: Sequence[str], stdin: bytes, env: Mapping[str, str], timeout: float
) -> Finished:
    """Run argv in a new session, bounded by `timeout` from start to finish.

    The timeout covers feeding stdin and reading stderr too: a hook's background
    child (even one that escaped with setsid) may keep the pipe open for ever, so
    reading stops when the hook itself has exited, and success is the hook's own
    exit status. On timeout the hook's whole process group is killed. The hook gets
    a parent-death signal, so it dies with lacme-watch even after a SIGKILL.
    """
    deadline = time.monotonic() + timeout
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
        close_fds=True,
        preexec_fn=_die_with_parent,  # only prctl(2): async-signal-safe
    )
    assert process.stdin is not None  # noqa: S101  # both pipes were asked for
    assert process.stderr is not None  # noqa: S101
    try:
        stderr = _exchange(process, stdin, deadline)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise
    finally:
        for pipe in (process.stdin, process.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
    return Finished(process.wait(), stderr)


def _exchange(process: subprocess.Popen[bytes], stdin: bytes, deadline: float) -> bytes:
    """Feed stdin and collect stderr until the hook exits; TimeoutExpired past `deadline`."""
    assert process.stdin is not None  # noqa: S101  # checked by the caller
    assert process.stderr is not None  # noqa: S101
    collected = bytearray()
    pending = memoryview(stdin)
    with selectors.DefaultSelector() as selector:
        os.set_blocking(process.stderr.fileno(), False)
        selector.register(process.stderr, selectors.EVENT_READ)
        if pending:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        while process.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(process.args, 0)
            for key, _ in selector.select(min(left, _POLL)):
                if key.fileobj is process.stdin:
                    pending = _feed(process.stdin, pending, selector)
                else:
                    _read_into(process.stderr, collected, selector)
        if process.stderr in (key.fileobj for key in selector.get_map().values()):
            _read_into(process.stderr, collected, None)  # what the hook wrote before exiting
    return bytes(collected)


def _feed(
    pipe: typing.IO[bytes], pending: memoryview, selector: selectors.BaseSelector
) -> memoryview:
    """Write what the pipe takes now; close it when all is written or the hook stopped reading."""
    try:
        written = os.write(pipe.fileno(), pending[:_CHUNK])
    except BlockingIOError:
        return pending
    except OSError:  # EPIPE: the hook does not read stdin, which is its right
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(pipe)
        pipe.close()
    return pending


def _read_into(
    pipe: typing.IO[bytes], collected: bytearray, selector: selectors.BaseSelector | None
) -> None:
    """Read what is there now (a bounded amount: a background child may write for ever).

    At end of file the pipe is unregistered from `selector`.
    """
    for _ in range(_KEEP // _CHUNK + 1):
        try:
            chunk = os.read(pipe.fileno(), _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            if selector is not None:
                selector.unregister(pipe)
            return
        collected += chunk
        del collected[: max(0, len(collected) - _KEEP)]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the hook's process group and reap the hook; never wait on its pipes."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_REAP)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL this hook when lacme-watch dies (Linux prctl)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _load_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):  # not Linux: the process group is the only bound
        return None
    return prctl


_POLL = 0.05
"""Seconds between looks at whether the hook has exited while its pipes stay quiet."""
_CHUNK = 16 * 1024
_KEEP = 64 * 1024
"""The tail of a hook's stderr kept for the error message."""
_REAP = 5.0
"""Seconds to wait for a SIGKILLed hook to be reaped (it cannot refuse; this is slack)."""
_PR_SET_PDEATHSIG = 1
_prctl = _load_prctl()


class ShellSink:
    """Runs `command` once per event."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout: timedelta = timedelta(seconds=30),
        environment: Mapping[str, str] | None = None,
        run: Runner = run_in_own_group,
    ) -> None:
        self.name = name
        self._argv = tuple(argv)
        self._timeout = timeout
        self._base_env = {**_inherited(), **(environment or {})}
        self._run = run

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        node = options.node("command")
        if node is not None and isinstance(node.value, str):
            raise ConfigError(
                str(node.where),
                "must be a list (argv), e.g. [/usr/local/bin/reload-nginx]: lacme-watch never"
                " runs a shell string",
            )
        argv = options.strings("command")
        if not argv:
            raise ConfigError(str(options.where.child("command")), "is required")
        environment = options.string_map("environment")
        return cls(
            name,
            argv,
            timeout=options.duration("timeout", timedelta(seconds=30)),
            environment=environment,
        )

    def deliver(self, events: Sequence[Envelope]) -> None:
        delivered: list[str] = []
        for envelope in events:
            try:
                self._run_one(envelope)
            except SinkError as exc:
                raise SinkError(
                    self.name, exc.reason, delivered=delivered, failed=[envelope.id]
                ) from exc
            delivered.append(envelope.id)

    def _run_one(self, envelope: Envelope) -> None:
        program = self._argv[0]
        document = to_json(envelope).encode()
        with tempfile.TemporaryDirectory(prefix="lacme-watch-") as directory:
            event_file = os.path.join(directory, "event.json")
            with open(
                os.open(event_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
            ) as out:
                out.write(document)
            env = {**self._base_env, **event_environment(envelope, event_file)}
            try:
                done = self._run(self._argv, document, env, self._timeout.total_seconds())
            except subprocess.TimeoutExpired:
                raise SinkError(
                    self.name, f"{program} timed out after {duration(self._timeout)}"
                ) from None
            except OSError as exc:
                raise SinkError(self.name, f"cannot run {program}: {exc.strerror}") from exc
        if done.returncode != 0:
            detail = _last_line(done.stderr)
            raise SinkError(
                self.name, f"{program} exited {done.returncode}" + (f": {detail}" if detail else "")
            )


def event_environment(envelope: Envelope, event_file: str) -> dict[str, str]:
    """The LACME_WATCH_* variables for one event (long values cut; the file has them whole)."""
    event = envelope.event
    env = {
        f"{PREFIX}EVENT": event.kind,
        f"{PREFIX}SUMMARY": " ".join(event.summary().split()),
        f"{PREFIX}ID": envelope.id,
        f"{PREFIX}TIME": format_time(envelope.time),
        f"{PREFIX}SOURCE": envelope.source,
        f"{PREFIX}SUBJECT": event.subject,
        f"{PREFIX}EVENT_FILE": event_file,
    }
    for field, value in event_data(event).items():
        env[PREFIX + field.upper()] = _text(value)
    truncated = []
    for key, value in env.items():
        value = value.replace("\x00", "\\x00")  # the one character an environment cannot hold
        if len(value.encode()) > MAX_VALUE:
            value = value.encode()[:MAX_VALUE].decode(errors="ignore")
            truncated.append(key.removeprefix(PREFIX))
        env[key] = value
    if truncated:
        env[f"{PREFIX}TRUNCATED"] = " ".join(truncated)
    return env


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return json.dumps(value, ensure_ascii=False)  # certificate_changed's changes
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def _inherited() -> dict[str, str]:
    env = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else ""
