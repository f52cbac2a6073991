"""A correctly working private PKI raises no chain alarm; a missing intermediate still does."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from lacme import CertificateAuthority

from lacme_watch.detection.chains import Anchors, structure
from lacme_watch.testing import TlsServer

from .conftest import CliRunner, data, kinds, watch, write_config
from .hierarchy import Issued, pem
from .test_chains import pki  # noqa: F401  # the module-scoped root -> inter -> leaf


def test_lacme_store_signed_by_its_own_ca_is_not_incomplete(
    cli: CliRunner, tmp_path: Path, store_dir: Path, lacme_ca: CertificateAuthority, now: datetime
) -> None:
    """lacme's CA writes leaf + its self-signed root into fullchain.pem; that CA is not
    under `authorities:` and its root is in no system store, yet nothing is missing."""
    lacme_ca.issue(["svc.internal"], validity_days=30)
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "lacme-watch.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: lacme, path: {store_dir}}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    code, events = watch(cli, config, log)

    assert (code, kinds(events)) == (0, [])
    status = cli("--config", str(config), "status")
    assert "svc.internal" in status.out
    assert "incomplete" not in status.out


def test_a_chain_ending_in_the_root_it_carries_is_complete(pki: dict[str, Issued]) -> None:  # noqa: F811
    chain = [pki["leaf"].certificate, pki["inter"].certificate, pki["root"].certificate]
    assert structure(chain, Anchors([])) == []


def test_a_missing_intermediate_is_still_incomplete_without_anchors(
    pki: dict[str, Issued],  # noqa: F811
) -> None:
    """The leaf alone, or leaf + intermediate with no root anywhere: a link is missing."""
    assert [f.reason for f in structure([pki["leaf"].certificate], Anchors([]))] == ["incomplete"]
    chain = [pki["leaf"].certificate, pki["inter"].certificate]
    assert [f.reason for f in structure(chain, Anchors([]))] == ["incomplete"]


def test_a_chain_that_stops_below_its_root_is_reported_once_with_the_way_out(
    cli: CliRunner,
    tmp_path: Path,
    pki: dict[str, Issued],  # noqa: F811
) -> None:
    """leaf + intermediate, root nowhere (pebble, Let's Encrypt staging, a private CA):
    one chain_problem that says what to do; then quiet."""
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "fullchain.pem").write_bytes(
        pem(pki["leaf"].certificate, pki["inter"].certificate)
    )
    log, text = tmp_path / "events.jsonl", tmp_path / "events.log"
    config = write_config(
        tmp_path / "lacme-watch.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/certs/*.pem']}}\n"
        "expiry: {thresholds_days: [], thresholds_percent: []}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
        f"  - {{type: log, path: {text}}}\n",
    )

    code, events = watch(cli, config, log)

    assert (code, kinds(events)) == (0, ["chain_problem"])
    assert data(events[0])["reason"] == "incomplete"
    assert "a private CA's root goes in `trust:`" in text.read_text()
    assert watch(cli, config, log) == (0, [])


def test_an_endpoint_sending_only_a_leaf_of_the_stores_own_ca_is_not_incomplete(
    cli: CliRunner, tmp_path: Path, store_dir: Path, lacme_ca: CertificateAuthority
) -> None:
    """A root-signed leaf is rightly served alone; the root is in the lacme store's
    `ca/` directory, which is trusted although the CA is not under `authorities:`."""
    bundle = lacme_ca.issue(["svc.internal"], validity_days=30)
    server = TlsServer(bundle.cert_pem, bundle.key_pem)
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "lacme-watch.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: lacme, path: {store_dir}}}\n"
        f"  - {{type: tls, endpoints: ['127.0.0.1:{server.port}/svc.internal']}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    try:
        code, events = watch(cli, config, log)
    finally:
        server.stop()

    assert (code, kinds(events)) == (0, [])
