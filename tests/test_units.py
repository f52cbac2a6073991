"""`lacme-watch systemd install`: units right for this install, verified by systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CliRunner


def _config(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    (tmp_path / "spool").mkdir()
    (tmp_path / "metrics").mkdir()
    (tmp_path / "logs").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"spool: {tmp_path / 'spool'}\n"
        f"metrics: {{textfile: {tmp_path / 'metrics' / 'lacme_watch.prom'}}}\n"
        "stores:\n  - {type: certbot, path: /etc/letsencrypt}\n"
        "  - {type: pem, paths: ['/etc/ssl/private/*.pem']}\n"
        f"sinks:\n  - {{type: log, format: json, path: {tmp_path / 'logs' / 'events.jsonl'}}}\n"
    )
    return config


def _verify(directory: Path, names: list[str]) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed to verify the units (.ci/run installs it)"
    done = subprocess.run(
        [analyze, "verify", *names], cwd=directory, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr.strip()) == (0, "")


@pytest.mark.parametrize("timer", [False, True], ids=["daemon", "timer"])
def test_installed_units_start_this_lacme_watch_and_may_write_what_the_config_writes(
    tmp_path: Path, timer: bool
) -> None:
    script = Path(sys.executable).with_name("lacme-watch")
    assert script.is_file(), "the test venv has the lacme-watch script (pip install -e .)"
    config = _config(tmp_path)
    root = tmp_path / "root"

    done = subprocess.run(
        [str(script), "--config", str(config), "systemd", "install", "--root", str(root)]
        + (["--timer"] if timer else []),
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    units = root / "etc" / "systemd" / "system"
    names = sorted(p.name for p in units.iterdir())
    assert names == (
        ["lacme-watch-once.service", "lacme-watch.timer"] if timer else ["lacme-watch.service"]
    )
    _verify(units, names)
    service = (units / names[0]).read_text().splitlines()
    (exec_start,) = [line for line in service if line.startswith("ExecStart=")]
    assert exec_start.startswith(f"ExecStart={script} --config {config} ")
    assert f"ReadWritePaths=-{tmp_path / 'state'} -{tmp_path / 'spool'}" in "\n".join(service)
    (writable,) = [line for line in service if line.startswith("ReadWritePaths=")]
    assert writable.split("=", 1)[1].split() == [
        f"-{tmp_path / name}" for name in ("state", "spool", "metrics", "logs")
    ]
    assert "ReadOnlyPaths=-/etc/letsencrypt -/etc/ssl/private" in service
    assert f"Environment=LACME_WATCH_CONFIG={config}" in service
    assert "ProtectSystem=strict" in service
    assert f"wrote {units / names[0]}" in done.stdout


def test_python_dash_m_installs_units_that_run_python_dash_m(
    cli: CliRunner, tmp_path: Path
) -> None:
    config = _config(tmp_path)

    result = cli("--config", str(config), "systemd", "install", "--print")

    assert result.code == 0, result.err
    assert f"ExecStart={sys.executable} -m lacme_watch --config {config} " in result.out
    assert not (tmp_path / "root").exists()


def test_a_store_in_a_home_directory_stays_readable(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {tmp_path}\nstores:\n  - {{type: lacme, path: /root/.lacme}}\n")

    result = cli("--config", str(config), "systemd", "install", "--print")

    assert "ProtectHome=read-only" in result.out
    assert "ReadOnlyPaths=-/root/.lacme" in result.out


def test_zero_configuration_cannot_be_installed(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LACME_WATCH_CONFIG", raising=False)
    if Path("/etc/lacme-watch/config.yaml").exists():
        pytest.fail("this machine has /etc/lacme-watch/config.yaml; the test needs a clean one")

    result = cli("systemd", "install", "--print")

    assert result.code == 2
    assert "give --config PATH" in result.err
