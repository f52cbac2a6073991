"""renewal_overdue with `policy: ari`: the CA's window is the renewal point."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from .ari_server import AriServer
from .conftest import CliRunner, data, watch
from .conftest import kinds as all_kinds
from .test_ari_passes import NOW, _lacme_certificate, _lacme_config, at


def kinds(events: list[dict[str, object]]) -> list[str]:
    """The ARI kinds among them (expiry thresholds are not what these tests are about)."""
    return [k for k in all_kinds(events) if k in ("renewal_overdue", "renewal_window_moved")]


@pytest.fixture
def ari() -> Iterator[AriServer]:
    server = AriServer()
    yield server
    server.stop()


def test_a_window_already_closed_is_overdue_in_the_same_pass_and_once(
    cli: CliRunner, tmp_path: Path, ari: AriServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _lacme_certificate(tmp_path, age=50)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.move(identifier, NOW - timedelta(days=5), NOW - timedelta(days=3))
    ari.retry_after = "60"
    config = _lacme_config(tmp_path, store, ari.directory)
    log = tmp_path / "events.jsonl"

    _, first = watch(cli, config, log, *at(NOW))
    _, second = watch(cli, config, log, *at(NOW + timedelta(minutes=5)))
    status = cli("--config", str(config), *at(NOW), "status", "--json").json()

    assert sorted(kinds(first)) == ["renewal_overdue", "renewal_window_moved"]
    assert kinds(second) == []
    overdue = data(next(e for e in first if e["type"] == "lacme.renewal_overdue"))
    assert overdue["policy"] == "ari"
    assert overdue["renew_after"] == (NOW - timedelta(days=3)).isoformat().replace("+00:00", "Z")
    row = status["certificates"][0]  # type: ignore[index]
    assert (row["state"], row["renewal_policy"]) == ("overdue", "ari")


def test_a_new_window_re_arms_the_overdue(cli: CliRunner, tmp_path: Path, ari: AriServer) -> None:
    store = _lacme_certificate(tmp_path, age=50)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.move(identifier, NOW - timedelta(days=5), NOW - timedelta(days=3))
    ari.retry_after = "60"
    config = _lacme_config(tmp_path, store, ari.directory)
    log = tmp_path / "events.jsonl"

    _, first = watch(cli, config, log, *at(NOW))
    ari.move(identifier, NOW - timedelta(days=4), NOW - timedelta(days=2))
    _, second = watch(cli, config, log, *at(NOW + timedelta(minutes=5)))

    assert kinds(first).count("renewal_overdue") == 1
    # A new window, still early and closed: announced again, and overdue again.
    assert sorted(kinds(second)) == ["renewal_overdue", "renewal_window_moved"]


def test_renew_before_off_means_no_ari_overdue_either(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    store = _lacme_certificate(tmp_path, age=50)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.move(identifier, NOW - timedelta(days=5), NOW - timedelta(days=3))
    config = _lacme_config(tmp_path, store, ari.directory)
    config.write_text(config.read_text().replace("    ari: {", "    renew_before: off\n    ari: {"))

    _, events = watch(cli, config, tmp_path / "events.jsonl", *at(NOW))

    assert kinds(events) == ["renewal_window_moved"]
