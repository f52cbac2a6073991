"""Daemon logging: rich on a terminal, plain lines under systemd, JSON for log shippers."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from typing import TextIO

from cryptography.utils import CryptographyDeprecationWarning

from ..printable import printable


class _OneLine(logging.Filter):
    """Text logs show control characters as escapes: a CR/LF or an ESC sequence in a
    file or certificate name cannot forge a journal line or reach a terminal.
    (Tracebacks are added after this, with their own newlines; JSON escapes by itself.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = printable(record.getMessage())
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _quiet_parser_warnings() -> None:
    """cryptography warns on every parse of a certificate with a non-positive serial
    (roots still shipped in ca-certificates have serial 0) and cron mails whatever
    reaches stderr: such a certificate is watched like any other (its serial is shown
    with its sign), so the warning is noise. Process-wide, because a catch_warnings()
    block is not thread-safe and endpoints are probed in threads."""
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)


def configure(level: str, form: str, stream: TextIO | None = None) -> None:
    """`form`: text (rich on a terminal; plain, without time stamps, under systemd) or json."""
    stream = stream or sys.stderr
    _quiet_parser_warnings()
    handler: logging.Handler
    if form == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif stream.isatty() and "JOURNAL_STREAM" not in os.environ:
        from rich.console import Console  # a terminal only: cron and systemd never load rich
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream), show_path=False)
    else:
        # The journal (or cron's mail) adds its own time stamps.
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if form != "json":
        handler.addFilter(_OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    # APScheduler narrates every job run at info; that is debugging detail here.
    apscheduler_level = logging.DEBUG if level == "debug" else logging.WARNING
    logging.getLogger("apscheduler").setLevel(apscheduler_level)
