"""How a YAML `type:` finds its class: entry points, protocol checks, no silent shadowing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lacme_watch.config import build
from lacme_watch.errors import ConfigError
from lacme_watch.options import parse_yaml
from lacme_watch.plugins import BUILT_IN, GROUPS, lookup

from .distributions import install

ROOT = Path(__file__).resolve().parent.parent


def test_the_built_in_table_is_pyprojects_entry_points() -> None:
    """A source checkout (uninstalled) and an installed wheel know the same types."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"] == BUILT_IN
    assert set(BUILT_IN) == set(GROUPS.values())


def test_every_built_in_satisfies_its_protocol() -> None:
    for group, names in BUILT_IN.items():
        for name in names:
            assert lookup(group, name, "here") is not None


PLUGIN = """
class NoFromOptions:
    id = "x"
    def scan(self, reader, cursor=None): ...

class PemLookalike:
    @classmethod
    def from_options(cls, options): ...
    def scan(self, reader, cursor=None): ...
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_plugins.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    return site


def _load(text: str) -> None:
    build(parse_yaml(text, "c.yaml"), "c.yaml")


def test_a_class_without_the_protocol_is_a_config_error_with_its_place(site: Path) -> None:
    install(site, "acme-plugins", {"lacme_watch.stores": {"broken": "acme_plugins:NoFromOptions"}})

    with pytest.raises(ConfigError) as raised:
        _load("stores:\n  - {type: pem, paths: [/tmp/x/*.pem]}\n  - type: broken\n")

    assert str(raised.value) == (
        "c.yaml:3: stores[1].type: type 'broken' (acme_plugins:NoFromOptions)"
        " is not a store plugin: it has no from_options()"
    )


def test_a_missing_class_is_a_config_error(site: Path) -> None:
    install(site, "acme-plugins", {"lacme_watch.sinks": {"gone": "acme_plugins:Nothing"}})

    with pytest.raises(ConfigError, match=r"^c\.yaml:4: sinks\[0\]\.type: type 'gone' cannot"):
        _load("stores:\n  - {type: pem, paths: [/tmp/x/*.pem]}\nsinks:\n  - type: gone\n")


def test_a_plugin_never_silently_shadows_a_built_in(site: Path) -> None:
    install(site, "acme-plugins", {"lacme_watch.stores": {"pem": "acme_plugins:PemLookalike"}})

    with pytest.raises(ConfigError) as raised:
        _load("stores:\n  - {type: pem, paths: [/tmp/x/*.pem]}\n")

    message = str(raised.value)
    assert message.startswith("c.yaml:2: stores[0].type: type 'pem' is registered more than once")
    assert "lacme_watch.sources.stores.pem:PemStore" in message
    assert "acme_plugins:PemLookalike" in message


def test_two_plugins_with_one_name_are_refused(site: Path) -> None:
    install(site, "one", {"lacme_watch.stores": {"same": "acme_plugins:PemLookalike"}})
    install(site, "two", {"lacme_watch.stores": {"same": "acme_plugins:NoFromOptions"}})

    with pytest.raises(ConfigError, match="'same' is registered more than once"):
        _load("stores:\n  - type: same\n")
