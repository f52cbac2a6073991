"""Metrics: enix's x509-certificate-exporter rules fire on our exposition (promtool), and a
TLS source whose endpoint is unreachable is down."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lacme_watch.config import build
from lacme_watch.options import parse_yaml
from lacme_watch.run.metrics import Metrics
from lacme_watch.run.passes import pass_metrics, run_pass
from lacme_watch.statedb import StateStore

from .acme import free_port
from .conftest import CliRunner

NOW = datetime.now(UTC).replace(microsecond=0)
RULES = Path(__file__).parent / "data" / "x509-certificate-exporter.rules.yaml"
SCRAPES = 5
"""Passes, one every 5 minutes: long enough for the rules' `for: 15m`."""


def _name(cn: str, o: str, ou: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Ile-de-France"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Paris"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write_certs(directory: Path) -> None:
    """A CA and three leaves: 60, 20 and 10 days left of 90."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Example Issuing CA", "Example Trust", "PKI")
    for cn, days_left in (("fine.example", 60), ("renew.example", 20), ("soon.example", 10)):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, "Example Shop, Inc.", "Web"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=90 - days_left))
            .not_valid_after(NOW + timedelta(days=days_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{cn}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB")


def _passes(tmp_path: Path) -> list[str]:
    """The /metrics text after each of SCRAPES daemon passes (one Metrics, as the daemon)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    _write_certs(certs)
    text = (
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: pem, paths: ['{certs}/*.pem']}}\n"
        f"  - {{type: tls, endpoints: ['127.0.0.1:{free_port()}'], timeout: 2s}}\n"
    )
    config = build(parse_yaml(text, "c.yaml"), "c.yaml")
    metrics = Metrics()
    expositions = []
    with StateStore(config.state_dir) as store:
        for index in range(SCRAPES):
            report = run_pass(config, store, NOW + timedelta(minutes=5 * index))
            metrics.update(pass_metrics(report, config, store))
            expositions.append(generate_latest(metrics.registry).decode())
    return expositions


def _samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def _quote(value: str) -> str:
    return json.dumps(value)  # a PromQL string literal: double quotes, backslash escapes


def test_enix_alert_rules_fire_on_our_exposition(tmp_path: Path) -> None:
    """promtool runs the chart's rules over five scrapes. Prometheus's clock in a rule
    test starts at 0, so each not_after is given relative to the first pass."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is in Debian's prometheus package (.ci/run installs it)"
    scrapes = [_samples(text) for text in _passes(tmp_path)]
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    for scrape in scrapes:
        for key, value in scrape.items():
            series.setdefault(key, []).append(value)
    input_series = []
    expected: dict[str, list[dict[str, str]]] = {}
    for (name, labels), values in sorted(series.items()):
        if name == "x509_cert_not_after":
            values = [value - NOW.timestamp() for value in values]
        selector = ",".join(f"{key}={_quote(value)}" for key, value in labels)
        input_series.append(
            {"series": f"{name}{{{selector}}}", "values": " ".join(f"{v:g}" for v in values)}
        )
        domain = dict(labels).get("domain")
        if name == "x509_cert_not_after" and domain in ("renew.example", "soon.example"):
            expected.setdefault("CertificateRenewal", []).append(dict(labels))
        if name == "x509_cert_not_after" and domain == "soon.example":
            expected.setdefault("CertificateExpiration", []).append(dict(labels))
        if name == "x509_cert_error":
            expected.setdefault("CertificateError", []).append(dict(labels))
    severity = {"CertificateExpiration": "critical"}
    tests = [
        {
            "eval_time": "20m",
            "alertname": alert,
            "exp_alerts": [
                {"exp_labels": {**labels, "severity": severity.get(alert, "warning")}}
                for labels in expected.get(alert, [])
            ],
        }
        for alert in ("CertificateRenewal", "CertificateExpiration", "CertificateError")
    ]
    tests.append(
        {
            "eval_time": "20m",
            "alertname": "X509ExporterReadErrors",
            "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
        }
    )
    test_file = tmp_path / "test.yaml"
    test_file.write_text(
        json.dumps(
            {
                "rule_files": [str(RULES)],
                "evaluation_interval": "1m",
                "tests": [
                    {"interval": "5m", "input_series": input_series, "alert_rule_test": tests}
                ],
            }
        )
    )

    done = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert {labels["subject_CN"] for labels in expected["CertificateRenewal"]} == {
        "renew.example",
        "soon.example",
    }
    assert [labels["filename"] for labels in expected["CertificateError"]] == ["broken.pem"]


def test_certificate_labels_are_x509_certificate_exporters(tmp_path: Path) -> None:
    scrape = _samples(_passes(tmp_path)[0])
    (labels,) = [
        dict(labels)
        for name, labels in scrape
        if name == "x509_cert_not_after" and dict(labels)["domain"] == "soon.example"
    ]
    assert {key: labels[key] for key in labels if key.startswith(("subject_", "issuer_"))} == {
        "subject_C": "FR",
        "subject_ST": "Ile-de-France",
        "subject_L": "Paris",
        "subject_O": "Example Shop, Inc.",
        "subject_OU": "Web",
        "subject_CN": "soon.example",
        "issuer_C": "FR",
        "issuer_ST": "Ile-de-France",
        "issuer_L": "Paris",
        "issuer_O": "Example Trust",
        "issuer_OU": "PKI",
        "issuer_CN": "Example Issuing CA",
    }
    assert labels["filename"] == "soon.example.pem"
    build_info = [dict(labels) for name, labels in scrape if name == "x509_exporter_build_info"]
    assert build_info[0]["version"].startswith("lacme-watch ")
    assert scrape[("x509_read_errors", ())] == 2.0  # broken.pem and the endpoint


def test_a_tls_source_whose_endpoint_is_unreachable_is_down(tmp_path: Path) -> None:
    scrape = _samples(_passes(tmp_path)[0])
    up = {
        dict(labels)["store"]: value
        for (name, labels), value in scrape.items()
        if name == "lacme_watch_source_up"
    }

    assert {store.split(":")[0]: value for store, value in up.items()} == {"pem": 1.0, "tls": 0.0}


@pytest.mark.parametrize("scrape", [0, SCRAPES - 1])
def test_read_errors_count_every_failed_read_since_start(tmp_path: Path, scrape: int) -> None:
    samples = _samples(_passes(tmp_path)[scrape])
    assert samples[("x509_read_errors", ())] == 2.0 * (scrape + 1)


def test_a_cron_textfile_counts_read_errors_across_runs(cli: CliRunner, tmp_path: Path) -> None:
    """`watch --once` from cron: each run is a new process, the count still grows, so
    the chart's X509ExporterReadErrors fires while the file stays broken."""
    certs = tmp_path / "certs"
    certs.mkdir()
    _write_certs(certs)
    textfile = tmp_path / "lacme_watch.prom"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nmetrics: {{textfile: {textfile}}}\n"
        f"stores:\n  - {{type: pem, paths: ['{certs}/*.pem']}}\n"
    )
    counts = []
    for _ in range(3):
        assert cli("--config", str(config), "watch", "--once").code == 1
        counts.append(_samples(textfile.read_text())[("x509_read_errors", ())])

    assert counts == [1.0, 2.0, 3.0]
