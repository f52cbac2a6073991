"""Every configuration message a user can see names the file, the line and the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from lacme_watch.config import build, default_state_dir, find_config, load, zero_config
from lacme_watch.errors import ConfigError
from lacme_watch.options import parse_yaml
from lacme_watch.sinks.log import LogSink
from lacme_watch.sources.stores.pem import PemStore

from .conftest import CliRunner

MINIMAL = "stores:\n  - type: pem\n    paths: [/etc/ssl/certs/*.pem]\n"


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build(parse_yaml(text, "lacme-watch.yaml"), "lacme-watch.yaml")
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            MINIMAL + "stors: []\n",
            "lacme-watch.yaml:4: stors: unknown key; known keys here:",
            id="unknown-top-level-key",
        ),
        pytest.param(
            MINIMAL + "sinks:\n  - type: log\n    fromat: json\n",
            "lacme-watch.yaml:6: sinks[0].fromat: unknown key; known keys here: events, format,",
            id="unknown-nested-key",
        ),
        pytest.param(
            "stores:\n  - type: pem\n    path: /etc/ssl/certs/*.pem\n",
            "lacme-watch.yaml:3: stores[0].path: this store takes `paths:`, a list of paths",
            id="pem-path-instead-of-paths",
        ),
        pytest.param(
            "stores:\n  - type: crl\n    path: /etc/nginx/crl.pem\n",
            "lacme-watch.yaml:3: stores[0].path: this store takes `paths:`, a list of paths",
            id="crl-path-instead-of-paths",
        ),
        pytest.param(
            MINIMAL + "schedule:\n  scan: soon\n",
            "lacme-watch.yaml:5: schedule.scan: expected a duration like '15m' or a 5-field cron",
            id="bad-duration",
        ),
        pytest.param(
            MINIMAL + "schedule:\n  scan: '61 * * * *'\n",
            "lacme-watch.yaml:5: schedule.scan: expected a valid cron expression",
            id="bad-cron",
        ),
        pytest.param(
            MINIMAL + "expiry:\n  thresholds_days: [30, fourteen]\n",
            "lacme-watch.yaml:5: expiry.thresholds_days[1]: expected an integer, got 'fourteen'",
            id="wrong-type-in-list",
        ),
        pytest.param(
            MINIMAL + "expiry:\n  thresholds_percent: [150]\n",
            "expiry.thresholds_percent[0]: expected a number above 0 and at most 100, got 150",
            id="percent-out-of-range",
        ),
        pytest.param(
            MINIMAL + "expiry:\n  chain: some\n",
            "lacme-watch.yaml:5: expiry.chain: expected one of full, leaf, got 'some'",
            id="bad-choice",
        ),
        pytest.param(
            MINIMAL + "max_file_size: lots\n",
            "lacme-watch.yaml:4: max_file_size: expected a size like '4MiB'",
            id="bad-size",
        ),
        pytest.param(
            "stores:\n  - type: certbotx\n    path: /etc/letsencrypt\n",
            "lacme-watch.yaml:2: stores[0].type: unknown type 'certbotx'; known: ",
            id="unknown-store-type",
        ),
        pytest.param(
            "stores:\n  - path: /etc/lacme\n",
            "lacme-watch.yaml:2: stores[0].type: is required",
            id="missing-type",
        ),
        pytest.param(
            "stores:\n  - type: pem\n",
            "lacme-watch.yaml:2: stores[0].paths: needs at least one path or glob",
            id="missing-paths",
        ),
        pytest.param(
            "state_dir: /tmp/x\n",
            "lacme-watch.yaml:1: configure at least one store or authority",
            id="no-sources",
        ),
        pytest.param(
            MINIMAL + "sinks:\n  - type: log\n    events: [certificate_expired]\n",
            "lacme-watch.yaml:6: sinks[0].events[0]: expected an event name",
            id="unknown-event-name",
        ),
        pytest.param(
            MINIMAL + "sinks:\n  - type: log\n    format: xml\n",
            "sinks[0].format: expected one of text, json, got 'xml'",
            id="bad-sink-format",
        ),
        pytest.param(
            MINIMAL + "sinks:\n  - {type: log, name: a}\n  - {type: log, name: a}\n",
            "lacme-watch.yaml:6: sinks[1].name: sink name 'a' is used twice",
            id="duplicate-sink-name",
        ),
        pytest.param(
            MINIMAL + "stores:\n  - {type: pem, paths: [/x]}\n",
            "lacme-watch.yaml:4: stores: duplicate key",
            id="duplicate-key",
        ),
        pytest.param("stores: [\n", "lacme-watch.yaml:2: invalid YAML", id="yaml-syntax"),
        pytest.param("- just\n- a list\n", "expected a mapping, got 'a list'", id="not-a-mapping"),
        pytest.param(
            "stores: {type: pem}\n", "lacme-watch.yaml:1: stores: expected a list", id="not-a-list"
        ),
        pytest.param(
            MINIMAL + "state_dir: ${LW_UNSET_FOR_TEST}\n",
            "lacme-watch.yaml:4: state_dir: environment variable LW_UNSET_FOR_TEST is not set",
            id="unset-env",
        ),
        pytest.param(
            "stores:\n  - type: pem\n    paths: ['${LW_UNSET_FOR_TEST}/x']\n",
            "lacme-watch.yaml:3: stores[0].paths[0]: environment variable LW_UNSET_FOR_TEST is not",
            id="unset-env-in-a-list",
        ),
        pytest.param(
            MINIMAL + "delivery:\n  max_age: -1d\n",
            "lacme-watch.yaml:5: delivery.max_age: expected a duration",
            id="negative-duration",
        ),
        pytest.param(
            MINIMAL + "    renew_before: 120%\n",
            "lacme-watch.yaml:4: stores[0].renew_before: expected a duration like '30d', a"
            " share of the lifetime like '33%', or off",
            id="renew-before-over-100-percent",
        ),
        pytest.param(
            MINIMAL + "    agent_stale_after: often\n",
            "lacme-watch.yaml:4: stores[0].agent_stale_after: expected a duration",
            id="agent-stale-after-not-a-duration",
        ),
        pytest.param(
            MINIMAL + "expiry:\n  overdue_grace: soon\n",
            "lacme-watch.yaml:5: expiry.overdue_grace: expected a duration",
            id="overdue-grace-not-a-duration",
        ),
        pytest.param(
            MINIMAL + "changes:\n  ignore: [lifetime, colour]\n",
            "lacme-watch.yaml:5: changes.ignore[1]: expected a certificate_changed field (names,",
            id="changes-ignore-unknown-field",
        ),
    ],
)
def test_each_mistake_names_file_line_and_key(text: str, message: str) -> None:
    assert message in config_error(text)


def test_the_defaults(tmp_path: Path) -> None:
    config = build(parse_yaml(MINIMAL, "x.yaml"), "x.yaml")

    assert config.policy.thresholds_days == (30, 14, 7, 3, 1)
    assert config.policy.thresholds_percent == (33.0, 10.0)
    assert config.chain is True
    assert config.schedule.interval == timedelta(minutes=15)
    assert config.max_file_size == 4 * 1024 * 1024
    assert [type(route.sink) for route in config.sinks] == [LogSink]
    assert config.sinks[0].events is None
    assert isinstance(config.stores[0], PemStore)
    assert config.state_dir == default_state_dir()


def test_durations_sizes_and_cron(tmp_path: Path) -> None:
    text = (
        MINIMAL + "max_file_size: 512KiB\nschedule:\n  scan: '*/5 * * * *'\n"
        "delivery:\n  max_age: 2d\n  retry_initial: 90s\n  retry_max: 12h\n"
    )
    config = build(parse_yaml(text, "x.yaml"), "x.yaml")

    assert config.max_file_size == 512 * 1024
    assert (config.schedule.interval, config.schedule.cron) == (None, "*/5 * * * *")
    assert config.retry.max_age == timedelta(days=2)
    assert config.retry.initial == timedelta(seconds=90)
    assert config.retry.maximum == timedelta(hours=12)


def test_env_references_expand(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LW_STATE", str(tmp_path / "state"))
    config = build(parse_yaml(MINIMAL + "state_dir: ${LW_STATE}\n", "x.yaml"), "x.yaml")
    assert config.state_dir == tmp_path / "state"


def test_a_missing_store_path_is_a_warning_not_an_error(tmp_path: Path) -> None:
    text = f"stores:\n  - type: lacme\n    path: {tmp_path / 'not-yet'}\n"

    config = build(parse_yaml(text, "x.yaml"), "x.yaml")

    assert config.warnings == (
        f"x.yaml:3: stores[0].path: {tmp_path / 'not-yet'} does not exist (yet)",
    )


def test_a_missing_trust_bundle_is_warned_of_at_its_line(tmp_path: Path) -> None:
    text = MINIMAL + f"heartbeat: false\ntrust:\n  - {tmp_path / 'root.pem'}\n"

    config = build(parse_yaml(text, "x.yaml"), "x.yaml")

    assert config.warnings == (f"x.yaml:5: trust: {tmp_path / 'root.pem'} does not exist",)


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config("/explicit.yaml", {"LACME_WATCH_CONFIG": "/env.yaml"}) == Path(
        "/explicit.yaml"
    )
    assert find_config(None, {"LACME_WATCH_CONFIG": "/env.yaml"}) == Path("/env.yaml")
    (tmp_path / "lacme-watch.yaml").write_text(MINIMAL)
    assert find_config(None, {}) == Path("lacme-watch.yaml")


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load(tmp_path / "nope.yaml")


def test_zero_config_watches_the_default_places_that_exist(tmp_path: Path) -> None:
    (tmp_path / ".lacme" / "ca" / "root").mkdir(parents=True)
    (tmp_path / ".lacme" / "ca" / "root" / "cert.pem").write_text("")

    config, watched = zero_config(home=tmp_path)

    assert [source.id for source in config.sources][:2] == [
        f"lacme-ca:{tmp_path / '.lacme'}#root",
        f"lacme:{tmp_path / '.lacme'}",
    ]
    assert watched[:2] == [
        f"lacme store {tmp_path / '.lacme'}",
        f"lacme CA root in {tmp_path / '.lacme'}",
    ]


def test_config_check_on_the_shipped_example(cli: CliRunner) -> None:
    example = Path(__file__).parents[1] / "config.example.yaml"

    result = cli("--config", str(example), "config", "check")

    assert result.code == 0, result.err
    assert "config.example.yaml: OK" in result.out


def test_config_check_reports_a_bad_file_with_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "sinks:\n  - type: log\n    format: yaml\n")

    result = cli("--config", str(bad), "config", "check")

    assert result.code == 2
    assert f"{bad}:6: sinks[0].format: expected one of text, json, got 'yaml'" in result.err


def test_revocation_is_off_unless_asked_globally_or_per_store() -> None:
    text = (
        "revocation: {crl: true, refresh: 2h}\n"
        "stores:\n"
        "  - {type: pem, paths: [/etc/ssl/a/*.pem]}\n"
        "  - {type: pem, paths: [/etc/ssl/b/*.pem], revocation: {crl: false}}\n"
    )
    config = build(parse_yaml(text, "c.yaml"), "c.yaml")
    first, second = (source.id for source in config.stores)
    assert (config.checks_revocation(first), config.checks_revocation(second)) == (True, False)
    assert config.revocation.refresh == timedelta(hours=2)
    default = build(parse_yaml(MINIMAL, "c.yaml"), "c.yaml")
    assert not default.checks_revocation(default.stores[0].id)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            MINIMAL + "    revocation: {ocsp: true}\n",
            "lacme-watch.yaml:4: stores[0].revocation.ocsp: unknown key",
            id="per-store-unknown",
        ),
        pytest.param(
            MINIMAL + "revocation: {crl: yes please}\n",
            "lacme-watch.yaml:4: revocation.crl: expected",
            id="global-not-a-boolean",
        ),
        pytest.param(
            MINIMAL + "trust: 3\n",
            "lacme-watch.yaml:4: trust: expected",
            id="trust-not-paths",
        ),
    ],
)
def test_revocation_and_trust_errors_name_the_key(text: str, message: str) -> None:
    assert message in config_error(text)


def test_the_default_host_is_the_machines_hostname(tmp_path: Path) -> None:
    """The CloudEvents `source` of every event names it: the same name as before the
    default stopped asking socket for it."""
    import socket

    assert build(parse_yaml(MINIMAL, "x.yaml"), "x.yaml").host == socket.gethostname()
    assert build(parse_yaml(MINIMAL + "host: h1\n", "x.yaml"), "x.yaml").host == "h1"
