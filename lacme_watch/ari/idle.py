"""Whether a pass's ARI round has anything to do, decided before the round is loaded.

The round (rounds.py: certIDs, HTTP, a thread pool) works only on certificates whose
ACME directory is known: through an ARI-enabled store's `ari: {directory: ...}`, a
certbot or dehydrated store's own files (directories.py), or an answer kept in the
state database (records.py's table, which the round also prunes). A pass over PEM
files or lacme stores alone has none of them: cron's cold start skips the round.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..plugins import Source
from .settings import AriSettings


def round_needed(settings: AriSettings, stores: Sequence[Source], db: sqlite3.Connection) -> bool:
    """False only when the round would ask nothing and write nothing."""
    if not settings.enabled:
        return False
    if any(may_name_a_directory(settings, source) for source in stores):
        return True
    return _answers_kept(db)


def may_name_a_directory(settings: AriSettings, source: Source) -> bool:
    """Whether directories.directory_lookup() may name an ACME directory for this store
    (its CA's answers can then change what a pass says of it)."""
    if not settings.enabled:
        return False
    store = settings.for_store(source.id)
    named = getattr(type(source), "names_acme_directory", False)  # certbot, dehydrated
    return store.enabled and (bool(store.directory) or named)


def _answers_kept(db: sqlite3.Connection) -> bool:
    """Any certificate row in ARI's table (records.py), which the round keeps current."""
    try:
        return db.execute("SELECT 1 FROM ari_certificates LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False  # never written: no certificate was ever asked about
        raise
