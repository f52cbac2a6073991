"""The connection every part of the state database shares, and its one kind of transaction."""

from __future__ import annotations

import contextlib
import gc
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .files import (
    database_error,
)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while thousands of rows are made or read:
    their tuples and strings are short-lived and in no cycle, and a full collection in
    the middle walks every object the pass holds (about 0.05 s in the commit of a
    pass that emits 5,000 events). What is left to collect is collected after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Connected:
    """An open state database: `transaction()` is how every part of it writes."""

    path: Path
    _db: sqlite3.Connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception, with the cyclic
        collector paused (see collector_paused).

        An SQLite error anywhere inside becomes one StoreError line naming the file.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc
        try:
            with collector_paused():
                yield self._db
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise database_error(self.path, exc) from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        # After a disk or I/O error SQLite may have rolled back already.
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
