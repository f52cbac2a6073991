"""The Public Suffix List's compiled copy in state_dir: the same list as the library's
own parse, used when current, rebuilt when stale or damaged, never fatal."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from publicsuffixlist import PublicSuffixList

from lacme_watch.detection import suffixlist
from lacme_watch.detection.ratelimits import RateLimits, evaluate
from lacme_watch.observations import Issuance

from .conftest import CliRunner, read_events, write_config

NAMES = [
    "www.example.com",
    "a.b.example.co.uk",
    "a.b.example.github.io",
    "foo.bar.ck",  # wildcard rule *.ck
    "www.ck",  # exception rule !www.ck
    "a.city.kawasaki.jp",  # exception under a wildcard
    "www.пример.рф",  # IDN rule, as Unicode
    "www.xn--e1afmkfd.xn--p1ai",  # the same, punycoded
    "shop.example.xn--80asehdb",  # an IDN TLD, punycoded
    "x.s3.dualstack.eu-west-1.amazonaws.com",  # a long private rule
    "unknown-tld.invalidtld",
]


def registered(psl: PublicSuffixList) -> list[str | None]:
    return [psl.privatesuffix(name) for name in NAMES]


EXPECTED = registered(PublicSuffixList())


def test_compiled_copy_gives_the_library_parse(tmp_path: Path) -> None:
    first = suffixlist.load(tmp_path)
    compiled = tmp_path / suffixlist.COMPILED_NAME
    assert compiled.is_file()
    assert oct(compiled.stat().st_mode & 0o777) == "0o600"
    again = suffixlist.load(tmp_path)
    assert registered(first) == registered(again) == EXPECTED
    assert EXPECTED[:3] == ["example.com", "example.co.uk", "example.github.io"]
    assert again._publicsuffix == PublicSuffixList()._publicsuffix


def test_the_compiled_copy_is_what_is_read(tmp_path: Path) -> None:
    """A copy that is current is used as it is: a rule taken out of it shows."""
    suffixlist.load(tmp_path)
    compiled = tmp_path / suffixlist.COMPILED_NAME
    header, _, body = compiled.read_text().partition("\n\n")
    body = "\n".join(rule for rule in body.split("\n") if rule != "co.uk")
    fmt, key, _digest = header.split("\n")
    digest = hashlib.sha256(body.encode()).hexdigest()
    compiled.write_text(f"{fmt}\n{key}\n{digest}\n\n{body}")
    assert suffixlist.load(tmp_path).privatesuffix("a.b.example.co.uk") == "co.uk"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5000])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x20
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00 not a compiled list \x80\x81")


def _other_version(path: Path) -> None:
    header, _, body = path.read_text().partition("\n\n")
    fmt, key, digest = header.split("\n")
    path.write_text(f"{fmt}\n0.0.0 {key.split(' ', 1)[1]}\n{digest}\n\n{body}")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [_truncate, _flip_a_byte, _garbage, _other_version, _empty],
    ids=["truncated", "flipped-byte", "garbage", "other-library-version", "empty"],
)
def test_a_damaged_or_stale_copy_is_rebuilt(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    suffixlist.load(tmp_path)
    compiled = tmp_path / suffixlist.COMPILED_NAME
    good = compiled.read_bytes()
    damage(compiled)
    assert registered(suffixlist.load(tmp_path)) == EXPECTED
    assert compiled.read_bytes() == good


def test_a_state_dir_that_cannot_hold_it_is_not_fatal(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the directory would be")
    assert registered(suffixlist.load(blocked)) == EXPECTED
    assert registered(suffixlist.load(tmp_path / "missing")) == EXPECTED
    assert not (tmp_path / "missing").exists()
    assert registered(suffixlist.load(None)) == EXPECTED
    assert list(tmp_path.iterdir()) == [blocked]


def test_rate_limits_keep_their_copy_in_the_cache_dir(tmp_path: Path) -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    history = [
        Issuance(f"k{i}", (f"h{i}.example.co.uk",), now - timedelta(hours=i)) for i in range(40)
    ]
    (warning,) = evaluate(history, [], RateLimits(), now, {}, cache_dir=tmp_path)
    assert (warning.rule, warning.key, warning.count) == ("registered_domain", "example.co.uk", 40)
    assert (tmp_path / suffixlist.COMPILED_NAME).is_file()


def _pass_over_new_certificates(tmp_path: Path, cli: CliRunner, count: int) -> list[str]:
    """`watch --once` over `count` certificates issued an hour ago under example.co.uk,
    its state_dir holding a damaged compiled copy; the rate-limit warnings it emitted."""
    certs = tmp_path / "certs"
    certs.mkdir()
    now = datetime.now(UTC)  # issued now: an issuance rate limits count
    ca = trustme.CA()
    for index in range(count):
        leaf = ca.issue_cert(
            f"h{index}.example.co.uk",
            not_before=now - timedelta(hours=1),
            not_after=now + timedelta(days=90),
        )
        (certs / f"h{index}.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "config.yaml",
        f"state_dir: {tmp_path / 'state'}\nstores:\n  - {{type: pem, paths: ['{certs}/*.pem']}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    compiled = tmp_path / "state" / suffixlist.COMPILED_NAME
    compiled.parent.mkdir(mode=0o700)
    compiled.write_bytes(b"damaged")

    result = cli("--config", str(config), "watch", "--once")

    assert result.code == 0, result.err
    return [
        str(event["data"]["registered_domain"])  # type: ignore[index]
        for event in read_events(log)
        if event["type"] == "lacme.rate_limit_warning"
    ]


def test_a_pass_that_counts_issuances_keeps_the_copy_in_state_dir(
    tmp_path: Path, cli: CliRunner
) -> None:
    warned = _pass_over_new_certificates(tmp_path, cli, 40)  # 80% of 50: a warning is due

    assert warned == ["example.co.uk"]  # counted by registered domain, through the list
    compiled = tmp_path / "state" / suffixlist.COMPILED_NAME
    assert compiled.read_bytes().startswith(b"lacme-watch compiled public suffix list")


def test_new_certificates_too_few_for_a_warning_leave_the_list_unread(
    tmp_path: Path, cli: CliRunner
) -> None:
    """No registered domain can count more than the pass's new certificates: below the
    warning point (40 of 50), their domains are not looked up at all."""
    warned = _pass_over_new_certificates(tmp_path, cli, 39)

    assert warned == []
    assert (tmp_path / "state" / suffixlist.COMPILED_NAME).read_bytes() == b"damaged"


def test_a_list_replaced_with_the_same_size_and_mtime_is_compiled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is keyed by the data file's content, not its size and mtime."""
    import publicsuffixlist

    data = tmp_path / "public_suffix_list.dat"
    original = Path(publicsuffixlist.PSLFILE).read_bytes()
    data.write_bytes(original)
    monkeypatch.setattr(publicsuffixlist, "PSLFILE", str(data))
    cache = tmp_path / "state"
    cache.mkdir()
    suffixlist.load(cache)
    compiled = cache / suffixlist.COMPILED_NAME
    before = compiled.read_bytes()
    status = data.stat()
    swapped = original.replace(b"\nuk\n", b"\nuq\n", 1)  # one rule renamed, same size
    assert swapped != original
    assert len(swapped) == len(original)
    data.write_bytes(swapped)
    os.utime(data, ns=(status.st_atime_ns, status.st_mtime_ns))
    suffixlist.load(cache)
    assert compiled.read_bytes() != before
