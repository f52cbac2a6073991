"""One piece of work done by a forked child beside this process's own: the machine's
other core makes half of a large stat record's `lstat` calls (statrecord.py) while this
process makes the other half.

Only where it is safe, as forked.py's reader: with fork and more than one CPU, in a
process running one thread (a child forked from a threaded process can inherit a lock
held mid-way). The child computes, writes its pickled answer (or the exception it
raised) to a pipe only the two processes hold, and exits without running anything
else. Whatever it did not deliver (it died, it was killed) is done here afterwards:
a failed child costs time, never an answer.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from typing import TypeVar

_Theirs = TypeVar("_Theirs")
_Mine = TypeVar("_Mine")


def possible() -> bool:
    """Whether a child may be forked here at all (forked.py's reader asks it too)."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


def fork(child: Callable[[], None]) -> int:
    """A child that runs `child()` and exits (0 once it returned, 1 if it raised),
    running nothing else; this process gets its pid. Until reap(), the cyclic collector
    leaves alone every object that exists now: walking them writes to each one's
    header, so every page the two processes share would be copied, in both. Raises
    the OSError of a fork that failed."""
    gc.freeze()
    try:
        pid = os.fork()
    except OSError:
        gc.unfreeze()
        raise
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    return pid


def reap(pid: int) -> bool:
    """Wait for fork()'s child; whether it exited 0 (it did all `child()` had to)."""
    _, status = os.waitpid(pid, 0)
    gc.unfreeze()  # the pages are this process's alone again
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def run(theirs: Callable[[], _Theirs], mine: Callable[[], _Mine]) -> tuple[_Mine, _Theirs]:
    """`mine()` here and `theirs()` in a forked child, at the same time; their answers.
    An exception `theirs()` raised is raised here, once `mine()` is done."""
    if not possible():
        return mine(), theirs()
    import pickle  # only with a child to hear from: a quiet pass's record is small

    read_end, write_end = os.pipe()

    def child() -> None:
        os.close(read_end)
        try:
            sent: tuple[bool, object] = (True, theirs())
        except Exception as exc:  # handed to the parent, which raises it
            sent = (False, exc)
        with os.fdopen(write_end, "wb") as stream:
            pickle.dump(sent, stream, pickle.HIGHEST_PROTOCOL)

    try:
        pid = fork(child)
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return mine(), theirs()
    os.close(write_end)
    try:
        here = mine()
    finally:
        with os.fdopen(read_end, "rb") as stream:
            written = stream.read()  # until the child closes its end: exits or dies
        whole = reap(pid)
    received: tuple[bool, object] | None = None
    if whole:
        try:  # our own child wrote this pipe, which nobody else holds
            received = pickle.loads(written)  # noqa: S301
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
            received = None
    if received is None:  # it died, or what it wrote is not whole: done here instead
        return here, theirs()
    delivered, answer = received
    if not delivered and isinstance(answer, BaseException):
        raise answer
    return here, answer  # type: ignore[return-value]  # theirs()'s, pickled
