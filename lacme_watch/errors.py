"""Every error lacme-watch raises on purpose, and the exit status it maps to.

LacmeWatchError   cli.main prints it, exits with .exit_code (1 unless noted)
├── ConfigError   the YAML or the command line is wrong               exit 2
├── StoreError    state_dir cannot be read or written       exit 1, or 2 if set up wrongly
├── SourceError   a store or authority is unreadable  -> reported; pass goes on
├── SinkError     one delivery failed                 -> retried from the outbox
└── EventFormatError  a CloudEvent (spool, emit, decoder) is malformed   exit 2
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta


class LacmeWatchError(Exception):
    """Base of every deliberate lacme-watch error."""

    exit_code: int = 1


class ConfigError(LacmeWatchError):
    """The configuration or the command line is wrong; the message says where."""

    exit_code = 2

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


class StoreError(LacmeWatchError):
    """The state database in state_dir cannot be opened, read or written.

    Exit 1, or 2 (`exit_code=2`) when state_dir is set up wrongly: it cannot be created
    or written, or it sits on a read-only file system.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class SourceError(LacmeWatchError):
    """A store or authority cannot be read as a whole; its inventory carries over."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.path = path
        self.reason = reason
        self.detail = detail


class SinkError(LacmeWatchError):
    """A sink could not deliver; the outbox will try again later.

    The outcome is per event, and only for the events the sink attempted:
    `delivered` names the ids that got through (never sent again); `rejected` maps ids
    the receiver refused for good (HTTP 400) to the reason (reported, not retried);
    `failed` names the ids attempted that may succeed later (retried with backoff).
    An event in none of them was not attempted: it stays due, its attempts untouched.
    A sink that does not name `failed` (a batch sink, an older plugin) means every
    event not delivered or rejected was attempted; `permanent` then refuses them all
    (one batch the receiver will never take). `retry_after` is the receiver's own wish
    (HTTP Retry-After).
    """

    def __init__(
        self,
        sink: str,
        reason: str,
        *,
        delivered: Collection[str] = (),
        rejected: Mapping[str, str] | None = None,
        failed: Collection[str] | None = None,
        retry_after: timedelta | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(f"sink {sink!r}: {reason}")
        self.sink = sink
        self.reason = reason
        self.delivered = frozenset(delivered)
        self.rejected: Mapping[str, str] = dict(rejected or {})
        self.failed = None if failed is None else frozenset(failed)
        self.retry_after = retry_after
        self.permanent = permanent


class EventFormatError(LacmeWatchError):
    """A CloudEvent could not be decoded into a lacme-watch event."""

    exit_code = 2
