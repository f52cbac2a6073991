"""Control characters made visible, for every line a human reads.

Certificate names, file names and error texts come from files an attacker may
write. Printed raw, a CR or LF forges a second log or `check` line, and an ESC
or OSC sequence rewrites the operator's terminal. `printable()` turns each such
character into a visible escape (`\\n`, `\\x1b`, `\\u202e`); JSON output needs
no help, since JSON escapes them itself.
"""

from __future__ import annotations

import re
from functools import cache

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\\0"}


@cache
def _unsafe() -> re.Pattern[str]:
    """C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the
    bidirectional overrides that reorder what a terminal shows (the "Trojan Source" set);
    compiled on the first line printed, which a quiet cron pass never prints."""
    return re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character shown as an escape: one line, always."""
    return _unsafe().sub(_escape, text)
