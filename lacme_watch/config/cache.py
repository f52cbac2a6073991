"""The parsed configuration file kept in state_dir, so that cron's `watch --once` does not
import PyYAML and parse the same file at every start (about 9 ms of a one-certificate
pass, a tenth of it).

What is kept is the parsed document (its values with their lines), never the validated
Config: build() runs at every start, so `${ENV}` references, `~`, secrets read from
`*_file` and the warnings about missing paths are as current as without the cache.
The entry is plain JSON keyed by the SHA-256 of the file's bytes and lacme-watch's
version: an edited file, or another lacme-watch, is parsed again.

The configuration decides what shell sinks run, so an entry is believed only when
nobody else could have written it, as ssh checks its own files: state_dir and the
entry are owned by the user running lacme-watch, neither is writable by group or
others, and the entry is a regular file (not a symlink). Anything else, a damaged or
truncated entry included, is a miss: the file is parsed as if there were none.

The entry is looked for in the state_dir the file names on a plain top-level
`state_dir:` line (or the default one when the file names none), since the file is
not parsed yet; a configuration that sets it any other way is simply always parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path

from .. import __version__
from ..errors import ConfigError
from ..options import MAX_CONFIG_SIZE, Node, Where, expand_env
from .discovery import default_state_dir

CACHE_NAME = "config-cache.json"
_FORMAT = 1
_MAX_ENTRY = 8 * MAX_CONFIG_SIZE
"""An entry is a few times the file it was parsed from; larger is not ours."""
_KEY = "state_dir"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def lookup(raw: bytes, file: str) -> Node | None:
    """The parsed document of `raw` (the bytes of `file`) if a trusted entry holds it."""
    directory = entry_dir(raw)
    if directory is None:
        return None
    entry = _read_trusted(directory)
    if entry is None:
        return None
    try:
        document = json.loads(entry)
        if document.get("key") != _key(raw):
            return None
        return _decode(document["tree"], Where(file, _line(document["tree"])))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return None  # a damaged entry is a miss: the file is parsed again


def store(raw: bytes, tree: Node, state_dir: Path) -> None:
    """Keep `tree`, parsed from `raw`, for the next start; quietly not when it cannot be
    trusted or found next time, or cannot be written (a read-only state_dir is not this
    command's problem)."""
    if entry_dir(raw) != state_dir or not _trusted_dir(state_dir):
        return
    encoded = _encode(tree)
    if encoded is None:  # a date or !!binary value: JSON cannot hold it as YAML gave it
        return
    document = {"format": _FORMAT, "key": _key(raw), "tree": encoded}
    from ..atomicfile import write_whole  # only on a miss: never on a start that hit

    with contextlib.suppress(OSError):
        # ASCII: YAML's "\ud800" escape gives a lone surrogate, which UTF-8 cannot encode
        text = json.dumps(document, separators=(",", ":"))
        write_whole(state_dir / CACHE_NAME, text.encode(), fsync=False, prefix=".config-")


def entry_dir(raw: bytes) -> Path | None:
    """Where the entry for this file is kept: the directory its top-level `state_dir:`
    line names (expanded as build() expands it), or the default state_dir when no line
    names one; None when that cannot be told without parsing (then no entry is used)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    values = [
        line[len(_KEY) :].lstrip(" \t") for line in text.splitlines() if line.startswith(_KEY)
    ]
    if not values:
        return None if _KEY in text else default_state_dir()
    if len(values) > 1 or not values[0].startswith(":"):
        return None  # twice (an error), or another key such as `state_dirs:`
    named = _plain_text(values[0][1:].strip())
    if named is None or not named.isprintable():
        return None  # a NUL or another control character: build() refuses it, clearly
    try:
        return Path(os.path.abspath(os.path.expanduser(expand_env(named))))
    except ConfigError:  # an unset ${VAR}: build() says so
        return None


def _plain_text(value: str) -> str | None:
    """A one-line YAML scalar as paths are written: plain, 'single' or "double" quoted
    without escapes, with an optional comment; None for anything else (a block below,
    a flow, an anchor, an alias, a tag, null) and for what YAML would not read as text."""
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        inner, rest = value[1:end], value[end + 1 :].strip()
        if end < 0 or "\\" in inner or (rest and not rest.startswith("#")):
            return None
        return inner or None
    if not value or not (value[0].isalnum() or value[0] in "/~$._"):
        return None
    for comment in (" #", "\t#"):
        value = value.split(comment, 1)[0]
    value = value.strip()
    return None if value in _NULLS or ": " in value or value.endswith(":") else value


def _key(raw: bytes) -> str:
    return f"{_FORMAT}:{__version__}:{hashlib.sha256(raw).hexdigest()}"


def _trusted_dir(directory: Path) -> bool:
    try:
        status = os.stat(directory)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return False
    return stat.S_ISDIR(status.st_mode) and _ours(status)


def _ours(status: os.stat_result) -> bool:
    return status.st_uid == os.geteuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_trusted(directory: Path) -> bytes | None:
    """The entry's bytes, if state_dir and the entry pass the ownership checks; checked
    on the open descriptors, so what is checked is what is read."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    try:
        directory_fd = os.open(directory, flags | os.O_DIRECTORY)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    try:
        if not _ours(os.fstat(directory_fd)):
            return None
        fd = os.open(CACHE_NAME, flags | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory_fd)
    except OSError:
        return None
    finally:
        os.close(directory_fd)
    with os.fdopen(fd, "rb") as stream:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode) or not _ours(status) or status.st_size > _MAX_ENTRY:
            return None
        try:
            return stream.read(_MAX_ENTRY + 1)
        except OSError:
            return None


_SCALARS = (str, int, float, bool, type(None))


def _encode(node: Node) -> list[object] | None:
    """[line, value]: a scalar as JSON has it, a list of such pairs, or a mapping of
    them; None when a scalar is of a type JSON does not keep (dates, bytes)."""
    value = node.value
    if isinstance(value, dict):
        mapping: dict[str, object] = {}
        for key, child in value.items():
            encoded = _encode(child)
            if encoded is None:
                return None
            mapping[key] = encoded
        return [node.where.line, mapping]
    if isinstance(value, list):
        items = [_encode(child) for child in value]
        return None if None in items else [node.where.line, items]
    return [node.where.line, value] if type(value) in _SCALARS else None


def _decode(pair: list[object], where: Where) -> Node:
    """The Node tree options.parse_yaml made: each place derived as it derives them."""
    _, value = pair
    if isinstance(value, dict):
        return Node(
            {key: _decode(child, where.child(key, _line(child))) for key, child in value.items()},
            where,
        )
    if isinstance(value, list):
        return Node(
            [_decode(item, where.child(index, _line(item))) for index, item in enumerate(value)],
            where,
        )
    if type(value) not in _SCALARS:
        raise TypeError(value)
    return Node(value, where)


def _line(pair: object) -> int:
    if not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not int:
        raise TypeError(pair)
    return pair[0]
