"""Renewal information in real passes: a lacme store and real certbot and dehydrated
lineages (issued by pebble), asked of a real RFC 9773 server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from lacme import FileStore
from prometheus_client.parser import text_string_to_metric_families

from .ari_server import AriServer
from .conftest import CliRunner, data, kinds, read_events, save_acme_cert, watch, write_config

NOW = datetime.now(UTC).replace(microsecond=0)


def at(moment: datetime) -> tuple[str, str]:
    return ("--now", moment.isoformat())


def ari_kinds(events: list[dict[str, object]]) -> list[str]:
    """The renewal kinds among them (a trustme chain is also a chain_problem: not ours)."""
    return [kind for kind in kinds(events) if kind.startswith("renewal")]


@pytest.fixture
def ari() -> Iterator[AriServer]:
    server = AriServer()
    yield server
    server.stop()


def _lacme_config(tmp_path: Path, store: Path, directory: str, extra: str = "") -> Path:
    return write_config(
        tmp_path / "lacme-watch.yaml",
        f"""
state_dir: {tmp_path / "state"}
stores:
  - type: lacme
    path: {store}
    ari: {{directory: "{directory}"}}
sinks:
  - type: log
    format: json
    path: {tmp_path / "events.jsonl"}
{extra}
""",
    )


def _lacme_certificate(
    tmp_path: Path, name: str = "www.example.com", days: int = 90, age: int = 1
) -> Path:
    store = tmp_path / "lacme"
    save_acme_cert(
        FileStore(store),
        trustme.CA(),
        [name],
        not_before=NOW - timedelta(days=age),
        not_after=NOW + timedelta(days=days - age),
    )
    return store


def test_a_usual_window_is_shown_and_raises_nothing(
    cli: CliRunner, tmp_path: Path, ari: AriServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # the table, unwrapped
    store = _lacme_certificate(tmp_path)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    textfile = tmp_path / "lacme_watch.prom"
    config = _lacme_config(tmp_path, store, ari.directory, f"metrics: {{textfile: {textfile}}}")

    code, events = watch(cli, config, tmp_path / "events.jsonl", *at(NOW))
    status = cli("--config", str(config), *at(NOW), "status", "--json").json()
    table = cli("--config", str(config), *at(NOW), "status")

    assert code == 0
    assert "renewal_window_moved" not in kinds(events)
    assert ari.count("/renewal-info/") == 1
    row = status["certificates"][0]  # type: ignore[index]
    window = row["renewal_window"]
    usual = ari.windows[identifier]
    assert (window["start"], window["end"]) == (_z(usual.start), _z(usual.end))
    assert (window["state"], window["cert_id"]) == ("ahead", identifier)
    assert "renewal window (ARI)" in table.out
    assert f"{_z(usual.start)[:16]} → {_z(usual.end)[:16]}".replace("T", " ") in table.out
    samples = {
        (sample.name, sample.labels["domain"]): sample.value
        for family in text_string_to_metric_families(textfile.read_text())
        for sample in family.samples
        if sample.name.startswith("lacme_watch_renewal_window")
    }
    assert samples == {
        ("lacme_watch_renewal_window_start_seconds", "www.example.com"): usual.start.timestamp(),
        ("lacme_watch_renewal_window_end_seconds", "www.example.com"): usual.end.timestamp(),
    }
    requests = [
        sample.value
        for family in text_string_to_metric_families(textfile.read_text())
        for sample in family.samples
        if sample.name == "lacme_watch_renewal_info_requests"
    ]
    assert requests == [2.0]  # the directory, then the certificate


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_check_warns_when_an_open_window_is_left_unrenewed_past_the_grace(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    store = _lacme_certificate(tmp_path)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.move(identifier, NOW - timedelta(hours=30), NOW + timedelta(days=3))
    config = _lacme_config(tmp_path, store, ari.directory)
    watch(cli, config, tmp_path / "events.jsonl", *at(NOW))

    without = cli("--config", str(config), *at(NOW), "check")
    within = cli("--config", str(config), *at(NOW), "check", "--ari-grace", "2d")
    late = cli("--config", str(config), *at(NOW), "check", "--ari-grace", "1d")

    assert (without.code, within.code, late.code) == (0, 0, 1)
    assert late.out.startswith("LACME-WATCH WARNING - 1 certificate not renewed in the CA")
    assert "www.example.com" in late.out
    assert "renewal_window_late=1" in late.out


def test_a_window_moved_early_is_announced_once(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    store = _lacme_certificate(tmp_path)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.move(identifier, NOW - timedelta(hours=1), NOW + timedelta(hours=5), "https://ca/incident")
    ari.retry_after = "60"
    config = _lacme_config(tmp_path, store, ari.directory)
    log = tmp_path / "events.jsonl"

    _, first = watch(cli, config, log, *at(NOW))
    _, second = watch(cli, config, log, *at(NOW + timedelta(minutes=2)))

    moved = [e for e in first if e["type"] == "lacme.renewal_window_moved"]
    assert len(moved) == 1
    assert "renewal_window_moved" not in kinds(second)
    assert ari.count("/renewal-info/") == 2
    fields = data(moved[0])
    assert fields["domain"] == "www.example.com"
    assert fields["domains"] == ["www.example.com"]
    assert fields["window_start"] == (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert fields["explanation_url"] == "https://ca/incident"
    assert fields["reason"] == "early"
    assert fields["cert_id"] == identifier


def test_a_window_that_moves_later_is_announced_with_the_previous_one(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    store = _lacme_certificate(tmp_path)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    usual = ari.windows[identifier]
    config = _lacme_config(tmp_path, store, ari.directory)
    log = tmp_path / "events.jsonl"

    _, quiet = watch(cli, config, log, *at(NOW))
    ari.move(identifier, usual.start - timedelta(days=3), usual.end - timedelta(days=3))
    _, moved = watch(cli, config, log, *at(NOW + timedelta(hours=7)))

    assert "renewal_window_moved" not in kinds(quiet)
    assert kinds(moved).count("renewal_window_moved") == 1
    fields = data(next(e for e in moved if e["type"] == "lacme.renewal_window_moved"))
    assert fields["reason"] == "moved"
    assert fields["previous_window_start"] == usual.start.isoformat().replace("+00:00", "Z")


def test_a_kept_answer_is_asked_again_once_the_store_no_longer_names_its_directory(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    """The answer kept in the state database remembers its directory: a lacme store whose
    `ari: {directory: ...}` was removed is still asked about (its round is not skipped)."""
    store = _lacme_certificate(tmp_path)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    usual = ari.windows[identifier]
    log = tmp_path / "events.jsonl"
    _, quiet = watch(cli, _lacme_config(tmp_path, store, ari.directory), log, *at(NOW))
    plain = write_config(
        tmp_path / "plain.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {{type: lacme, path: {store}}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    ari.move(identifier, usual.start - timedelta(days=3), usual.end - timedelta(days=3))
    _, moved = watch(cli, plain, log, *at(NOW + timedelta(hours=7)))

    assert "renewal_window_moved" not in kinds(quiet)
    assert kinds(moved).count("renewal_window_moved") == 1
    assert ari.count("/renewal-info/") == 2


@pytest.mark.parametrize(
    ("retry_after", "quiet_until", "asked_again_at"),
    [
        pytest.param("3600", timedelta(minutes=59), timedelta(minutes=61), id="retry-after"),
        pytest.param(None, timedelta(hours=11), timedelta(hours=12, seconds=1), id="twice-a-day"),
        pytest.param("5", timedelta(seconds=50), timedelta(seconds=61), id="at-least-a-minute"),
    ],
)
def test_retry_after_is_honoured_across_passes(
    cli: CliRunner,
    tmp_path: Path,
    ari: AriServer,
    retry_after: str | None,
    quiet_until: timedelta,
    asked_again_at: timedelta,
) -> None:
    store = _lacme_certificate(tmp_path)
    ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.retry_after = retry_after
    config = _lacme_config(tmp_path, store, ari.directory)
    log = tmp_path / "events.jsonl"

    watch(cli, config, log, *at(NOW))
    after_first = ari.count("/renewal-info/")
    watch(cli, config, log, *at(NOW + quiet_until))
    after_quiet = ari.count("/renewal-info/")
    watch(cli, config, log, *at(NOW + asked_again_at))

    assert (after_first, after_quiet, ari.count("/renewal-info/")) == (1, 1, 2)
    assert ari.count("/directory") == 1  # the directory is remembered for a day


def test_never_more_requests_than_max_requests_per_pass(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    store = tmp_path / "lacme"
    ca = trustme.CA()
    for index in range(5):
        bundle = save_acme_cert(
            FileStore(store),
            ca,
            [f"n{index}.example.com"],
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=89),
        )
        ari.add(store / "certs" / bundle.domain / "cert.pem")
    config = _lacme_config(tmp_path, store, ari.directory, "ari: {max_requests_per_pass: 3}")
    log = tmp_path / "events.jsonl"

    watch(cli, config, log, *at(NOW))
    first = ari.count()
    watch(cli, config, log, *at(NOW + timedelta(minutes=1)))
    second = ari.count()
    watch(cli, config, log, *at(NOW + timedelta(minutes=2)))

    assert (first, second, ari.count()) == (3, 6, 6)  # 1 directory + 2, then the other 3
    assert ari.count("/renewal-info/") == 5


def test_a_directory_without_renewal_info_is_asked_once_a_day(
    cli: CliRunner, tmp_path: Path
) -> None:
    server = AriServer(renewal_info=False)
    try:
        store = _lacme_certificate(tmp_path)
        config = _lacme_config(tmp_path, store, server.directory)
        log = tmp_path / "events.jsonl"

        first, events = watch(cli, config, log, *at(NOW))
        second, _ = watch(cli, config, log, *at(NOW + timedelta(hours=23)))
        counted = server.count()
        watch(cli, config, log, *at(NOW + timedelta(hours=25)))
    finally:
        server.stop()

    assert (first, second) == (0, 0)
    assert ari_kinds(events) == []
    assert (counted, server.count()) == (1, 2)
    assert server.count("/renewal-info") == 0


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        pytest.param("status", "HTTP 500", id="http-500"),
        pytest.param("timeout", "timed out", id="timeout"),
        pytest.param("directory", "ACME directory: HTTP 503", id="directory-503"),
    ],
)
def test_a_ca_that_fails_is_a_source_problem_without_events(
    cli: CliRunner, tmp_path: Path, ari: AriServer, broken: str, message: str
) -> None:
    store = _lacme_certificate(tmp_path)
    identifier = ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.move(identifier, NOW - timedelta(days=2), NOW - timedelta(days=1))  # would be news
    if broken == "status":
        ari.fail_status = 500
    elif broken == "directory":
        ari.fail_status, ari.fail_directory = 503, True
    else:
        ari.delay = 3
    config = _lacme_config(tmp_path, store, ari.directory, "ari: {timeout: 1s}")
    log = tmp_path / "events.jsonl"

    result = cli("--config", str(config), *at(NOW), "watch", "--once")
    second = cli("--config", str(config), *at(NOW + timedelta(minutes=1)), "watch", "--once")

    assert (result.code, second.code) == (1, 1)
    assert message in result.err
    assert ari_kinds(_events(log)) == []


def _events(log: Path) -> list[dict[str, object]]:
    return read_events(log)


@pytest.mark.parametrize(
    ("where", "extra"),
    [pytest.param("top", "ari: false", id="top-level"), pytest.param("store", "", id="store")],
)
def test_ari_false_asks_nothing(
    cli: CliRunner, tmp_path: Path, ari: AriServer, where: str, extra: str
) -> None:
    store = _lacme_certificate(tmp_path)
    ari.add(store / "certs" / "www.example.com" / "cert.pem")
    config = _lacme_config(tmp_path, store, ari.directory, extra)
    if where == "store":
        text = config.read_text().replace(f'ari: {{directory: "{ari.directory}"}}', "ari: false")
        config.write_text(text)

    code, _ = watch(cli, config, tmp_path / "events.jsonl", *at(NOW))
    status = cli("--config", str(config), *at(NOW), "status", "--json").json()

    assert code == 0
    assert ari.count() == 0
    assert status["certificates"][0]["renewal_window"] is None  # type: ignore[index]


def test_the_top_level_ari_directory_is_refused_with_where_it_belongs(
    cli: CliRunner, tmp_path: Path
) -> None:
    store = _lacme_certificate(tmp_path)
    config = _lacme_config(tmp_path, store, "https://ca.example/dir", "ari: {directory: x}")

    result = cli("--config", str(config), "config", "check")

    assert result.code == 2
    assert "stores[N].ari.directory" in result.err


def test_an_https_ca_is_trusted_through_ari_ca_bundle(cli: CliRunner, tmp_path: Path) -> None:
    authority = trustme.CA()
    bundle = tmp_path / "acme-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    server = AriServer(tls=authority)
    try:
        store = _lacme_certificate(tmp_path)
        identifier = server.add(store / "certs" / "www.example.com" / "cert.pem")
        server.move(identifier, NOW - timedelta(hours=1), NOW + timedelta(hours=5))
        untrusted = _lacme_config(tmp_path, store, server.directory)
        refused = cli("--config", str(untrusted), *at(NOW), "watch", "--once")
        status = cli("--config", str(untrusted), *at(NOW), "status", "--json").json()
        trusted = _lacme_config(tmp_path, store, server.directory, f"ari: {{ca_bundle: {bundle}}}")
        code, events = watch(cli, trusted, tmp_path / "events.jsonl", *at(NOW))
    finally:
        server.stop()

    # A CA this host cannot verify is not a failed pass (its client may trust it
    # privately): status says why, and the next pass tries again.
    assert (refused.code, refused.err) == (0, "")
    note = status["ari_directories"][0]  # type: ignore[index]
    assert note["directory"] == server.directory
    assert "cannot verify the TLS certificate" in note["error"]
    assert "ari.ca_bundle" in note["error"]
    assert server.count("/renewal-info/") == 1  # only the trusted pass asked
    assert (code, ari_kinds(events)) == (0, ["renewal_window_moved"])


def test_a_renewal_info_on_another_host_is_never_asked(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    store = _lacme_certificate(tmp_path)
    ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.renewal_info_base = ari.base.replace("127.0.0.1", "localhost")
    config = _lacme_config(tmp_path, store, ari.directory)

    result = cli("--config", str(config), *at(NOW), "watch", "--once")

    assert result.code == 1
    assert "is on another host; not asked" in result.err
    assert ari.count("/renewal-info/") == 0


def test_each_certificate_is_asked_of_its_own_ca_only(cli: CliRunner, tmp_path: Path) -> None:
    first, second = AriServer(), AriServer()
    try:
        one = _lacme_certificate(tmp_path / "one", "one.example.com")
        two = _lacme_certificate(tmp_path / "two", "two.example.com")
        first_id = first.add(one / "certs" / "one.example.com" / "cert.pem")
        second_id = second.add(two / "certs" / "two.example.com" / "cert.pem")
        config = write_config(
            tmp_path / "lacme-watch.yaml",
            f"""
state_dir: {tmp_path / "state"}
stores:
  - type: lacme
    path: {one}
    ari: {{directory: "{first.directory}"}}
  - type: lacme
    path: {two}
    ari: {{directory: "{second.directory}"}}
sinks: [{{type: log, format: json, path: {tmp_path / "events.jsonl"}}}]
""",
        )

        code, _ = watch(cli, config, tmp_path / "events.jsonl", *at(NOW))
    finally:
        first.stop()
        second.stop()

    assert code == 0
    assert dict(first.requests) == {"/directory": 1, f"/renewal-info/{first_id}": 1}
    assert dict(second.requests) == {"/directory": 1, f"/renewal-info/{second_id}": 1}


def test_a_429_with_retry_after_is_waited_out(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    store = _lacme_certificate(tmp_path)
    ari.add(store / "certs" / "www.example.com" / "cert.pem")
    ari.fail_status, ari.retry_after = 429, "600"
    config = _lacme_config(tmp_path, store, ari.directory)
    log = tmp_path / "events.jsonl"

    first, _ = watch(cli, config, log, *at(NOW))
    waiting, _ = watch(cli, config, log, *at(NOW + timedelta(minutes=9)))
    asked_before = ari.count("/renewal-info/")
    ari.fail_status = None
    again, _ = watch(cli, config, log, *at(NOW + timedelta(minutes=11)))

    assert (first, waiting, again) == (1, 1, 0)  # failing until the CA answers
    assert (asked_before, ari.count("/renewal-info/")) == (1, 2)


def test_a_redirect_to_another_host_is_not_followed(
    cli: CliRunner, tmp_path: Path, ari: AriServer
) -> None:
    elsewhere = AriServer()
    try:
        store = _lacme_certificate(tmp_path)
        ari.add(store / "certs" / "www.example.com" / "cert.pem")
        ari.redirect_to = elsewhere.base.replace("127.0.0.1", "localhost")
        config = _lacme_config(tmp_path, store, ari.directory)

        result = cli("--config", str(config), *at(NOW), "watch", "--once")
    finally:
        elsewhere.stop()

    assert result.code == 1
    assert "redirected to another host" in result.err
    assert elsewhere.count() == 0


def test_a_lacme_renewal_read_alone_is_asked_about_in_the_same_pass(
    cli: CliRunner,
    tmp_path: Path,
    ari: AriServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ARI-enabled lacme store keeps a stat record: a renewal is read alone (a
    partial rescan, not in the pass's scanned inventory), and the round still sees the
    new certificate in that pass (asked, its early window announced) and forgets the
    old one's answer."""
    import shutil
    import sqlite3

    from lacme_watch.reading import statrecord

    monkeypatch.setattr(statrecord, "RACY", -3600.0)  # files written a moment ago: trusted
    ca = trustme.CA()
    store = tmp_path / "lacme"
    for name in ("a.example.com", "b.example.com"):
        save_acme_cert(
            FileStore(store),
            ca,
            [name],
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=89),
        )
        ari.add(store / "certs" / name / "cert.pem")
    config = _lacme_config(tmp_path, store, ari.directory)
    log = tmp_path / "events.jsonl"
    watch(cli, config, log, *at(NOW))  # asked, windows learnt
    watch(cli, config, log, *at(NOW))  # the windows' ends are the leaves' policies now

    def debug(moment: datetime) -> str:
        """One pass, logging at debug level: what it says of the store's stat record."""
        done = cli("--config", str(config), "--log-level", "debug", *at(moment), "watch", "--once")
        assert done.code == 0, done.err
        return done.err

    before = len(read_events(log))
    assert "unchanged since the last pass, not read" in debug(NOW)
    assert read_events(log)[before:] == []

    elsewhere = tmp_path / "renewal"  # a's renewal, written over its files in place
    save_acme_cert(
        FileStore(elsewhere),
        ca,
        ["a.example.com"],
        not_before=NOW - timedelta(hours=1),
        not_after=NOW + timedelta(days=90),
    )
    for name in ("cert.pem", "fullchain.pem"):
        shutil.copyfile(
            elsewhere / "certs" / "a.example.com" / name, store / "certs" / "a.example.com" / name
        )
    renewed = ari.add(store / "certs" / "a.example.com" / "cert.pem")
    ari.move(renewed, NOW - timedelta(hours=1), NOW + timedelta(hours=5), "https://ca/incident")
    before = len(read_events(log))
    said = debug(NOW + timedelta(minutes=5))
    events = read_events(log)[before:]
    assert "stat record 1 changed" in said  # a's fullchain.pem: read alone
    assert "read in full" not in said
    assert "certificate_renewed" in kinds(events)
    assert ari.count(f"/renewal-info/{renewed}") == 1
    moved = [e for e in events if e["type"] == "lacme.renewal_window_moved"]
    assert [data(e)["cert_id"] for e in moved] == [renewed]
    with sqlite3.connect(tmp_path / "state" / "state.sqlite3") as db:
        kept = db.execute("SELECT count(*) FROM ari_certificates").fetchone()[0]
    assert kept == 2  # b's, and the renewal's: a's old certificate is forgotten


def test_while_ari_ramps_up_a_pass_reads_only_the_certificates_it_asks_about(
    tmp_path: Path, ari: AriServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four certificates never asked, two requests a pass (the directory is one): the
    first pass reads one file for its certID and asks about it, the next two; a pass
    does not read every certificate it is not asking about yet."""
    from lacme_watch.ari import rounds
    from lacme_watch.ari.settings import AriSettings, StoreAri
    from lacme_watch.observations import Observation
    from lacme_watch.reading.reader import CertificateReader
    from lacme_watch.sources.stores.lacme import LacmeStore

    from .conftest import PassWatch

    read: list[str] = []
    real = rounds._cert_id_of

    def counted(reader: CertificateReader, observation: Observation) -> str | None:
        read.append(observation.lineage)
        return real(reader, observation)

    monkeypatch.setattr(rounds, "_cert_id_of", counted)
    ca = trustme.CA()
    store = tmp_path / "lacme"
    for name in ("a.example.com", "b.example.com", "c.example.com", "d.example.com"):
        save_acme_cert(
            FileStore(store),
            ca,
            [name],
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=89),
        )
        ari.add(store / "certs" / name / "cert.pem")
    source = LacmeStore(str(store))
    watching = PassWatch(tmp_path / "state", source)
    settings = AriSettings(
        max_requests_per_pass=2, stores={source.id: StoreAri(directory=ari.directory)}
    )
    watching.config = replace(watching.config, ari=settings)

    first, _ = watching.run_pass(NOW)
    assert (first.ari_requests, len(read)) == (2, 1)  # the directory, and one certificate
    second, _ = watching.run_pass(NOW + timedelta(minutes=15))
    assert (second.ari_requests, len(read)) == (2, 3)  # two more, each read once
    assert len(set(read)) == 3
    assert ari.count("/renewal-info/") == 3
