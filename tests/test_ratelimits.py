"""Rate limits: Let's Encrypt's rules against issuance history, once per window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lacme import FileStore
from lacme.ratelimit import IssuanceRecord, RateLimitTracker

from lacme_watch.detection.ratelimits import RateLimits, Rule, evaluate, merge, registered_domain
from lacme_watch.observations import Issuance

from .acme import Certbot, Pebble
from .conftest import CliRunner, read_events

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def issued(names: str, hours_ago: float, key: str | None = None) -> Issuance:
    return Issuance(
        key or f"{names}-{hours_ago}", tuple(names.split()), NOW - timedelta(hours=hours_ago)
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("www.example.com", "example.com", id="etld-plus-one"),
        pytest.param("a.b.example.co.uk", "example.co.uk", id="two-label-suffix"),
        pytest.param("a.b.example.github.io", "example.github.io", id="private-section-as-boulder"),
        pytest.param("*.wild.example.com", "example.com", id="wildcard"),
        pytest.param("WWW.Example.COM.", "example.com", id="case-and-trailing-dot"),
        pytest.param("10.0.0.1", "10.0.0.1", id="ipv4-is-its-own"),
        pytest.param("2001:db8::1", "2001:db8::/64", id="ipv6-by-64"),
        pytest.param("com", "com", id="a-public-suffix-itself"),
    ],
)
def test_registered_domain(name: str, expected: str) -> None:
    assert registered_domain(name) == expected


def test_new_certificates_per_registered_domain_warn_at_80_percent() -> None:
    history = [issued(f"h{i}.example.com", i) for i in range(39)]

    assert evaluate(history, [], RateLimits(), NOW, {}) == []
    (warning,) = evaluate([*history, issued("h39.example.com", 1)], [], RateLimits(), NOW, {})
    assert (warning.rule, warning.key, warning.count, warning.limit) == (
        "registered_domain",
        "example.com",
        40,
        50,
    )
    event = warning.event(NOW)
    assert (event.registered_domain, event.current_count, event.window_hours) == (
        "example.com",
        40,
        168,
    )


def test_a_warning_point_of_one_certificate_still_counts_by_registered_domain() -> None:
    """Registered domains are looked up once as many new certificates as the warning
    point are in the window; with a point of one, one certificate is enough."""
    limits = RateLimits(warn_at=0.5, rules={"registered_domain": Rule(2, timedelta(days=7))})

    (warning,) = evaluate([issued("a.b.example.co.uk", 1)], [], limits, NOW, {})

    assert (warning.rule, warning.key, warning.count) == ("registered_domain", "example.co.uk", 1)


def test_renewals_are_exempt_per_domain_but_count_for_the_exact_set() -> None:
    history = [issued("a.example.com www.example.com", h) for h in (100, 70, 40, 10)]

    warnings = evaluate(history, [], RateLimits(), NOW, {})

    assert [(w.rule, w.key, w.count) for w in warnings] == [
        ("exact_set", "a.example.com,www.example.com", 4),
    ]


def test_outside_the_window_does_not_count() -> None:
    history = [issued(f"h{i}.example.com", 24 * 8) for i in range(45)]
    assert evaluate(history, [], RateLimits(), NOW, {}) == []


def test_a_warning_fires_once_per_window() -> None:
    history = [issued("x.example.com", h) for h in (5, 4, 3, 2)]
    first = evaluate(history, [], RateLimits(), NOW, {})
    warned = {(w.rule, w.key): NOW for w in first}

    assert evaluate(history, [], RateLimits(), NOW + timedelta(hours=1), warned) == []
    later = NOW + timedelta(days=7, hours=1)
    again = [issued("x.example.com", -160 - i) for i in range(4)]  # four more, this week
    assert [w.count for w in evaluate([*history, *again], [], RateLimits(), later, warned)] == [4]


def test_a_loop_reissuing_the_same_names_counts_every_certificate() -> None:
    loop = [issued("loop.example.com", minutes / 60) for minutes in (1, 2, 3, 4)]
    assert [(w.rule, w.count) for w in evaluate(loop, [], RateLimits(), NOW, {})] == [
        ("exact_set", 4)
    ]


def test_failed_validations_per_identifier_per_hour() -> None:
    failures = [("a.example.com", NOW - timedelta(minutes=m)) for m in (5, 15, 25, 35)]

    (warning,) = evaluate([], failures, RateLimits(), NOW, {})
    assert (warning.rule, warning.key, warning.count, warning.limit, warning.window) == (
        "failed_authorizations",
        "a.example.com",
        4,
        5,
        timedelta(hours=1),
    )
    old = [("a.example.com", NOW - timedelta(hours=2))] * 10
    assert evaluate([], old, RateLimits(), NOW, {}) == []


def test_the_same_issuance_recorded_twice_counts_once() -> None:
    tracker_row = Issuance("json-row", ("a.example.com",), NOW - timedelta(hours=1), False)
    certificate = Issuance("fingerprint", ("a.example.com",), NOW - timedelta(hours=2))
    renewal = Issuance("later", ("a.example.com",), NOW - timedelta(minutes=10))
    lone_row = Issuance("other-row", ("b.example.com",), NOW, False)
    assert merge([tracker_row, certificate, renewal, certificate, lone_row]) == [
        certificate,
        renewal,
        lone_row,
    ]


@pytest.mark.acme
def test_exact_set_warning_from_certbots_archive(
    cli: CliRunner, pebble: Pebble, tmp_path: Path
) -> None:
    certbot = Certbot(pebble, tmp_path / "certbot")
    assert certbot.issue("rl.example.com").returncode == 0
    log, config = tmp_path / "events.jsonl", tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: certbot, path: {certbot.config_dir}}}\n"
        "rate_limits:\n  warn_at: 0.8\n  rules:\n    exact_set: {limit: 2, window: 7d}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    assert cli("--config", str(config), "watch", "--once").code == 0
    assert certbot.renew("rl.example.com").returncode == 0

    assert cli("--config", str(config), "watch", "--once").code == 0
    assert cli("--config", str(config), "watch", "--once").code == 0

    warnings = [e for e in read_events(log) if e["type"] == "lacme.rate_limit_warning"]
    assert len(warnings) == 1  # once per window
    data = warnings[0]["data"]
    assert isinstance(data, dict)
    assert (data["registered_domain"], data["current_count"], data["limit"], data["rule"]) == (
        "rl.example.com",
        2,
        2,
        "exact_set",
    )


def test_registered_domain_warning_from_lacmes_rate_limit_history(
    cli: CliRunner, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "lacme")
    tracker = RateLimitTracker.from_file_store(store)
    (tmp_path / "lacme").mkdir()
    for index in range(3):
        tracker._store.record_issuance(  # lacme's own writer of rate_limits.json
            IssuanceRecord(
                registered_domain="example.org",
                domains=(f"h{index}.example.org",),
                issued_at=datetime.now(UTC) - timedelta(hours=index),
            )
        )
    assert len(json.loads((tmp_path / "lacme" / "rate_limits.json").read_text())) == 3
    log, config = tmp_path / "events.jsonl", tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: lacme, path: {tmp_path / 'lacme'}}}\n"
        "rate_limits:\n  rules:\n    registered_domain: {limit: 3, window: 7d}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )

    assert cli("--config", str(config), "watch", "--once").code == 0

    (warning,) = read_events(log)
    assert warning["subject"] == "example.org"


def test_rate_limit_configuration_mistakes(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "stores:\n  - {type: pem, paths: [/x/*.pem]}\n"
        "rate_limits:\n  rules:\n    per_ip: {limit: 3, window: 7d}\n"
    )
    result = cli("--config", str(config), "config", "check")
    assert result.code == 2
    assert "rate_limits.rules.per_ip: unknown key" in result.err
    assert Rule(5, timedelta(hours=1)) == RateLimits().rules["failed_authorizations"]
