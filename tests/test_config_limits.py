"""Any byte string loaded as a configuration is a valid one or a `file:line` error.

Hostile or broken files (control characters, non-UTF-8, billion laughs, deep nesting,
huge numbers and durations) are refused quickly with a message naming the line, and a
Hypothesis test mutates the shipped example to look for anything else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lacme_watch.config import Config, load
from lacme_watch.errors import ConfigError

from .conftest import CliRunner

EXAMPLE = (Path(__file__).parents[1] / "config.example.yaml").read_bytes()
BASE = b"stores:\n  - {type: pem, paths: ['/etc/ssl/certs/*.pem']}\n"
LAUGHS = b"".join(
    f"{name}: &{name} [{','.join(['*' + previous] * 9)}]\n".encode()
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _error(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "lacme-watch.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    return message.removeprefix(f"{path}:")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(BASE + b"host: caf\xe9\n", "3: not UTF-8 text (byte 0xe9 at column 10)",
                     id="latin-1"),
        pytest.param(BASE + b"host: a\x01b\n", "3: control character U+0001 is not allowed",
                     id="raw-control"),
        pytest.param(BASE + b'host: "evil\\e[2J"\n',
                     "3: host: control character U+001B is not allowed in a value",
                     id="escaped-escape"),
        pytest.param(BASE + b'host: "bad\\ud800host"\n',
                     "3: host: U+D800 is half of a UTF-16 surrogate pair", id="lone-surrogate"),
        pytest.param(BASE + b'"\\udcff": 1\n',
                     "3: ?: U+DCFF is half of a UTF-16 surrogate pair", id="surrogate-key"),
        pytest.param(BASE + b'state_dir: "/var/lib/x\\0y"\n',
                     "3: state_dir: control character U+0000", id="nul-in-a-path"),
        pytest.param(BASE + b"schedule: {scan: 99999999999999999999d}\n",
                     "3: schedule.scan: expected a duration", id="huge-duration"),
        pytest.param(BASE + b"delivery: {max_age: 40000d}\n",
                     "3: delivery.max_age: expected a duration", id="past-100-years"),
        pytest.param(BASE + b"x: " + b"[" * 3000 + b"]" * 3000 + b"\n",
                     "3: nested too deeply", id="deep-nesting"),
        pytest.param(BASE + b"x: " + b"[" * 70 + b"]" * 70 + b"\n",
                     "nested too deeply (at most 64 levels)", id="nesting-past-the-limit"),
        pytest.param(BASE + b"a: &a [x,x,x,x,x,x,x,x,x]\n" + LAUGHS,
                     "values once aliases are expanded", id="billion-laughs"),
        pytest.param(BASE + b"host: 2026-13-45\n", "3: host: cannot read '2026-13-45'",
                     id="impossible-date"),
        pytest.param(BASE + b"max_file_size: " + b"9" * 5000 + b"\n",
                     "3: max_file_size: cannot read", id="5000-digit-number"),
        pytest.param(BASE + b"host: !!timestamp soon\n", "3: host: cannot read 'soon'",
                     id="bad-explicit-timestamp"),
        pytest.param(BASE + b"? [a, b]\n: 1\n", "3: keys must be strings", id="complex-key"),
        pytest.param(BASE + b"metrics: {textfile: /nonexistent/dir/lacme.prom}\n",
                     "3: metrics.textfile: the directory of /nonexistent/dir/lacme.prom does"
                     " not exist", id="textfile-directory-missing"),
    ],
)  # fmt: skip
def test_hostile_configs_are_errors_with_a_line(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    assert expected in _error(tmp_path, content)


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    assert "larger than 1024 KiB" in _error(tmp_path, BASE + b"#" * (2 * 1024 * 1024))


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path, cli: CliRunner) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(BASE + b"a: &a [x,x,x,x,x,x,x,x,x]\n" + LAUGHS)

    result = cli("--config", str(config), "config", "check")

    assert result.code == 2
    assert "Traceback" not in result.err
    assert re.fullmatch(rf"error: {re.escape(str(config))}:\d+: .*\n", result.err)


_TOKENS = [b"*a", b"&a ", b"[", b"]", b"{", b"}", b"\x00", b"\xff", b"\x1b", b"!!binary ",
           b"!!timestamp ", b"99999999999999999999d", b"1e400", b"<<: ", b"? ", b"- ", b": ",
           b"\n", b"\t", b"'", b'"', b"\\", b"%YAML 1.1\n", b"---\n", b"${HOME}",
           b"${NOPE_X}", b"!!set ", b"!!omap ", b"!!pairs ", b"2026-02-30", b".inf"]  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """The shipped example with a few bytes flipped, tokens inserted or spans dropped."""
    content = bytearray(EXAMPLE)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(content)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        if action == "flip" and at < len(content):
            content[at] = draw(st.integers(0, 255))
        elif action == "insert":
            content[at:at] = draw(st.sampled_from(_TOKENS))
        elif action == "delete":
            del content[at : at + draw(st.integers(1, 40))]
        else:
            content[at:at] = content[at : at + draw(st.integers(1, 200))]
    return bytes(content)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=_mutated())
def test_every_mutation_of_the_example_is_a_config_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "lacme-watch.yaml"
    path.write_bytes(content)
    outcome: Config | ConfigError
    try:
        outcome = load(path)
    except ConfigError as exc:  # the only other outcome allowed; anything else fails the test
        outcome = exc
    if isinstance(outcome, ConfigError):
        assert outcome.exit_code == 2
        assert str(outcome).startswith(str(path)), str(outcome)
    else:
        assert isinstance(outcome, Config)
