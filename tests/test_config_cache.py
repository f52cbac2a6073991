"""The parsed configuration kept in state_dir (config/cache.py): used only when nobody
but the running user could have written it, for exactly the file's bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lacme_watch.config import cache, default_state_dir, load, load_keeping
from lacme_watch.errors import ConfigError
from lacme_watch.options import parse_bytes

from .conftest import CliRunner


def _write_config(tmp_path: Path, host: str = "real") -> tuple[Path, Path]:
    state = tmp_path / "state"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {state}  # kept here\n"
        f"host: {host}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/*.pem']}}\n"
        "expiry:\n  thresholds_days: [30, 7]\n"
    )
    return config, state


def _cached(tmp_path: Path) -> tuple[Path, Path]:
    """A configuration whose parsed form the first load kept in state_dir."""
    config, state = _write_config(tmp_path)
    state.mkdir(mode=0o700)
    load(config)
    assert (state / cache.CACHE_NAME).is_file()
    return config, state


def _forge_host(state: Path, host: str) -> Path:
    """Rewrite the kept entry so that a load believing it says `host`."""
    entry = state / cache.CACHE_NAME
    document = json.loads(entry.read_text())
    document["tree"][1]["host"][1] = host
    entry.write_text(json.dumps(document))
    return entry


def test_a_kept_entry_is_the_parse_of_the_same_bytes(tmp_path: Path) -> None:
    config, _ = _cached(tmp_path)
    raw = config.read_bytes()

    assert cache.lookup(raw, str(config)) == parse_bytes(raw, str(config))
    assert load(config).host == "real"
    assert load(config).policy.thresholds_days == (30, 7)


def test_the_entry_is_believed_when_only_this_user_can_write_it(tmp_path: Path) -> None:
    """Without this, the tests below that expect the real value would prove nothing."""
    config, state = _cached(tmp_path)
    _forge_host(state, "from-the-cache")

    assert load(config).host == "from-the-cache"


def test_an_edited_file_is_parsed_again_and_kept(tmp_path: Path) -> None:
    config, state = _cached(tmp_path)
    _write_config(tmp_path, host="edited")

    assert load(config).host == "edited"
    _forge_host(state, "kept-after-the-edit")  # what was kept is the edited file's
    assert load(config).host == "kept-after-the-edit"


def test_an_entry_owned_by_another_user_is_ignored(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    config, state = _cached(tmp_path)
    entry = _forge_host(state, "forged")
    os.chown(entry, 65534, 65534)

    assert load(config).host == "real"


def test_a_state_dir_owned_by_another_user_is_not_trusted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    config, state = _cached(tmp_path)
    _forge_host(state, "forged")
    os.chown(state, 65534, 65534)

    assert load(config).host == "real"


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_an_entry_others_may_write_is_ignored(tmp_path: Path, mode: int) -> None:
    config, state = _cached(tmp_path)
    entry = _forge_host(state, "forged")
    entry.chmod(mode)

    assert load(config).host == "real"


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_a_state_dir_others_may_write_is_not_trusted(tmp_path: Path, mode: int) -> None:
    config, state = _cached(tmp_path)
    entry = _forge_host(state, "forged")
    state.chmod(mode)

    assert load(config).host == "real"
    assert json.loads(entry.read_text())["tree"][1]["host"][1] == "forged"  # nor rewritten


def test_a_symlinked_entry_is_ignored(tmp_path: Path) -> None:
    config, state = _cached(tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    _forge_host(state, "forged").rename(elsewhere)
    (state / cache.CACHE_NAME).symlink_to(elsewhere)

    assert load(config).host == "real"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: "\x00\xff garbage", id="garbage"),
        pytest.param(lambda text: '{"format": 1}', id="no-key"),
        pytest.param(lambda text: "[1, 2, 3]", id="not-an-object"),
        pytest.param(
            lambda text: text.replace('"host":[2,"real"]', '"host":[2,{"x":"y"}]'), id="bad-node"
        ),
        pytest.param(
            lambda text: text.replace('"host":[2,"real"]', '"host":["2","real"]'), id="bad-line"
        ),
        pytest.param(lambda text: text.replace('"key":"1:', '"key":"0:'), id="other-version"),
    ],
)
def test_a_damaged_entry_is_a_miss_and_is_written_again(tmp_path: Path, damage: object) -> None:
    config, state = _cached(tmp_path)
    entry = state / cache.CACHE_NAME
    assert callable(damage)
    entry.write_text(damage(entry.read_text()))

    assert load(config).host == "real"
    _forge_host(state, "rewritten")  # the miss kept a good entry again
    assert load(config).host == "rewritten"


def test_watch_keeps_the_parsed_file_once_its_first_pass_made_state_dir(
    tmp_path: Path, cli: CliRunner
) -> None:
    config, state = _write_config(tmp_path)
    assert not state.exists()

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 0, result.err
    entry = state / cache.CACHE_NAME
    assert entry.is_file()
    assert entry.stat().st_mode & 0o777 == 0o600  # the file may hold webhook URLs
    assert cache.lookup(config.read_bytes(), str(config)) is not None


def test_config_check_does_not_make_state_dir_to_keep_it(tmp_path: Path, cli: CliRunner) -> None:
    config, state = _write_config(tmp_path)

    result = cli("--config", str(config), "config", "check")

    assert result.code == 0, result.err
    assert not state.exists()


def test_errors_still_name_the_file_and_line_with_an_entry_kept(tmp_path: Path) -> None:
    """build() runs on the kept document as on a parsed one: same places in messages."""
    config, state = _cached(tmp_path)
    document = json.loads((state / cache.CACHE_NAME).read_text())
    document["tree"][1]["host"][1] = 42  # what `host: 42` parses to
    (state / cache.CACHE_NAME).write_text(json.dumps(document))

    with pytest.raises(ConfigError, match=r"c\.yaml:2: host: expected a non-empty string"):
        load(config)


def test_values_json_cannot_keep_are_not_cached(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    raw = f"state_dir: {state}\nwhen: 2026-06-01\n".encode()

    cache.store(raw, parse_bytes(raw, "c.yaml"), state)

    assert not (state / cache.CACHE_NAME).exists()


def test_a_state_dir_from_the_environment_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LW_STATE", str(tmp_path / "s"))
    monkeypatch.setenv("HOME", str(tmp_path))

    assert cache.entry_dir(b"state_dir: ${LW_STATE}/x\n") == tmp_path / "s" / "x"
    assert cache.entry_dir(b"state_dir: '~/st'\n") == tmp_path / "st"
    assert cache.entry_dir(b'state_dir: "/var/x" # c\n') == Path("/var/x")
    assert cache.entry_dir(b"stores: []\n") == default_state_dir()


@pytest.mark.parametrize(
    "text",
    [
        "{state_dir: /x, stores: []}\n",  # a flow mapping
        "state_dir: ${LW_UNSET_FOR_TEST}\n",
        "state_dir:\n  /x\n",
        "state_dir: &d /x\n",
        "state_dir: !!str /x\n",
        "state_dir: ~\n",
        "state_dir: /x\nstate_dir: /y\n",
        "state_dir: 'it''s'\n",
        'state_dir: "/a\\tb"\n',
        "state_dir: /a: b\n",
        "state_dirs: /x\n",
        "state_dir: null  # the default\n",
    ],
)
def test_a_state_dir_set_any_other_way_is_always_parsed(text: str) -> None:
    assert cache.entry_dir(text.encode()) is None


def test_load_keeping_writes_nothing_until_asked(tmp_path: Path) -> None:
    config, state = _write_config(tmp_path)
    state.mkdir(mode=0o700)

    _, keep = load_keeping(config)
    assert not (state / cache.CACHE_NAME).exists()
    keep()
    assert (state / cache.CACHE_NAME).exists()


def test_a_hash_in_a_plain_path_is_part_of_it() -> None:
    assert cache.entry_dir(b"state_dir: /srv/a#b  # where\n") == Path("/srv/a#b")


def test_a_lone_surrogate_is_a_config_error_and_nothing_is_kept(tmp_path: Path) -> None:
    """YAML's "\\ud800" escape makes half a surrogate pair, which no UTF-8 text holds:
    the file is refused at its line, and no parsed copy is kept."""
    config, state = _write_config(tmp_path, host='"a\\ud800b"')
    state.mkdir(mode=0o700)

    with pytest.raises(ConfigError, match="host: U\\+D800 is half of a UTF-16 surrogate"):
        load(config)
    assert not (state / cache.CACHE_NAME).exists()


@pytest.mark.parametrize("line", ["state_dir: /tmp/a\x00b", "state_dir: /tmp/a\x01b"])
def test_a_control_character_in_state_dir_is_a_config_error_not_a_crash(
    tmp_path: Path, line: str
) -> None:
    """The cache's own look at the `state_dir:` line must not trip over what build()
    refuses with a clear error (a NUL made os.open raise ValueError)."""
    config = tmp_path / "c.yaml"
    config.write_bytes(f"{line}\nhost: x\n".encode())
    with pytest.raises(ConfigError, match="control character"):
        load(config)
