"""Where the command line writes: results to stdout, diagnostics to stderr, and text
from files and certificates made safe to print (control characters escaped)."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import TYPE_CHECKING

from ..printable import printable

if TYPE_CHECKING:
    from rich.console import Console


class Io:
    """Where the CLI writes: results to stdout, diagnostics to stderr.

    rich is imported on first use: `watch --once` under cron writes plain lines only
    and never pays for it.
    """

    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        return sys.stdout.isatty()

    def note(self, text: str, label: str = "", style: str = "") -> None:
        """One diagnostic line on stderr (control characters escaped, as everywhere),
        `label` styled on a terminal; plain, without rich, otherwise."""
        if sys.stderr.isatty():
            styled = f"[{style}]{label}[/] " if label and style else f"{label} " if label else ""
            self.err.print(styled + markup_safe(text))
        else:
            sys.stderr.write(f"{label} {printable(text)}\n" if label else f"{printable(text)}\n")
            sys.stderr.flush()


def markup_safe(text: str) -> str:
    """Text from files and certificates, safe to print: control characters shown as
    escapes (no forged lines, no terminal sequences), rich markup taken literally."""
    from rich.markup import escape  # only where rich prints

    return escape(printable(text))
