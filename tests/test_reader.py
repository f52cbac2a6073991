"""Certificate files are hostile input: every bad one is reported with a reason, never a crash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from lacme_watch.observations import CertificateFacts, Problem
from lacme_watch.reading.guarded import _KEY_FILE_NAME, looks_like_private_key
from lacme_watch.reading.reader import CertificateReader
from lacme_watch.sources.stores.pem import PemStore

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every path the process opens while the test runs (an audit hook on `open`)."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def leaf_pem(ca: trustme.CA, name: str = "www.example.test") -> bytes:
    return ca.issue_cert(name).cert_chain_pems[0].bytes()


def read(path: Path, **kwargs: Any) -> tuple[CertificateFacts, ...] | Problem:
    return CertificateReader(**kwargs).read_certificates(str(path))


def reason(path: Path, **kwargs: Any) -> str:
    found = read(path, **kwargs)
    assert isinstance(found, Problem), found
    return found.reason


def test_a_bundle_yields_every_certificate_in_file_order(tmp_path: Path, ca: trustme.CA) -> None:
    leaf = ca.issue_cert("www.example.test")
    bundle = tmp_path / "fullchain.pem"
    bundle.write_bytes(leaf.cert_chain_pems[0].bytes() + ca.cert_pem.bytes())

    found = read(bundle)

    assert isinstance(found, tuple)
    assert len(found) == 2
    assert (found[0].names, found[0].is_ca) == (("www.example.test",), False)
    assert found[1].is_ca


def test_chain_leaf_mode_observes_only_the_first_certificate(
    tmp_path: Path, ca: trustme.CA
) -> None:
    bundle = tmp_path / "fullchain.pem"
    bundle.write_bytes(leaf_pem(ca) + ca.cert_pem.bytes())

    full = CertificateReader(chain=True).bundle(lineage="x", path=str(bundle))
    leaf = CertificateReader(chain=False).bundle(lineage="x", path=str(bundle))

    assert isinstance(full, list)
    assert isinstance(leaf, list)
    assert [o.role for o in full] == ["leaf", "chain"]
    assert [o.role for o in leaf] == ["leaf"]


def test_text_before_the_pem_block_is_ignored_as_easy_rsa_writes_it(
    tmp_path: Path, ca: trustme.CA
) -> None:
    plain = tmp_path / "plain.pem"
    plain.write_bytes(leaf_pem(ca))
    dumped = subprocess.run(
        ["openssl", "x509", "-in", str(plain), "-text"], check=True, capture_output=True
    ).stdout
    issued = tmp_path / "srv1.crt"
    issued.write_bytes(dumped)
    assert not dumped.startswith(b"-----BEGIN")

    found = read(issued)

    assert isinstance(found, tuple)
    assert [facts.names for facts in found] == [("www.example.test",)]


def test_der_is_read(tmp_path: Path, ca: trustme.CA) -> None:
    der = x509.load_pem_x509_certificate(leaf_pem(ca)).public_bytes(serialization.Encoding.DER)
    path = tmp_path / "cert.der"
    path.write_bytes(der)

    found = read(path)

    assert isinstance(found, tuple)
    assert found[0].names == ("www.example.test",)


def test_keys_and_csrs_beside_a_certificate_are_skipped_without_noise(
    tmp_path: Path, ca: trustme.CA
) -> None:
    leaf = ca.issue_cert("www.example.test")
    combined = tmp_path / "haproxy.pem"
    csr = subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=x",
        ],
        check=True,
        capture_output=True,
    ).stdout
    combined.write_bytes(csr + leaf.cert_chain_pems[0].bytes() + leaf.private_key_pem.bytes())
    only_key = tmp_path / "server.pem"
    only_key.write_bytes(leaf.private_key_pem.bytes())

    found = read(combined)

    assert isinstance(found, tuple)
    assert len(found) == 1
    assert read(only_key) == ()


def test_files_named_like_private_keys_are_never_opened(
    tmp_path: Path, ca: trustme.CA, opened: list[str]
) -> None:
    leaf = ca.issue_cert("www.example.test")
    for name in ("privkey.pem", "key.pem", "privkey-1700000000.pem", "server.key", "tls-key.pem"):
        (tmp_path / name).write_bytes(leaf.private_key_pem.bytes())
    (tmp_path / "cert.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    opened.clear()

    result = PemStore((str(tmp_path / "*"),)).scan(CertificateReader())

    assert [o.domain for o in result.observations] == ["www.example.test"]
    assert result.problems == ()
    assert [Path(p).name for p in opened if str(tmp_path) in p] == ["cert.pem"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("privkey.pem", True),
        ("key.pem", True),
        ("account.key", True),
        ("ca.key", True),
        ("privkey-1700000000.pem", True),
        ("private_key.json", True),
        ("server-key.pem", True),
        ("cert.pem", False),
        ("fullchain.pem", False),
        ("monkey.pem", False),
        ("keys.pem", False),
        ("chain-1700000000.pem", False),
    ],
)
def test_private_key_names(name: str, expected: bool) -> None:
    assert looks_like_private_key(name) is expected


_NAME_PIECES = ["key", "KEY", "Key", "priv", "private", "my", "id_", "rsa", "ed25519", "cert"]
_NAME_PIECES += [".p12", ".PFX", ".jks", ".keystore", ".ppk", ".pem", ".key", "-", "_", "+", "@"]
_NAME_PIECES += [".", "1", "x", "İ", "K", "ﬀ", "é", "/dir/"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_NAME_PIECES), max_size=6).map("".join))
def test_private_key_names_as_the_pattern_says(name: str) -> None:
    """The quick look for `key`, `id_` and key suffixes only ever spares the pattern a
    name it could not match (a non-ASCII name always goes to the pattern)."""
    expected = bool(_KEY_FILE_NAME.search(os.path.basename(name)))
    assert looks_like_private_key(name) is expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["/", "//", "a", "b.pem", ".", "..", "link", " "]), max_size=6))
def test_a_target_is_its_real_directory_joined_with_its_name(pieces: list[str]) -> None:
    """The quick split at the last slash gives what os.path.split and join give."""
    path = "".join(pieces)
    reader = CertificateReader()
    parent, name = os.path.split(path)
    assert reader._target(path) == os.path.join(reader._real_directory(parent), name)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "cert.pem"
    empty.write_bytes(b"")
    assert reason(empty) == "no_certificate_found"


def test_binary_garbage(tmp_path: Path) -> None:
    garbage = tmp_path / "cert.der"
    garbage.write_bytes(os.urandom(512))
    assert reason(garbage) == "no_certificate_found"


def test_truncated_pem(tmp_path: Path, ca: trustme.CA) -> None:
    truncated = tmp_path / "cert.pem"
    truncated.write_bytes(leaf_pem(ca)[:200])
    assert reason(truncated) == "bad_pem"


def test_corrupt_base64_inside_a_block(tmp_path: Path, ca: trustme.CA) -> None:
    pem = bytearray(leaf_pem(ca))
    pem[100:140] = b"!" * 40
    corrupt = tmp_path / "cert.pem"
    corrupt.write_bytes(bytes(pem))
    assert reason(corrupt) == "bad_pem"


def test_oversized_file_is_not_read(tmp_path: Path, opened: list[str]) -> None:
    big = tmp_path / "huge.pem"
    big.write_bytes(b"A" * 2048)
    opened.clear()

    found = read(big, max_file_size=1024)

    assert isinstance(found, Problem)
    assert found.reason == "too_large"


def test_missing_file(tmp_path: Path) -> None:
    assert reason(tmp_path / "nope.pem") == "not_found"


def test_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "cert.pem"
    link.symlink_to(tmp_path / "archive" / "cert9.pem")
    found = read(link)
    assert isinstance(found, Problem)
    assert (found.reason, "archive/cert9.pem" in found.detail) == ("broken_symlink", True)


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a.pem").symlink_to(tmp_path / "b.pem")
    (tmp_path / "b.pem").symlink_to(tmp_path / "a.pem")
    found = read(tmp_path / "a.pem")
    assert isinstance(found, Problem)
    assert (found.reason, found.detail) == ("broken_symlink", "symlink loop")


def test_a_fifo_does_not_hang_the_pass(tmp_path: Path) -> None:
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    assert reason(fifo) == "no_certificate_found"


def test_a_directory_symlink_loop_in_a_recursive_glob_terminates(
    tmp_path: Path, ca: trustme.CA
) -> None:
    nested = tmp_path / "certs" / "sub"
    nested.mkdir(parents=True)
    (nested / "cert.pem").write_bytes(leaf_pem(ca))
    (nested / "loop").symlink_to(tmp_path / "certs")

    result = PemStore((str(tmp_path / "certs" / "**" / "*.pem"),)).scan(CertificateReader())

    assert [o.path for o in result.observations if o.role == "leaf"] == [str(nested / "cert.pem")]


def test_glob_patterns(tmp_path: Path, ca: trustme.CA) -> None:
    for relative in ("a.pem", "b.crt", "x/c.pem", "x/y/d.pem", "x/y/e.txt"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(leaf_pem(ca, relative.replace("/", "-").replace(".", "-") + ".test"))

    def matched(pattern: str) -> list[str]:
        result = PemStore((str(tmp_path / pattern),)).scan(CertificateReader())
        return sorted(os.path.relpath(o.path, tmp_path) for o in result.observations)

    assert matched("*.pem") == ["a.pem"]
    assert matched("*.[pc][er][mt]") == ["a.pem", "b.crt"]
    assert matched("x/*/*.pem") == ["x/y/d.pem"]
    assert matched("**/*.pem") == ["a.pem", "x/c.pem", "x/y/d.pem"]
    assert matched("x/**") == ["x/c.pem", "x/y/d.pem", "x/y/e.txt"]


def test_a_missing_glob_base_fails_the_source_so_its_inventory_carries_over(tmp_path: Path) -> None:
    result = PemStore((str(tmp_path / "gone" / "*.pem"),)).scan(CertificateReader())
    assert result.failed
    assert [p.reason for p in result.problems] == ["not_found"]


_READ = """
import sys
from lacme_watch.reading.reader import CertificateReader
print(CertificateReader().read_certificates(sys.argv[1]))
"""


def test_permission_denied(tmp_path: Path, ca: trustme.CA) -> None:
    locked = tmp_path / "cert.pem"
    locked.write_bytes(leaf_pem(ca))
    locked.chmod(0o000)
    if os.geteuid() != 0:
        assert reason(locked) == "permission_denied"
        return
    # root reads anything: drop the capabilities that let it, and the kernel says EACCES for real.
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permission errors as root"
    done = subprocess.run(
        [
            setpriv,
            "--bounding-set=-dac_override,-dac_read_search",
            sys.executable,
            "-c",
            _READ,
            str(locked),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "reason='permission_denied'" in done.stdout


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path, ca: trustme.CA) -> None:
    path = tmp_path / "cert.pem"
    path.write_bytes(leaf_pem(ca))
    first = CertificateReader()
    first.read_certificates(str(path))

    second = CertificateReader(cache=first.files)
    found = second.read_certificates(str(path))

    assert (first.parsed, second.parsed, second.reused) == (1, 0, 1)
    assert isinstance(found, tuple)
    assert found[0].names == ("www.example.test",)

    path.write_bytes(leaf_pem(ca, "changed.example.test"))
    third = CertificateReader(cache=second.files)
    changed = third.read_certificates(str(path))
    assert isinstance(changed, tuple)
    assert (third.parsed, changed[0].names) == (1, ("changed.example.test",))


def test_scanning_a_lacme_store_and_its_ca_opens_no_key(tmp_path: Path, opened: list[str]) -> None:
    from lacme import CertificateAuthority, FileStore

    from lacme_watch.sources.authorities.lacme import LacmeAuthority
    from lacme_watch.sources.stores.lacme import LacmeStore

    store = FileStore(tmp_path / "lacme")
    authority = CertificateAuthority(store, name="root")
    authority.init(cn="Audit CA")
    authority.issue(["a.example"], validity_days=30)
    opened.clear()

    ca_scan = LacmeAuthority(str(store.base), "root").scan(CertificateReader())
    store_scan = LacmeStore(str(store.base)).scan(CertificateReader(signers=ca_scan.signers))

    assert [(o.role, o.domain) for o in store_scan.observations] == [
        ("leaf", "a.example"),
        ("chain", "Audit CA"),  # the root rides in fullchain.pem; run_pass leaves it to the CA
    ]
    touched = sorted(os.path.relpath(path, store.base) for path in opened if "lacme" in path)
    assert touched == [
        "ca/root/cert.pem",
        "certs/a.example/fullchain.pem",
        "certs/a.example/meta.json",
    ]


def test_a_reused_files_facts_equal_the_parsed_ones_and_decode_only_when_read(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """The second scan reuses the cache: facts stand in by fingerprint, signer, CA flag
    and names, decode the rest on first read, and compare and hash as the parsed ones."""
    leaf = ca.issue_cert("reused.example", "www.reused.example")
    path = tmp_path / "bundle.pem"
    path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + ca.cert_pem.bytes())
    first = CertificateReader()
    parsed = first.read_certificates(str(path))
    assert isinstance(parsed, tuple)
    second = CertificateReader(cache=first.files)
    reused = second.read_certificates(str(path))
    assert isinstance(reused, tuple)
    assert (second.parsed, second.reused) == (0, 1)
    stored = reused[0]
    assert type(stored) is not CertificateFacts  # a stand-in, not yet decoded
    assert (stored.fingerprint, stored.names) == (parsed[0].fingerprint, parsed[0].names)
    assert reused == parsed  # either side of ==
    assert parsed == reused
    assert {hash(f) for f in reused} == {hash(f) for f in parsed}
    assert [f.not_after for f in reused] == [f.not_after for f in parsed]
    assert [f.profile for f in reused] == [f.profile for f in parsed]
