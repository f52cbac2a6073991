"""The README's third-party sink and source, installed through their entry points and run
by the real `lacme-watch` command, exactly as a plugin author would ship them."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.testing import check_failing_sink, check_sink, check_source

from .distributions import install

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
README = Path(__file__).resolve().parent.parent / "README.md"
NOW = datetime.now(UTC).replace(microsecond=0)


def test_the_readme_shows_the_example_verbatim() -> None:
    readme = README.read_text()
    for name in ("my_plugins.py", "pyproject.toml"):
        assert (EXAMPLE / name).read_text() in readme, f"README's {name} differs from {EXAMPLE}"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example package, installed: its module and entry points on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_plugins.py").write_bytes((EXAMPLE / "my_plugins.py").read_bytes())
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    install(site, project["name"], project["entry-points"])
    monkeypatch.syspath_prepend(str(site))
    return site


def _pem(path: Path, name: str, days_left: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    leaf = trustme.CA().issue_cert(
        name,
        not_before=NOW + timedelta(days=days_left - 90),
        not_after=NOW + timedelta(days=days_left),
    )
    path.write_bytes(leaf.cert_chain_pems[0].bytes())
    return path


def _watch(site: Path, config: Path) -> int:
    """`lacme-watch --config CONFIG watch --once` in a fresh interpreter with the plugin."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "lacme_watch", "--config", str(config), "watch", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


def _dropped(drop: Path) -> list[dict[str, object]]:
    found = [json.loads(path.read_text()) for path in drop.iterdir()]
    return sorted(found, key=lambda e: (str(e["type"]), str(e["subject"])))


def test_the_example_plugins_run_in_a_pass(site: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    inventory = tmp_path / "inventory.txt"
    inventory.write_text(
        f"# certificates we deploy by hand\n{_pem(certs / 'a.pem', 'a.example', 60)}\n"
        f"{_pem(certs / 'b.pem', 'b.example', 5)}\n{certs / 'gone.pem'}\n"
    )
    drop = tmp_path / "drop"
    drop.mkdir()
    config = tmp_path / "lacme-watch.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: inventory, inventory: {inventory}}}\n"
        f"  - {{type: pem, paths: ['{tmp_path / 'pem'}/*.pem']}}\n"
        f"sinks:\n  - {{type: filedrop, directory: {drop}}}\n"
    )
    _pem(tmp_path / "pem" / "c.pem", "c.example", 60)

    assert _watch(site, config) == 1  # gone.pem is a problem of that file
    assert [(e["type"], e["subject"]) for e in _dropped(drop)] == [
        ("lacme.certificate_expiring", "b.example"),
        ("lacme.certificate_unreadable", str(certs / "gone.pem")),
    ]

    # The inventory vanishes mid-life (SourceError): the pem store's news still arrives,
    # and the inventory's certificates are not reported removed.
    for path in drop.iterdir():
        path.unlink()
    inventory.unlink()
    _pem(tmp_path / "pem" / "d.pem", "d.example", 60)
    assert _watch(site, config) == 1
    assert [(e["type"], e["subject"]) for e in _dropped(drop)] == [
        ("lacme.certificate_issued", "d.example"),
        ("lacme.certificate_unreadable", str(inventory)),
    ]


def test_the_example_plugins_keep_the_contracts(site: Path, tmp_path: Path) -> None:
    my_plugins = importlib.import_module("my_plugins")  # installed by the fixture

    drop = tmp_path / "drop"
    drop.mkdir()
    check_sink(my_plugins.FileDropSink("filedrop", str(drop)), lambda: len(list(drop.iterdir())))
    check_failing_sink(my_plugins.FileDropSink("filedrop", str(tmp_path / "missing")))

    inventory = tmp_path / "inventory.txt"
    inventory.write_text(f"{_pem(tmp_path / 'a.pem', 'a.example', 60)}\n{tmp_path / 'x.pem'}\n")
    scan = check_source(my_plugins.InventorySource(str(inventory)))
    assert [o.domain for o in scan.observations] == ["a.example"]
    assert [p.reason for p in scan.problems] == ["not_found"]
