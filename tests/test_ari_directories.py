"""Which ACME directory a certificate came from: certbot's renewal conf, dehydrated's
CA setting (presets, conf.d, the accounts directory), and a store's own `ari:` key."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lacme_watch.ari.directories import certbot_server, dehydrated_ca
from lacme_watch.config import build
from lacme_watch.errors import ConfigError
from lacme_watch.options import parse_yaml


def test_certbot_server_is_read_from_renewalparams(tmp_path: Path) -> None:
    (tmp_path / "renewal").mkdir()
    (tmp_path / "renewal" / "a.example.conf").write_text(
        "version = 2.1.0\narchive_dir = /x\n\n[renewalparams]\naccount = f2f4\n"
        "server = https://acme-v02.api.letsencrypt.org/directory\nkey_type = ecdsa\n"
    )

    assert certbot_server(str(tmp_path), "a.example") == (
        "https://acme-v02.api.letsencrypt.org/directory"
    )
    assert certbot_server(str(tmp_path), "missing.example") is None
    assert certbot_server(str(tmp_path), "../renewal/a.example") is None


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        pytest.param(
            'CA="letsencrypt-test"',
            "https://acme-staging-v02.api.letsencrypt.org/directory",
            id="preset",
        ),
        pytest.param(
            "CA=https://ca.example/dir # ours", "https://ca.example/dir", id="url-and-comment"
        ),
        pytest.param("", "https://acme-v02.api.letsencrypt.org/directory", id="dehydrated-default"),
    ],
)
def test_dehydrated_ca_from_the_config_beside_its_certdir(
    tmp_path: Path, setting: str, expected: str
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "config").write_text(f'BASEDIR="{tmp_path}"\n{setting}\n')

    assert dehydrated_ca(str(tmp_path / "certs")) == expected


def test_dehydrated_conf_d_overrides_and_another_certdir_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "ca.sh").write_text("CA=zerossl\n")
    (tmp_path / "config").write_text(f"CONFIG_D={tmp_path / 'conf.d'}\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config").write_text("CERTDIR=/elsewhere\nCA=buypass\n")

    assert dehydrated_ca(str(tmp_path / "certs")) == "https://acme.zerossl.com/v2/DV90"
    assert dehydrated_ca(str(tmp_path / "certs"), str(tmp_path / "other" / "config")) == (
        "https://api.buypass.com/acme/directory"  # named by the store: taken as it is
    )


def test_dehydrated_without_config_uses_its_only_account(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "certs").mkdir(parents=True)
    name = base64.urlsafe_b64encode(b"https://ca.example/dir\n").decode().rstrip("=")
    (base / "accounts" / name).mkdir(parents=True)

    assert dehydrated_ca(str(base / "certs")) == "https://ca.example/dir"
    (base / "accounts" / "c2Vjb25k").mkdir()
    assert dehydrated_ca(str(base / "certs")) is None  # two CAs: no guess


@pytest.mark.parametrize(
    ("ari", "message"),
    [
        pytest.param("ari: {directory: ftp://x}", "an ACME directory URL", id="not-http"),
        pytest.param("ari: {colour: blue}", "unknown key", id="typo"),
        pytest.param("ari: yes-please", "a mapping", id="not-a-mapping"),
    ],
)
def test_a_stores_ari_key_is_checked(tmp_path: Path, ari: str, message: str) -> None:
    text = f"stores:\n  - type: pem\n    paths: ['{tmp_path}/*.pem']\n    {ari}\n"

    with pytest.raises(ConfigError, match=message) as raised:
        build(parse_yaml(text, "c.yaml"), "c.yaml")

    assert "c.yaml:4" in str(raised.value)


def test_global_ari_settings_and_per_store_switches(tmp_path: Path) -> None:
    text = (
        f"stores:\n  - type: pem\n    paths: ['{tmp_path}/*.pem']\n    ari: false\n"
        f"  - type: lacme\n    path: {tmp_path}\n    ari: {{directory: 'https://ca.example/d'}}\n"
        "ari: {max_requests_per_pass: 7, timeout: 3s, concurrency: 2}\n"
    )

    config = build(parse_yaml(text, "c.yaml"), "c.yaml")

    assert (config.ari.max_requests_per_pass, config.ari.concurrency) == (7, 2)
    assert config.ari.timeout.total_seconds() == 3
    assert config.ari.for_store(f"pem:{tmp_path}/*.pem").enabled is False
    assert config.ari.for_store(f"lacme:{tmp_path}").directory == "https://ca.example/d"
