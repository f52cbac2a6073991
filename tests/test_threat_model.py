"""SECURITY.md's first claims, proved with strace: a full pass over real lacme, certbot
and easy-rsa stores, with keys behind certificate-named symlinks and links out of the
store, opens no private key and nothing outside the stores, runs no program and makes
no network connection that its configuration does not name (here: none)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme
from lacme import CertificateAuthority, FileStore

from .acme import Certbot, Pebble
from .authorities.easyrsa_tool import easyrsa
from .conftest import save_acme_cert

_OPEN = re.compile(r'\bopen(?:at2?)?\((?:AT_FDCWD, |\d+, )?"((?:[^"\\]|\\.)*)"')


def _opened_by(trace: Path) -> set[str]:
    """Every path a traced process asked open()/openat()/openat2() for, found or not."""
    found = set()
    for line in trace.read_text(errors="replace").splitlines():
        match = _OPEN.search(line)
        if match:
            found.add(match.group(1))
    return found


def _private_keys(root: Path) -> set[str]:
    """Every file under root that holds a private key, by content (not by name)."""
    keys = set()
    for directory, _subdirectories, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as stream:
                if b"PRIVATE KEY" in stream.read():
                    keys.add(os.path.realpath(path))
    return keys


@pytest.mark.acme
def test_a_full_pass_opens_no_private_key_and_nothing_outside_the_stores(
    pebble: Pebble,
    tmp_path: Path,
    file_store: FileStore,
    store_dir: Path,
    lacme_ca: CertificateAuthority,
    acme_ca: trustme.CA,
    now: datetime,
) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is not installed: .ci/run installs it"
    # lacme: an ACME certificate and one from lacme's own CA (key.pem beside each).
    save_acme_cert(
        file_store,
        acme_ca,
        ["lacme.example"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=89),
    )
    lacme_ca.issue(["internal.example"], validity_days=30)
    # certbot, against pebble: live/ symlinks into archive/, privkey.pem among them.
    certbot = Certbot(pebble, tmp_path / "certbot")
    issued = certbot.issue("certbot.example")
    assert issued.returncode == 0, issued.stderr
    # easy-rsa: private/ca.key and private/srv1.example.key beside the certificates.
    pki = tmp_path / "pki"
    easyrsa(pki, "init-pki")
    easyrsa(pki, "build-ca", "nopass", EASYRSA_REQ_CN="Threat Model CA")
    easyrsa(pki, "build-server-full", "srv1.example", "nopass")
    # A pem store of traps: keys under certificate names, links out of the store.
    outside = tmp_path / "outside"
    outside.mkdir()
    leaf = acme_ca.issue_cert("outside.example")
    (outside / "secret.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    traps = tmp_path / "pem"
    traps.mkdir()
    lacme_key = store_dir / "certs" / "lacme.example" / "key.pem"
    (traps / "cert.pem").symlink_to(lacme_key)
    (traps / "fullchain.pem").symlink_to(
        certbot.config_dir / "live" / "certbot.example" / "privkey.pem"
    )
    (traps / "ca.pem").symlink_to(pki / "private" / "ca.key")
    (traps / "shadow.pem").symlink_to("/etc/shadow")
    (traps / "elsewhere.pem").symlink_to(outside / "secret.pem")
    (traps / "shared").symlink_to("/usr/share/ca-certificates")
    for name in ("mykey.pem", "server+key.pem", "id_ecdsa.pem"):
        (traps / name).write_bytes(leaf.private_key_pem.bytes())
    combined = traps / "haproxy.pem"
    combined.write_bytes(leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes())
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "stores:\n"
        f"  - {{type: lacme, path: {store_dir}}}\n"
        f"  - {{type: certbot, path: {certbot.config_dir}}}\n"
        f"  - {{type: pem, paths: ['{traps}/**']}}\n"
        "authorities:\n"
        f"  - {{type: lacme, path: {store_dir}}}\n"
        f"  - {{type: easyrsa, path: {pki}}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {tmp_path / 'events.jsonl'}}}\n"
    )
    trace = tmp_path / "trace"
    calls = "trace=open,openat,openat2,execve,execveat,connect"
    tracing = [strace, "-f", "-qq", "-s", "4096", "-e", calls, "-o"]
    command = [sys.executable, "-m", "lacme_watch", "--config", str(config), "watch", "--once"]

    done = subprocess.run(
        [*tracing, str(trace), *command],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 1, done.stderr  # the traps are reported
    for reported in (
        "cert.pem: no_certificate_found (resolves to",
        "ca.pem: no_certificate_found (resolves to",
        "shadow.pem: outside_store",
        "elsewhere.pem: outside_store",
        "shared: outside_store",
    ):
        assert reported in done.stderr, done.stderr
    opened = _opened_by(trace)
    resolved = {os.path.realpath(path) for path in opened}
    keys = _private_keys(tmp_path) - {str(combined)}
    assert len(keys) >= 8  # lacme x2 (+ the CA's), certbot, easy-rsa x2, the three traps
    assert resolved & keys == set()
    assert "/etc/shadow" not in resolved
    assert str(outside / "secret.pem") not in resolved
    assert not any(path.startswith("/usr/share/ca-certificates") for path in resolved)
    # Every store file opened is the checked target itself, never a link to it.
    assert not any(os.path.islink(path) for path in opened if path.startswith(str(tmp_path)))
    # And the pass did read the stores: certificates of all of them were opened.
    assert str(store_dir / "certs" / "lacme.example" / "fullchain.pem") in resolved
    assert any("/archive/certbot.example/fullchain1.pem" in path for path in resolved)
    assert str(pki / "ca.crt") in resolved
    assert str(combined) in resolved  # read for its certificate block only
    # No program run (the one execve is python itself), and no connection out but to the
    # ACME server the certbot lineage came from (its `server =`, asked for renewal
    # information): no sink or endpoint in this configuration names another.
    lines = trace.read_text(errors="replace").splitlines()
    assert len([line for line in lines if re.search(r"\bexecve(at)?\(", line)]) == 1
    connects = [line for line in lines if re.search(r"\bconnect\(", line)]
    acme_port = f"htons({urlsplit(pebble.directory).port})"
    elsewhere = [line for line in connects if "AF_INET" in line and acme_port not in line]
    assert not elsewhere, elsewhere
