"""The Public Suffix List that rate limits count registered domains by: the list bundled
with `publicsuffixlist`, compiled once into state_dir so that a pass loads it without
parsing it again (parsing IDN-encodes every rule: most of the cost).

The compiled copy is plain text, one rule per line, already encoded: never a pickle,
so a tampered file can say wrong suffixes but cannot run code. It is keyed by the
library's version and its data file's SHA-256, and carries the SHA-256 of its
rules: a stale, truncated or damaged copy is built again, and a state_dir that cannot
be written only means the list is parsed each time. Never fatal.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomicfile import write_whole

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

COMPILED_NAME = "public_suffix_list.compiled"
_FORMAT = "lacme-watch compiled public suffix list 1"
_ENCODING = ("utf-8", "surrogateescape")  # as publicsuffixlist reads its file


def load(cache_dir: Path | None) -> PublicSuffixList:
    """The bundled list, from the compiled copy in `cache_dir` when it is current."""
    import publicsuffixlist  # only when a pass counts registered domains

    key = _key(publicsuffixlist.PSLFILE, publicsuffixlist.__version__)
    path = cache_dir / COMPILED_NAME if cache_dir is not None else None
    if path is not None and key is not None:
        rules = _read(path, key)
        if rules is not None:
            return publicsuffixlist.PublicSuffixList(source=rules, accept_encoded_idn=False)
    parsed = publicsuffixlist.PublicSuffixList()  # the library's own parse of its file
    if path is not None and key is not None:
        _write(path, key, parsed)
    return parsed


def _key(data_file: str, version: str) -> str | None:
    """The library's version and its data file's SHA-256: a list replaced in place
    (same size, its mtime kept) is compiled again (hashing is far cheaper than parsing)."""
    try:
        with open(data_file, "rb") as stream:
            content = stream.read()
    except OSError:
        return None
    return f"{version} {hashlib.sha256(content).hexdigest()}"


def _read(path: Path, key: str) -> list[str] | None:
    """The compiled rules, or None when the copy is missing, stale or damaged."""
    try:
        text = path.read_bytes().decode(*_ENCODING)
    except (OSError, UnicodeError):
        return None
    header, _, body = text.partition("\n\n")
    if header.split("\n") != [_FORMAT, key, _digest(body)] or not body:
        return None
    return body.split("\n")


def _write(path: Path, key: str, parsed: PublicSuffixList) -> None:
    """Compile `parsed` into `path`, atomically, if it reads back as the same list."""
    from publicsuffixlist import PublicSuffixList

    rules = getattr(parsed, "_publicsuffix", None)  # a later library may keep another form
    if not isinstance(rules, frozenset) or not rules:
        return
    lines = sorted(rules)
    again = PublicSuffixList(source=lines, accept_encoded_idn=False)
    same = getattr(again, "_publicsuffix", None) == rules
    if not same or getattr(again, "_maxlabel", None) != getattr(parsed, "_maxlabel", None):
        return  # the plain parse would not give back the same list: keep parsing instead
    body = "\n".join(lines)
    text = f"{_FORMAT}\n{key}\n{_digest(body)}\n\n{body}"
    with contextlib.suppress(OSError, UnicodeError):  # a cache: rebuilt if it is not there
        write_whole(path, text.encode(*_ENCODING), fsync=False, prefix=".psl-")


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode(*_ENCODING)).hexdigest()
