"""The connection every part of the state database shares, and its one kind of transaction."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from ..statefiles import (
    database_error,
)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


class Connected:
    """An open state database: `transaction()` is how every part of it writes."""

    path: Path
    _db: sqlite3.Connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

        An SQLite error anywhere inside becomes one StoreError line naming the file.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc
        try:
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
