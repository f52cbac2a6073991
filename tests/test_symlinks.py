"""Symlinks are judged by their targets: never a key, never outside the store by default,
and a recursive glob visits each directory once and never leaves its root."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from lacme_watch.observations import Problem, ScanResult
from lacme_watch.reading.guarded import looks_like_private_key
from lacme_watch.reading.reader import CertificateReader
from lacme_watch.sources.stores.crl import CrlStore
from lacme_watch.sources.stores.lacme import LacmeStore
from lacme_watch.sources.stores.pem import PemStore

from .conftest import CliRunner, kinds, read_events
from .hierarchy import certificate, crl

_SEEN: list[tuple[str, str]] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _SEEN is None or event not in ("open", "os.scandir", "os.listdir"):
        return
    target = args[0]
    if isinstance(target, (str, bytes, os.PathLike)):
        _SEEN.append((event, os.fsdecode(target)))


sys.addaudithook(_audit)


@pytest.fixture
def touched() -> Iterator[list[tuple[str, str]]]:
    """(event, path) of every open(), scandir() and listdir() while the test runs."""
    global _SEEN
    _SEEN = []
    try:
        yield _SEEN
    finally:
        _SEEN = None


def _opened(touched: list[tuple[str, str]]) -> set[str]:
    return {path for event, path in touched if event == "open"}


def _listed(touched: list[tuple[str, str]]) -> set[str]:
    return {path for event, path in touched if event != "open"}


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _pem(ca: trustme.CA, name: str) -> bytes:
    return ca.issue_cert(name).cert_chain_pems[0].bytes()


def _problems(found: ScanResult) -> dict[str, str]:
    return {Path(p.path).name: p.reason for p in found.problems}


def test_a_certificate_named_symlink_to_a_key_is_never_opened(
    tmp_path: Path, ca: trustme.CA, touched: list[tuple[str, str]]
) -> None:
    leaf = ca.issue_cert("www.example.test")
    store = tmp_path / "store"
    store.mkdir()
    key = store / "privkey.pem"
    key.write_bytes(leaf.private_key_pem.bytes())
    (store / "cert.pem").symlink_to("privkey.pem")
    (store / "real.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    touched.clear()

    result = PemStore((str(store / "*.pem"),)).scan(CertificateReader())

    assert [o.domain for o in result.observations] == ["www.example.test"]
    [problem] = result.problems
    assert (Path(problem.path).name, problem.reason) == ("cert.pem", "no_certificate_found")
    assert "named like a private key" in problem.detail
    assert str(key) not in _opened(touched)


@pytest.mark.parametrize("name", ["shadow.pem", "cert.pem", "fullchain.pem"])
def test_a_symlink_out_of_the_store_is_not_followed(
    tmp_path: Path, ca: trustme.CA, touched: list[tuple[str, str]], name: str
) -> None:
    outside = tmp_path / "elsewhere" / "secret.pem"
    outside.parent.mkdir()
    outside.write_bytes(_pem(ca, "not-the-operators.example"))
    store = tmp_path / "store"
    store.mkdir()
    (store / name).symlink_to(outside)
    (store / "shadow-real.pem").symlink_to("/etc/shadow")
    touched.clear()

    result = PemStore((str(store / "*.pem"),)).scan(CertificateReader())

    assert result.observations == ()
    assert _problems(result) == {name: "outside_store", "shadow-real.pem": "outside_store"}
    assert all("follow_symlinks: any" in p.detail for p in result.problems)
    assert str(outside) not in _opened(touched)
    assert "/etc/shadow" not in _opened(touched)


def test_follow_symlinks_any_reads_an_outside_certificate_but_still_no_key(
    tmp_path: Path, ca: trustme.CA, cli: CliRunner
) -> None:
    """The /etc/ssl/certs layout: every file a link into /usr/share/ca-certificates."""
    leaf = ca.issue_cert("shared.example")
    outside = tmp_path / "usr-share"
    outside.mkdir()
    (outside / "shared.crt").write_bytes(leaf.cert_chain_pems[0].bytes())
    (outside / "shared.key").write_bytes(leaf.private_key_pem.bytes())
    store = tmp_path / "etc-ssl-certs"
    store.mkdir()
    (store / "shared.pem").symlink_to(outside / "shared.crt")
    (store / "looks-fine.pem").symlink_to(outside / "shared.key")
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{store}/*.pem']\n    follow_symlinks: any\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )

    result = cli("--config", str(config), "status", "--json")

    shown = result.json()
    assert isinstance(shown, dict)
    assert [row["name"] for row in shown["certificates"]] == ["shared.example"]
    assert [(Path(p["path"]).name, p["reason"]) for p in shown["problems"]] == [
        ("looks-fine.pem", "no_certificate_found")
    ]


def test_a_bad_follow_symlinks_value_is_a_config_error(tmp_path: Path, cli: CliRunner) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{tmp_path}/*.pem']\n    follow_symlinks: yes\n"
    )

    result = cli("--config", str(config), "config", "check")

    assert result.code == 2
    assert "follow_symlinks" in result.err


@pytest.mark.parametrize("name", ["mykey.pem", "server+key.pem", "id_ecdsa.pem", "store.p12"])
def test_more_key_names_are_never_opened(name: str) -> None:
    assert looks_like_private_key(name)


def test_a_combined_certificate_and_key_file_keeps_no_trace_of_the_key(
    tmp_path: Path, ca: trustme.CA, cli: CliRunner
) -> None:
    """An haproxy bundle: the certificate is watched; the key's bytes reach no output,
    no event and no row of the state database."""
    leaf = ca.issue_cert("haproxy.example", not_after=datetime.now(UTC) + timedelta(days=5))
    store = tmp_path / "haproxy"
    store.mkdir()
    key = leaf.private_key_pem.bytes()
    (store / "site.pem").write_bytes(key + leaf.cert_chain_pems[0].bytes())
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{store}/*.pem']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )

    watched = cli("--config", str(config), "watch", "--once")
    status = cli("--config", str(config), "status", "--json")

    assert kinds(read_events(log)) == ["certificate_expiring"]
    key_body = b"".join(key.splitlines()[1:-1]).decode()
    chunks = {key_body[i : i + 24] for i in range(0, len(key_body) - 24, 24)}
    database = sqlite3.connect(tmp_path / "state" / "state.sqlite3")
    rows = " ".join(
        str(value)
        for table in ("certificates", "files", "events", "problems")
        for row in database.execute(f"SELECT * FROM {table}")  # noqa: S608  # fixed names
        for value in row
    )
    everything = watched.out + watched.err + status.out + status.err + log.read_text() + rows
    assert not any(chunk in everything for chunk in chunks)
    assert "PRIVATE KEY" not in everything


def test_a_lacme_certificate_linked_out_of_the_store_is_outside_store(
    tmp_path: Path, ca: trustme.CA
) -> None:
    outside = tmp_path / "outside.pem"
    outside.write_bytes(_pem(ca, "outside.example"))
    certs = tmp_path / "lacme" / "certs" / "x.example"
    certs.mkdir(parents=True)
    (certs / "meta.json").write_text('{"domain": "x.example", "domains": ["x.example"]}')
    (certs / "fullchain.pem").symlink_to(outside)

    result = LacmeStore(str(tmp_path / "lacme")).scan(CertificateReader())

    assert result.observations == ()
    assert [(p.lineage, p.reason) for p in result.problems] == [
        ("certs/x.example", "outside_store")
    ]


def _tree(tmp_path: Path, ca: trustme.CA) -> Path:
    root = tmp_path / "certs"
    (root / "a" / "b").mkdir(parents=True)
    (root / "top.pem").write_bytes(_pem(ca, "top.example"))
    (root / "a" / "b" / "deep.pem").write_bytes(_pem(ca, "deep.example"))
    return root


def test_up_links_never_scan_the_tree_twice(tmp_path: Path, ca: trustme.CA) -> None:
    root = _tree(tmp_path, ca)
    (root / "a" / "b" / "up").symlink_to("..")  # inside: a directory already visited
    (root / "a" / "b" / "top").symlink_to("../..")
    (root / "parent").symlink_to("..")  # the store's parent: outside

    result = PemStore((str(root / "**" / "*.pem"),)).scan(CertificateReader())

    assert sorted(o.domain for o in result.observations) == ["deep.example", "top.example"]
    assert [(Path(p.path).name, p.reason) for p in result.problems] == [("parent", "outside_store")]


@pytest.mark.parametrize("target", ["/usr/share", "/"])
def test_a_recursive_glob_never_walks_out_of_its_root(
    tmp_path: Path, ca: trustme.CA, touched: list[tuple[str, str]], target: str
) -> None:
    root = _tree(tmp_path, ca)
    (root / "a" / "elsewhere").symlink_to(target)
    touched.clear()

    result = PemStore((str(root / "**"),)).scan(CertificateReader())

    assert sorted(o.domain for o in result.observations) == ["deep.example", "top.example"]
    assert [(Path(p.path).name, p.reason) for p in result.problems] == [
        ("elsewhere", "outside_store")
    ]
    assert all(path.startswith(str(root)) for path in _listed(touched))
    assert str(root / "a" / "elsewhere") not in _listed(touched)
    assert all(str(root) in path for path in _opened(touched))


def test_a_directory_symlink_inside_the_root_is_followed_once(
    tmp_path: Path, ca: trustme.CA
) -> None:
    root = _tree(tmp_path, ca)
    (root / "alias").symlink_to("a/b")

    result = PemStore((str(root / "**" / "*.pem"),)).scan(CertificateReader())

    assert sorted(o.domain for o in result.observations) == ["deep.example", "top.example"]
    assert result.problems == ()


def test_follow_symlinks_any_follows_a_directory_link_out(tmp_path: Path, ca: trustme.CA) -> None:
    root = _tree(tmp_path, ca)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "far.pem").write_bytes(_pem(ca, "far.example"))
    (root / "far").symlink_to(elsewhere)

    confined = PemStore((str(root / "**" / "*.pem"),)).scan(CertificateReader())
    followed = PemStore((str(root / "**" / "*.pem"),), follow_any=True).scan(CertificateReader())

    assert "far.example" not in {o.domain for o in confined.observations}
    assert "far.example" in {o.domain for o in followed.observations}
    assert followed.problems == ()


def test_a_file_name_that_is_not_utf8_is_reported_not_fatal(
    tmp_path: Path, ca: trustme.CA, cli: CliRunner
) -> None:
    """Found beside the symlink cases: such a name once made the pass's commit fail."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "good.pem").write_bytes(_pem(ca, "good.example"))
    soon = datetime.now(UTC) + timedelta(days=5)
    with open(os.path.join(os.fsencode(store), b"\xff.pem"), "wb") as stream:
        stream.write(_pem(ca, "odd.example"))
    (store / "soon.pem").write_bytes(
        ca.issue_cert("soon.example", not_after=soon).cert_chain_pems[0].bytes()
    )
    log = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - type: pem\n    paths: ['{store}/*.pem']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )

    first = cli("--config", str(config), "watch", "--once")
    later = cli("--config", str(config), "watch", "--once")

    assert (first.code, later.code) == (1, 1)
    assert "\\udcff.pem: bad_file_name" in first.err
    assert kinds(read_events(log)) == ["certificate_expiring", "certificate_unreadable"]
    found = PemStore((str(store / "*.pem"),)).scan(CertificateReader())
    assert [p.reason for p in found.problems] == ["bad_file_name"]
    assert isinstance(found.problems[0], Problem)


@pytest.mark.parametrize("swap", ["symlink to the key", "another file"])
def test_a_file_swapped_between_check_and_open_is_not_read(
    tmp_path: Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """The race no real timing can hit on demand: the swap happens inside os.open's
    call, after every guard passed on the original target."""
    leaf = ca.issue_cert("www.example.test")
    store = tmp_path / "store"
    store.mkdir()
    cert = store / "cert.pem"
    cert.write_bytes(leaf.cert_chain_pems[0].bytes())
    key = store / "privkey.pem"
    key.write_bytes(leaf.private_key_pem.bytes())
    real_open = os.open

    def swapping_open(path: str, flags: int, *args: int) -> int:
        if path == str(cert):
            replacement = store / "replacement"
            if swap == "symlink to the key":
                replacement.symlink_to(key)
            else:
                replacement.write_bytes(key.read_bytes())
            replacement.replace(cert)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swapping_open)
    found = CertificateReader().read_certificates(str(cert))
    monkeypatch.undo()

    assert isinstance(found, Problem)
    assert found.reason == "io_error"
    assert found.detail.startswith("replaced")


def test_the_crl_store_stays_inside_its_root_too(tmp_path: Path) -> None:
    """The same walk and the same guards for CRL globs as for certificate globs."""
    now = datetime.now(UTC)
    authority = certificate(
        "CRL CA", issuer=None, not_before=now - timedelta(days=1), not_after=now + timedelta(days=9)
    )
    issued = crl(authority, [], this_update=now, next_update=now + timedelta(days=7), number=1)
    root = tmp_path / "crls"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "inside.der").write_bytes(issued)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "far.der").write_bytes(issued)
    (root / "far").symlink_to(elsewhere)
    (root / "far.der").symlink_to(elsewhere / "far.der")
    (root / "sub" / "up").symlink_to("..")

    result = CrlStore((str(root / "**" / "*.der"),)).scan(CertificateReader())

    assert [Path(seen.path).name for seen in result.crls] == ["inside.der"]
    assert sorted((Path(p.path).name, p.reason) for p in result.problems) == [
        ("far", "outside_store"),
        ("far.der", "outside_store"),
    ]
