"""Renewal information for real ACME clients' lineages: certbot and dehydrated issue
against pebble; their own files name the directory, which points at the ARI server."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lacme_watch.ari.directories import dehydrated_ca

from .acme import Certbot, Dehydrated, Pebble
from .ari_server import AriServer
from .conftest import CliRunner, data, kinds, watch, write_config

NOW = datetime.now(UTC).replace(microsecond=0)
NAME = "ari.example.com"
pytestmark = pytest.mark.acme  # certbot and dehydrated against pebble


@pytest.fixture
def ari() -> Iterator[AriServer]:
    server = AriServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certbot_lineage(pebble: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Certbot:
    """One real certbot issuance for the module; each test works on a copy of it."""
    certbot = Certbot(pebble, tmp_path_factory.mktemp("certbot-ari"))
    issued = certbot.issue(NAME, f"www.{NAME}")
    assert issued.returncode == 0, issued.stderr
    return certbot


def _certbot_copy(tmp_path: Path, certbot: Certbot, server: str) -> Path:
    """certbot's config dir with `server =` in the renewal conf set to `server`."""
    config_dir = tmp_path / "letsencrypt"
    shutil.copytree(certbot.config_dir, config_dir, symlinks=True)
    conf = config_dir / "renewal" / f"{NAME}.conf"
    text = conf.read_text()
    assert re.search(r"^server = ", text, re.MULTILINE), text
    conf.write_text(re.sub(r"^server = .*$", f"server = {server}", text, flags=re.MULTILINE))
    return config_dir


def _config(tmp_path: Path, store: str, extra: str = "") -> Path:
    return write_config(
        tmp_path / "lacme-watch.yaml",
        f"""
state_dir: {tmp_path / "state"}
stores:
{store}
sinks:
  - type: log
    format: json
    path: {tmp_path / "events.jsonl"}
{extra}
""",
    )


def test_certbot_lineage_asks_its_renewal_conf_server(
    cli: CliRunner, tmp_path: Path, certbot_lineage: Certbot, ari: AriServer
) -> None:
    config_dir = _certbot_copy(tmp_path, certbot_lineage, ari.directory)
    identifier = ari.add(config_dir / "live" / NAME / "cert.pem")
    ari.move(identifier, NOW - timedelta(hours=2), NOW + timedelta(hours=4), "https://ca/why")
    config = _config(tmp_path, f"  - type: certbot\n    path: {config_dir}")
    log = tmp_path / "events.jsonl"

    code, first = watch(cli, config, log, "--now", NOW.isoformat())
    _, second = watch(cli, config, log, "--now", (NOW + timedelta(hours=7)).isoformat())

    assert code == 0
    assert kinds(first).count("renewal_window_moved") == 1
    assert "renewal_window_moved" not in kinds(second)
    assert ari.count(f"/renewal-info/{identifier}") == 2
    moved = next(e for e in first if e["type"] == "lacme.renewal_window_moved")
    assert moved["subject"] == NAME
    assert data(moved)["domains"] == [NAME, f"www.{NAME}"]
    assert data(moved)["explanation_url"] == "https://ca/why"


def test_certbot_lineage_unrenewed_past_the_window_end_is_overdue(
    cli: CliRunner, tmp_path: Path, certbot_lineage: Certbot, ari: AriServer
) -> None:
    config_dir = _certbot_copy(tmp_path, certbot_lineage, ari.directory)
    identifier = ari.add(config_dir / "live" / NAME / "cert.pem")
    usual = ari.windows[identifier]  # pebble's 5-year certificate: about 3.3 years ahead
    config = _config(tmp_path, f"  - type: certbot\n    path: {config_dir}")
    log = tmp_path / "events.jsonl"
    late = usual.end + timedelta(days=2)

    _, quiet = watch(cli, config, log, "--now", NOW.isoformat())
    _, overdue = watch(cli, config, log, "--now", late.isoformat())
    _, again = watch(cli, config, log, "--now", (late + timedelta(hours=1)).isoformat())

    assert "renewal_window_moved" not in kinds(quiet + overdue)
    assert "renewal_overdue" not in kinds(quiet)
    assert kinds(overdue).count("renewal_overdue") == 1
    assert "renewal_overdue" not in kinds(again)
    event = next(e for e in overdue if e["type"] == "lacme.renewal_overdue")
    assert data(event)["policy"] == "ari"
    assert data(event)["renew_after"] == usual.end.isoformat().replace("+00:00", "Z")


def test_pebble_has_no_renewal_info_which_is_no_problem(
    cli: CliRunner, tmp_path: Path, certbot_lineage: Certbot, pebble: Pebble
) -> None:
    config_dir = _certbot_copy(tmp_path, certbot_lineage, pebble.directory)
    config = _config(
        tmp_path,
        f"  - type: certbot\n    path: {config_dir}",
        f"ari: {{ca_bundle: {pebble.ca_file}}}",
    )

    code, events = watch(cli, config, tmp_path / "events.jsonl", "--now", NOW.isoformat())
    status = cli("--config", str(config), "--now", NOW.isoformat(), "status", "--json").json()

    assert code == 0
    assert [k for k in kinds(events) if k.startswith("renewal")] == []
    assert status["certificates"][0]["renewal_window"] is None  # type: ignore[index]


def test_dehydrated_lineage_asks_its_configured_ca(
    cli: CliRunner, tmp_path: Path, pebble: Pebble, ari: AriServer
) -> None:
    dehydrated = Dehydrated(pebble, tmp_path / "dehydrated")
    dehydrated.setup()
    issued = dehydrated.issue(f"dh.{NAME}")
    assert issued.returncode == 0, issued.stdout + issued.stderr
    settings = dehydrated.root / "config"
    settings.write_text(
        settings.read_text().replace(f'CA="{pebble.directory}"', f'CA="{ari.directory}"')
    )
    identifier = ari.add(dehydrated.certs / f"dh.{NAME}" / "cert.pem")
    ari.move(identifier, NOW - timedelta(hours=2), NOW + timedelta(hours=4))
    config = _config(tmp_path, f"  - type: dehydrated\n    path: {dehydrated.certs}")

    code, events = watch(cli, config, tmp_path / "events.jsonl", "--now", NOW.isoformat())

    assert code == 0
    assert [k for k in kinds(events) if k.startswith("renewal")] == ["renewal_window_moved"]
    assert ari.count(f"/renewal-info/{identifier}") == 1
    # Without its config, the one account dehydrated registered still names the CA.
    bare = tmp_path / "bare"
    shutil.copytree(dehydrated.root, bare, symlinks=True, ignore=shutil.ignore_patterns("config"))
    assert dehydrated_ca(str(bare / "certs")) == pebble.directory
