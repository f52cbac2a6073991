"""A real ACME server on loopback: Debian's pebble and pebble-challtestsrv.

pebble answers ACME on 127.0.0.1; challtestsrv resolves every name to 127.0.0.1, so
certbot's standalone server on `http_port` answers http-01 for any *.example name.
Tests that need these tools fail (not skip) when they are missing: CI installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import trustme


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: .ci/run installs it (apt-get install)"
    return path


@dataclass
class Pebble:
    directory: str
    ca_file: Path
    http_port: int
    """Where pebble's validator fetches http-01 answers."""
    dns_management: str
    """challtestsrv's management address (POST /set-txt answers dns-01)."""
    processes: list[subprocess.Popen[bytes]]
    management: str = ""
    """pebble's management address (GET /roots/0 is the root its chains lead to)."""

    def write_root(self, path: Path) -> Path:
        """Save pebble's (random, per-start) root: the `trust:` bundle its chains need."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        url = f"https://{self.management}/roots/0"
        path.write_bytes(urllib.request.urlopen(url, context=context, timeout=10).read())
        return path

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_pebble(root: Path) -> Pebble:
    pebble, challtestsrv = require("pebble"), require("pebble-challtestsrv")
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(root / "key.pem"))
    acme, management, dns, dns_management, http = (free_port() for _ in range(5))
    (root / "pebble.json").write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{acme}",
                    "managementListenAddress": f"127.0.0.1:{management}",
                    "certificate": str(root / "cert.pem"),
                    "privateKey": str(root / "key.pem"),
                    "httpPort": http,
                    "tlsPort": free_port(),
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    logs = open(root / "pebble.log", "wb")  # noqa: SIM115  # closed with the processes
    dns_server = subprocess.Popen(
        [
            challtestsrv,
            "-dns01",
            f"127.0.0.1:{dns}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            f"127.0.0.1:{dns_management}",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ],
        stdout=logs,
        stderr=subprocess.STDOUT,
    )
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
    }
    server = subprocess.Popen(
        [
            pebble,
            "-config",
            str(root / "pebble.json"),
            "-dnsserver",
            f"127.0.0.1:{dns}",
            "-strict=false",
        ],
        stdout=logs,
        stderr=subprocess.STDOUT,
        env=env,
    )
    logs.close()
    started = Pebble(
        f"https://127.0.0.1:{acme}/dir",
        ca_file,
        http,
        f"127.0.0.1:{dns_management}",
        [server, dns_server],
        f"127.0.0.1:{management}",
    )
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(started.directory, context=context, timeout=2).read()
            return started
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                started.stop()
                raise AssertionError((root / "pebble.log").read_text()) from None
            time.sleep(0.2)


@dataclass
class Certbot:
    """certbot with its own config, work and logs dirs, pointed at pebble."""

    pebble: Pebble
    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "letsencrypt.log"

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [
            require("certbot"),
            *arguments,
            "--config-dir",
            str(self.config_dir),
            "--work-dir",
            str(self.root / "work"),
            "--logs-dir",
            str(self.root / "logs"),
            "--non-interactive",
            "--server",
            self.pebble.directory,
            "--max-log-backups",
            "0",
        ]
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(self.pebble.ca_file)}
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)

    def issue(self, *names: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
        domains = [arg for name in names for arg in ("-d", name)]
        return self.run(
            "certonly",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "--http-01-port",
            str(port or self.pebble.http_port),
            "--agree-tos",
            "--register-unsafely-without-email",
            *domains,
        )

    def fail_challenge(self, name: str) -> subprocess.CompletedProcess[str]:
        """An issuance whose http-01 challenge fails, and fails for that reason only.

        certbot's standalone server listens on a free port of its own while pebble
        validates on `http_port`, where nothing answers: connection refused. (A fixed
        port such as 1 is shared by every test run on the machine; while another certbot
        holds it, this one cannot bind, exits 1 and never tries a challenge.)
        """
        result = self.issue(name, port=free_port())
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        challenged = f"Domain: {name}" in output and "Type:   connection" in output
        assert challenged, (
            f"certbot was to fail {name}'s challenge, and failed otherwise:\n{output}"
        )
        return result

    def renew(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--cert-name",
            name,
            "--http-01-port",
            str(self.pebble.http_port),
        )


@dataclass
class Dehydrated:
    """dehydrated with its own BASEDIR, answering dns-01 through challtestsrv."""

    pebble: Pebble
    root: Path
    hook_cases: str = ""
    """Extra `case` arms for the hook script (e.g. invalid_challenge)."""

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        management = self.pebble.dns_management
        hook = self.root / "hook.sh"
        hook.write_text(
            "#!/bin/sh\n"
            'case "$1" in\n'
            "  deploy_challenge) curl -s -X POST -d "
            f'\'{{"host":"_acme-challenge.\'"$2"\'.","value":"\'"$4"\'"}}\' '
            f"http://{management}/set-txt ;;\n"
            # challtestsrv keeps every TXT value it is given: without clearing them, the
            # session's issuances of one name grow its answer past a DNS message
            # ("dns: overflowing header size") and a later dns-01 challenge fails.
            "  clean_challenge) curl -s -X POST -d "
            f'\'{{"host":"_acme-challenge.\'"$2"\'."}}\' '
            f"http://{management}/clear-txt ;;\n"
            f"{self.hook_cases}"
            "  *) ;;\nesac\nexit 0\n"
        )
        hook.chmod(0o755)
        (self.root / "wellknown").mkdir(exist_ok=True)
        (self.root / "config").write_text(
            f'CA="{self.pebble.directory}"\nBASEDIR="{self.root}"\nCHALLENGETYPE="dns-01"\n'
            f'HOOK="{hook}"\nWELLKNOWN="{self.root / "wellknown"}"\n'
        )
        registered = self.run("--register", "--accept-terms")
        assert registered.returncode == 0, registered.stderr

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CURL_CA_BUNDLE": str(self.pebble.ca_file)}
        return subprocess.run(
            [require("dehydrated"), "-f", str(self.root / "config"), *arguments],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )

    def issue(self, *names: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return self.run("-c", *[arg for name in names for arg in ("-d", name)], *extra)
