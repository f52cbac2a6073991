"""The one JSON loader for files other programs write: spool entries, lacme's meta.json
and rate_limits.json, the JSON in certbot's log.

`json.loads` alone lets such a file stop lacme-watch: a 200,000-deep array raises
RecursionError, and a lone surrogate escape (`"\\udcff"`) decodes to a string that
SQLite then refuses to store. Here the size and nesting depth are bounded before
parsing, and every string must be valid Unicode; anything else is a ValueError that
names the limit, for the caller to report as that one file's problem.
"""

from __future__ import annotations

import json
import re

MAX_DEPTH = 64
"""Deeper than any document lacme-watch reads (a CloudEvent nests 3 levels)."""
MAX_SIZE = 4 * 1024 * 1024

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonLimitError(ValueError):
    """A document over a limit (size, depth) or holding text that is not Unicode."""


def loads(content: str | bytes, *, max_depth: int = MAX_DEPTH, max_size: int = MAX_SIZE) -> object:
    """Parse one JSON document within the limits; raises ValueError saying what is wrong."""
    return loads_and_dump(content, max_depth=max_depth, max_size=max_size)[0]


def loads_and_dump(
    content: str | bytes, *, max_depth: int = MAX_DEPTH, max_size: int = MAX_SIZE
) -> tuple[object, str]:
    """loads(), and the document as text that is Unicode throughout, for a caller that
    keeps it (a file cache): the text itself when it holds no escape at all (strict
    UTF-8 leaves nothing else that could decode to a lone surrogate: lacme's meta.json),
    else the document dumped again (`ensure_ascii=False`), which proves it."""
    if len(content) > max_size:
        raise JsonLimitError(f"larger than {max_size} bytes")
    text = content.decode("utf-8") if isinstance(content, bytes) else content  # strict UTF-8
    depth = _depth(text, max_depth)
    if depth > max_depth:
        raise JsonLimitError(f"nested deeper than {max_depth} levels")
    try:
        document: object = json.loads(text)
    except RecursionError:  # unreachable after _depth; kept as the last line of defence
        raise JsonLimitError(f"nested deeper than {max_depth} levels") from None
    if "\\" not in text:
        return document, text
    dumped = json.dumps(document, ensure_ascii=False)
    try:
        dumped.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonLimitError(f"a string holds {exc.object[exc.start : exc.end]!a}") from None
    return document, dumped


def _depth(text: str, limit: int) -> int:
    """How deep brackets nest outside strings, or a bound no greater than `limit` when
    the document holds that few brackets at all; stops counting once past `limit`."""
    opened = text.count("[") + text.count("{")
    if opened <= limit:
        return opened  # no deeper than that: a small document needs no regex pass
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for bracket in brackets:
        depth += 1 if bracket in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest
