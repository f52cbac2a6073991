"""YAML that remembers where each value came from, read through typed accessors.

Every value keeps its file, line and key path, so any mistake can be reported as
`lacme-watch.yaml:31: sinks[1].smtp.port: expected an integer, got 'twenty-five'`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .errors import ConfigError
from .instants import MAX_DURATION as MAX_DURATION  # re-exported for config readers
from .instants import format_duration as format_duration
from .instants import parse_duration as parse_duration

_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

if TYPE_CHECKING:  # PyYAML only to parse a file: a start with a cached one has no need
    import yaml

T = TypeVar("T")


MAX_CONFIG_SIZE = 1024 * 1024
"""A configuration file is a few KiB; anything past 1 MiB is refused before parsing."""
MAX_NODES = 100_000
"""YAML values after alias expansion: stops billion-laughs documents early."""
MAX_DEPTH = 64
"""Nesting of lists and mappings (the deepest real configuration needs about 5)."""
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
"""Half of a UTF-16 pair, as YAML's `"\\ud800"` escape makes: not text (it has no UTF-8
form), so no host, path or name can hold one."""


def parse_size(text: str) -> int | None:
    """`4MiB`, `512k`, `1048576`; None when the text is not a size."""
    match = _SIZE.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)[:1].lower()]


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a configuration file: file, line and key path."""

    file: str
    line: int
    key: str = ""

    def child(self, key: str | int, line: int | None = None) -> Where:
        if isinstance(key, int):
            path = f"{self.key}[{key}]"
        else:
            path = f"{self.key}.{key}" if self.key else key
        return Where(self.file, self.line if line is None else line, path)

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}"
        return f"{place}: {self.key}" if self.key else place


@dataclass(frozen=True, slots=True)
class Node:
    """One YAML value (scalar, list of Nodes or dict of Nodes) and where it stands."""

    value: object
    where: Where

    def unexpected(self, expected: str) -> ConfigError:
        shown = self.value if not isinstance(self.value, (list, dict)) else _kind(self.value)
        return ConfigError(str(self.where), f"expected {expected}, got {shown!r}")


def _kind(value: object) -> str:
    return "a list" if isinstance(value, list) else "a mapping"


def load_yaml(path: Path) -> Node:
    """Parse a YAML file into Nodes; every problem names the file and line."""
    return parse_bytes(read_config(path), str(path))


def read_config(path: Path) -> bytes:
    """A configuration file's bytes, refused past MAX_CONFIG_SIZE."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_SIZE + 1)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG_SIZE:
        raise ConfigError(str(path), f"larger than {MAX_CONFIG_SIZE // 1024} KiB: not a config")
    return raw


def parse_bytes(raw: bytes, file: str) -> Node:
    """Parse a configuration file's bytes (UTF-8 YAML) into Nodes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{file}:{line}",
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column});"
            " save the file as UTF-8",
        ) from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> Node:
    """Parse YAML text into Nodes, within limits of size, aliases and nesting."""
    import yaml

    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks every character up front
        raise _control_character(text, file, exc) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return Node({}, Where(file, 1))
        return _convert(loader, root, Where(file, root.start_mark.line + 1), _Budget())
    except yaml.reader.ReaderError as exc:
        raise _control_character(text, file, exc) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{file}:{line}", f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{file}:{loader.line + 1}", f"nested too deeply (at most {MAX_DEPTH} levels)"
        ) from None
    finally:
        loader.dispose()


def _control_character(text: str, file: str, exc: yaml.reader.ReaderError) -> ConfigError:
    line = text[: exc.position].count("\n") + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return ConfigError(f"{file}:{line}", f"control character U+{code:04X} is not allowed")


class _Budget:
    """Counts the values one document expands to (aliases included)."""

    def __init__(self) -> None:
        self.nodes = 0

    def spend(self, where: Where, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConfigError(
                f"{where.file}:{where.line}",
                f"more than {MAX_NODES} values once aliases are expanded: not a config",
            )
        if depth > MAX_DEPTH:
            raise ConfigError(str(where), f"nested too deeply (at most {MAX_DEPTH} levels)")


def _convert(
    loader: yaml.SafeLoader, node: yaml.Node, where: Where, budget: _Budget, depth: int = 0
) -> Node:
    import yaml  # loaded by parse_yaml already

    budget.spend(where, depth)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve `<<:` merge keys
        mapping: dict[str, Node] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(f"{where.file}:{line}", "keys must be strings")
            key = _scalar(loader, key_node, where.child("?", line))
            if not isinstance(key, str):
                raise ConfigError(str(where.child(str(key), line)), "keys must be strings")
            if key in mapping:
                raise ConfigError(str(where.child(key, line)), "duplicate key")
            mapping[key] = _convert(loader, value_node, where.child(key, line), budget, depth + 1)
        return Node(mapping, where)
    if isinstance(node, yaml.SequenceNode):
        items = [
            _convert(loader, item, where.child(index, item.start_mark.line + 1), budget, depth + 1)
            for index, item in enumerate(node.value)
        ]
        return Node(items, where)
    return Node(_scalar(loader, node, where), where)


def _scalar(loader: yaml.SafeLoader, node: yaml.Node, where: Where) -> object:
    """One scalar's value; values Python cannot hold are errors at their line."""
    try:
        value = loader.construct_object(node, deep=True)
    except Exception as exc:  # PyYAML's constructors fail in many ways on odd input
        # (ValueError for 2026-13-45, AttributeError for `!!timestamp x`): each is this line's
        detail = str(exc)[:120] or type(exc).__name__
        raise ConfigError(str(where), f"cannot read {str(node.value)[:40]!r}: {detail}") from None
    if isinstance(value, str) and (found := _CONTROL.search(value)):
        raise ConfigError(
            str(where), f"control character U+{ord(found.group()):04X} is not allowed in a value"
        )
    if isinstance(value, str) and (found := _SURROGATE.search(value)):
        raise ConfigError(
            str(where),
            f"U+{ord(found.group()):04X} is half of a UTF-16 surrogate pair, not a character:"
            " write the character itself (or its \\U escape)",
        )
    return value


class Options:
    """One YAML mapping, read through typed accessors that name file:line and key on error."""

    def __init__(self, where: Where, raw: Mapping[str, Node], warnings: list[str] | None = None):
        self.where = where
        self._raw = raw
        self._used: set[str] = set()
        self.warnings: list[str] = [] if warnings is None else warnings

    @classmethod
    def of(cls, node: Node, warnings: list[str] | None = None) -> Options:
        if not isinstance(node.value, dict):
            raise node.unexpected("a mapping")
        return cls(node.where, node.value, warnings)

    def __contains__(self, key: str) -> bool:
        return key in self._raw

    def node(self, key: str) -> Node | None:
        self._used.add(key)
        node = self._raw.get(key)
        return None if node is None or node.value is None else node

    def _required(self, key: str) -> Node:
        node = self.node(key)
        if node is None:
            raise ConfigError(str(self.where.child(key)), "is required")
        return node

    def string(self, key: str, default: str | None = None) -> str:
        node = self.node(key)
        if node is None:
            if default is None:
                raise ConfigError(str(self.where.child(key)), "is required")
            return default
        if not isinstance(node.value, str) or not node.value:
            raise node.unexpected("a non-empty string")
        return node.value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if self.node(key) is not None else None

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise ConfigError(
                str(self._required(key).where),
                f"expected one of {', '.join(choices)}, got {value!r}",
            )
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = None) -> int:
        node = self.node(key)
        if node is None:
            return default
        if not isinstance(node.value, int) or isinstance(node.value, bool):
            raise node.unexpected("an integer")
        if minimum is not None and node.value < minimum:
            raise node.unexpected(f"an integer of at least {minimum}")
        return node.value

    def size(self, key: str, default: int) -> int:
        node = self.node(key)
        if node is None:
            return default
        value = node.value
        found = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str):
            found = parse_size(value)
        if found is None or found <= 0:
            raise node.unexpected("a size like '4MiB' or a number of bytes")
        return found

    def boolean(self, key: str, default: bool) -> bool:
        node = self.node(key)
        if node is None:
            return default
        if not isinstance(node.value, bool):
            raise node.unexpected("true or false")
        return node.value

    def duration(self, key: str, default: timedelta | None = None) -> timedelta:
        node = self.node(key)
        if node is None:
            if default is None:
                raise ConfigError(str(self.where.child(key)), "is required")
            return default
        found = parse_duration(node.value) if isinstance(node.value, str) else None
        if found is None or found <= timedelta(0):
            raise node.unexpected("a duration like '90s', '15m', '12h' or '7d'")
        return found

    def numbers(
        self, key: str, default: tuple[T, ...], kind: type[T], *, low: float, high: float
    ) -> tuple[T, ...]:
        """A list of numbers, each in (low, high]; `kind` int or float."""
        node = self.node(key)
        if node is None:
            return default
        if not isinstance(node.value, list):
            raise node.unexpected("a list of numbers")
        values: list[T] = []
        for item in node.value:
            number = item.value
            wanted = "an integer" if kind is int else "a number"
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise item.unexpected(wanted)
            if kind is int and not isinstance(number, int):
                raise item.unexpected(wanted)
            if not low < number <= high:
                raise item.unexpected(f"{wanted} above {low:g} and at most {high:g}")
            values.append(kind(number))  # type: ignore[call-arg]  # kind is int or float
        return tuple(values)

    def _string_items(self, key: str) -> list[Node] | None:
        """The items of a list of non-empty strings (a single string is a list of one)."""
        node = self.node(key)
        if node is None:
            return None
        items = node.value if isinstance(node.value, list) else [node]
        for item in items:
            if not isinstance(item.value, str) or not item.value:
                raise item.unexpected("a non-empty string")
        return items

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of strings; a single string is accepted as a list of one."""
        items = self._string_items(key)
        return default if items is None else tuple(str(item.value) for item in items)

    def path(self, key: str, default: str | None = None, *, must_exist: bool = False) -> str:
        """An absolute path (`~` and `${ENV}` expanded); a missing one is a warning."""
        node = self.node(key)
        text = self.string(key, default)
        expanded = os.path.abspath(os.path.expanduser(expand_env(text, node)))
        if must_exist and not os.path.exists(expanded):
            place = node.where if node else self.where.child(key)
            self.warnings.append(f"{place}: {expanded} does not exist (yet)")
        return expanded

    def paths(self, key: str) -> tuple[str, ...]:
        """A list of absolute paths or globs (`~` and `${ENV}` expanded in each)."""
        return tuple(
            os.path.abspath(os.path.expanduser(expand_env(str(item.value), item)))
            for item in self._string_items(key) or []
        )

    def string_map(self, key: str) -> dict[str, str]:
        """A mapping of names to strings (`${ENV}` expanded): environment, headers."""
        node = self.node(key)
        if node is None:
            return {}
        if not isinstance(node.value, dict):
            raise node.unexpected("a mapping of names to strings")
        found = {}
        for name, item in node.value.items():
            if isinstance(item.value, bool) or not isinstance(item.value, (str, int)):
                raise item.unexpected("a string")
            found[name] = expand_env(str(item.value), item)
        return found

    def secret(self, key: str) -> str | None:
        """A secret from `KEY_file` or a `${ENV}` reference in `KEY`, never plain text.

        Plain text is refused so that a secret never sits in a file that is
        copied, committed and shown in `config check` output.
        """
        file_key = f"{key}_file"
        node = self.node(key)
        file_node = self.node(file_key)
        if node is not None and file_node is not None:
            raise ConfigError(str(node.where), f"give either {key} or {file_key}, not both")
        if file_node is not None:
            path = self.path(file_key)
            try:
                with open(path, encoding="utf-8") as stream:
                    return stream.read().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    str(file_node.where), f"cannot read {path}: {exc.strerror}"
                ) from exc
        if node is None:
            return None
        if not isinstance(node.value, str) or not _ENV_REF.search(node.value):
            raise ConfigError(
                str(node.where),
                f"a secret must come from ${{ENV_VAR}} or {file_key}, not plain text",
            )
        return expand_env(node.value, node)

    def section(self, key: str) -> Options:
        """A nested mapping (empty when absent); call finish() on it too."""
        node = self.node(key)
        if node is None:
            return Options(self.where.child(key), {}, self.warnings)
        return Options.of(node, self.warnings)

    def sections(self, key: str) -> list[Options]:
        """A list of mappings (e.g. `stores:`); empty when absent."""
        node = self.node(key)
        if node is None:
            return []
        if not isinstance(node.value, list):
            raise node.unexpected("a list")
        return [Options.of(item, self.warnings) for item in node.value]

    def finish(self) -> None:
        """Call last: reject keys that no reader asked for (they are usually typos)."""
        if unknown := sorted(set(self._raw) - self._used):
            first = self._raw[unknown[0]].where
            more = f" (also: {', '.join(unknown[1:])})" if unknown[1:] else ""
            known = ", ".join(sorted(self._used)) or "none"
            raise ConfigError(str(first), f"unknown key{more}; known keys here: {known}")


def expand_env(text: str, node: Node | None = None) -> str:
    """Replace `${NAME}` with the environment variable; an unset one is an error."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            where = str(node.where) if node else "configuration"
            raise ConfigError(where, f"environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REF.sub(lookup, text)
