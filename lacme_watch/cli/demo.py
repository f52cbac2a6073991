"""`lacme-watch demo`: a sandbox that shows every event kind in seconds, offline.

It writes a lacme FileStore (the exact on-disk layout lacme 1.2 writes: certs/<key>/
cert.pem, fullchain.pem, key.pem, meta.json; ca/root/) with certificates made by
`cryptography`, writes a configuration file for it, and runs real passes over it
with simulated time, changing the store between passes as lacme would.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..ari.certid import cert_id
from ..config import Config, load
from ..dispatch.ingest import event_from_arguments, record, record_reset
from ..errors import ConfigError
from ..events.cloudevents import Envelope, format_time, to_json
from ..run.passes import run_pass
from ..statedb import StateStore
from ..statedb.files import DATABASE_NAME
from .loopback import RenewalInfoServer, TlsServer

_Key = ec.EllipticCurvePrivateKey


class _Issuer:
    """A signing certificate and key, held in memory by the demo only."""

    def __init__(self, cn: str, not_before: datetime, days: int) -> None:
        self.key: _Key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, names: list[str], not_before: datetime, days: int, *, client: bool = False
    ) -> x509.Certificate:
        return self.issue_with_key(names, not_before, days, client=client)[0]

    def issue_with_key(
        self, names: list[str], not_before: datetime, days: int, *, client: bool = False
    ) -> tuple[x509.Certificate, _Key]:
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        key = ec.generate_private_key(ec.SECP256R1())
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        ), key


def _window(start: datetime, end: datetime, why: str | None = None) -> dict[str, object]:
    """A renewalInfo body (RFC 9773 §4.2)."""
    window = {"start": format_time(start), "end": format_time(end)}
    return (
        {"suggestedWindow": window, "explanationURL": why} if why else {"suggestedWindow": window}
    )


def _usual_window(certificate: x509.Certificate) -> dict[str, object]:
    """The window a CA usually suggests: a day either side of two thirds of the lifetime."""
    issued, expires = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    ideal = issued + (expires - issued) * 2 / 3
    return _window(ideal - timedelta(days=1), ideal + timedelta(days=1))


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _save(base: Path, certificate: x509.Certificate, chain: x509.Certificate) -> None:
    """Write one certificate as lacme's FileStore.save_cert does (meta.json last)."""
    names = [
        str(n)
        for n in certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    ]
    directory = base / "certs" / names[0]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(_pem(certificate))
    (directory / "fullchain.pem").write_bytes(_pem(certificate) + _pem(chain))
    key = directory / "key.pem"
    key.write_bytes(b"")  # the demo keeps no keys; lacme's CA side leaves 0-byte ones too
    key.chmod(0o600)
    meta = {
        "domain": names[0],
        "domains": names,
        "issued_at": datetime.now(UTC).isoformat(),
        "expires_at": certificate.not_valid_after_utc.isoformat(),
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2))


def build_sandbox(
    root: Path, now: datetime, port: int, acme_ca: RenewalInfoServer | None = None
) -> tuple[Path, _Issuer, _Issuer]:
    """The lacme store, a plain PEM folder, an easy-rsa PKI and the configuration file;
    with `acme_ca`, the lacme store asks it for renewal information (ARI).

    Returns the configuration's path and the two issuers (the ACME intermediate and the
    internal CA), so later steps can issue from them.
    """
    store = root / "lacme"
    acme = _Issuer("Demo ACME Intermediate R1", now - timedelta(days=400), 1000)
    ca = _Issuer("Demo Internal CA", now - timedelta(days=30), 3650)
    (store / "ca" / "root").mkdir(parents=True)
    (store / "ca" / "root" / "cert.pem").write_bytes(_pem(ca.certificate))
    for name, age in (("shop.example.com", 85), ("api.example.com", 70), ("www.example.com", 30)):
        leaf = acme.issue([name, f"static.{name}"], now - timedelta(days=age), 90)
        _save(store, leaf, acme.certificate)
        if acme_ca is not None:
            acme_ca.answers[cert_id(leaf) or ""] = _usual_window(leaf)
    ari = f'\n    ari: {{directory: "{acme_ca.directory}"}}' if acme_ca else ""
    _save(store, ca.issue(["grafana.internal"], now - timedelta(days=5), 365), ca.certificate)
    extra = root / "pem"
    extra.mkdir()
    (extra / "legacy.der").write_bytes(
        acme.issue(["legacy.example.net"], now - timedelta(days=10), 90).public_bytes(
            serialization.Encoding.DER
        )
    )
    (extra / "truncated.pem").write_bytes(_pem(ca.certificate)[:300])
    (root / "trust.pem").write_bytes(_pem(acme.certificate))
    _easyrsa_pki(root / "pki", root / "openvpn-crl.pem", now)
    config = root / "demo.yaml"
    config.write_text(
        f"""# Written by `lacme-watch demo`. Try: lacme-watch --config {config} status
state_dir: {root / "state"}
trust: ["{root / "trust.pem"}"]   # the roots clients trust, besides the system's
stores:
  - type: lacme
    path: {store}{ari}
  - type: pem
    paths: ["{extra}/*"]
  - type: tls
    endpoints: ["127.0.0.1:{port}/shop.example.com", "localhost:{port}/www.example.com"]
authorities:
  - type: lacme
    path: {store}
    name: root
  - type: easyrsa
    path: {root / "pki"}
    deployed: ["{root / "openvpn-crl.pem"}"]   # the copy OpenVPN's crl-verify reads
sinks:
  - type: log
    format: json
    path: {root / "events.jsonl"}
"""
    )
    return config, acme, ca


def _easyrsa_pki(pki: Path, deployed: Path, now: datetime) -> None:
    """An easy-rsa PKI as `easyrsa build-ca`, `build-client-full` and `gen-crl` leave it,
    and an old copy of its CRL where OpenVPN reads it (regenerated, never copied)."""
    vpn = _Issuer("Demo VPN CA", now - timedelta(days=200), 3650)
    (pki / "certs_by_serial").mkdir(parents=True)
    (pki / "ca.crt").write_bytes(_pem(vpn.certificate))
    rows = []
    for name in ("vpn-alice", "vpn-bob"):
        leaf = vpn.issue([name], now - timedelta(days=100), 825, client=True)
        serial = f"{leaf.serial_number:032X}"
        (pki / "certs_by_serial" / f"{serial}.pem").write_bytes(_pem(leaf))
        expires = leaf.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        rows.append(f"V\t{expires}\t\t{serial}\tunknown\t/CN={name}\n")
    (pki / "index.txt").write_text("".join(rows))
    (pki / "crl.pem").write_bytes(_crl(vpn, 2, now - timedelta(days=1), 180))
    deployed.write_bytes(_crl(vpn, 1, now - timedelta(days=170), 180))


def _crl(issuer: _Issuer, number: int, this_update: datetime, days: int) -> bytes:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


def _revoke(pki: Path, name: str, when: datetime) -> None:
    """What `easyrsa revoke NAME keyCompromise` does to index.txt."""
    index = pki / "index.txt"
    lines = []
    for line in index.read_text().splitlines(keepends=True):
        fields = line.split("\t")
        if fields[5].strip() == f"/CN={name}":
            fields[0], fields[2] = "R", when.strftime("%y%m%d%H%M%SZ") + ",keyCompromise"
        lines.append("\t".join(fields))
    index.write_text("".join(lines))


def run_demo(console: Console, keep: Path | None = None) -> int:
    """Build the sandbox, run seven passes over simulated time, show what each one emitted."""
    if not console.is_terminal:  # piped or captured: full lines, not 80 columns
        console = Console(file=console.file, width=200, highlight=False, soft_wrap=True)
    if keep is not None:
        _claim(keep)
        return _run(console, keep)
    with tempfile.TemporaryDirectory(prefix="lacme-watch-demo-") as directory:
        return _run(console, Path(directory))


def _claim(directory: Path) -> None:
    """`--keep DIR`: a new directory, or an empty one; never one holding anything."""
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        if not directory.is_dir():
            raise ConfigError("demo --keep", f"{directory} exists and is not a directory") from None
        if any(directory.iterdir()):
            raise ConfigError(
                "demo --keep",
                f"{directory} is not empty (a sandbox from an earlier run?);"
                " give a new or empty directory, or remove it first",
            ) from None
    except OSError as exc:
        raise ConfigError("demo --keep", f"cannot create {directory}: {exc.strerror}") from exc


def _run(console: Console, root: Path) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    shop_server_ca = _Issuer("Demo ACME Intermediate R0", now - timedelta(days=400), 1000)
    served, key = shop_server_ca.issue_with_key(
        ["shop.example.com", "static.shop.example.com"], now - timedelta(days=85), 90
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    server = TlsServer(_pem(served), key_pem)
    acme_ca = RenewalInfoServer()
    try:
        return _passes(console, root, now, server.port, acme_ca)
    finally:
        server.stop()
        acme_ca.stop()


def _passes(
    console: Console, root: Path, now: datetime, port: int, acme_ca: RenewalInfoServer
) -> int:
    config_path, acme, ca = build_sandbox(root, now, port, acme_ca)
    config = load(config_path)
    store_dir = root / "lacme"
    console.print(f"[bold]lacme-watch demo[/] — sandbox in {escape(str(root))}\n")
    with StateStore(config.state_dir) as state:

        def scan(title: str, at: datetime, settings: Config = config) -> None:
            report = run_pass(settings, state, at)
            _show(console, title, at, report.envelopes)

        scan("Pass 1: the first pass is a quiet baseline, but reports what holds now", now)

        shop = acme.issue(
            ["shop.example.com", "static.shop.example.com", "cdn.shop.example.com"], now, 90
        )
        blog = acme.issue(["blog.example.com"], now, 90)
        for issued in (shop, blog):  # the CA knows what it issued: no 404 in `status` later
            acme_ca.answers[cert_id(issued) or ""] = _usual_window(issued)
        _save(store_dir, shop, acme.certificate)  # one more name: certificate_changed says so
        _save(store_dir, blog, acme.certificate)
        _save(store_dir, ca.issue(["ops-laptop"], now, 365, client=True), ca.certificate)
        scan(
            "Pass 2: shop renewed on disk (one name more), its server not reloaded; blog issued;"
            " the CA signed a client certificate",
            now + timedelta(hours=1),
        )

        os.remove(root / "pem" / "legacy.der")
        _revoke(root / "pki", "vpn-bob", now + timedelta(days=9))
        www = x509.load_pem_x509_certificate(
            (store_dir / "certs" / "www.example.com" / "cert.pem").read_bytes()
        )
        acme_ca.answers[cert_id(www) or ""] = _window(
            now + timedelta(days=9, hours=23),
            now + timedelta(days=10, hours=5),
            "https://acme.example/incident/2026-12-mass-revocation",
        )
        scan(
            "Pass 3: ten days later; legacy.der was deleted, the VPN CA revoked bob,"
            " the ACME CA asks for www to be renewed early (ARI)",
            now + timedelta(days=10),
        )

        scan("Pass 4: the same day again: nothing is repeated", now + timedelta(days=10, hours=1))

        later = now + timedelta(days=10, hours=2)
        hooked = [
            event_from_arguments(
                "challenge_failed",
                {
                    "domain": "new.example.com",
                    "challenge_type": "http-01",
                    "error": "Invalid response from http://new.example.com/"
                    ".well-known/acme-challenge/x: 404",
                },
            ),
            event_from_arguments(
                "rate_limit_warning",
                {
                    "registered_domain": "example.com",
                    "current_count": "45",
                    "limit": "50",
                    "window_hours": "168",
                },
            ),
            event_from_arguments(  # the renewal sweep's one-line hook, run ten days ago
                "renewal_agent_run",
                {"store": f"lacme:{store_dir}", "ran_at": now.isoformat()},
            ),
        ]
        envelopes, _ = record(config, state, hooked, later)
        _show(console, "Pass 5: an ACME client's hook ran `lacme-watch emit ...`", later, envelopes)

        scan(
            "Pass 6: with `heartbeat: true`, every pass reports that the watcher is alive;"
            " the renewal sweep has not reported a run for ten days",
            now + timedelta(days=10, hours=3),
            replace(config, heartbeat=True),
        )
    # A second state_dir whose database a failing disk emptied (the sandbox's own is kept,
    # so `events` still shows the whole story); its events go to no sink.
    damaged = replace(config, state_dir=root / "damaged-state", sinks=())
    damaged.state_dir.mkdir(mode=0o700)
    (damaged.state_dir / DATABASE_NAME).write_bytes(b"")
    with StateStore(damaged.state_dir) as state:
        at = now + timedelta(days=10, hours=4)
        reset = record_reset(damaged, state, at)
        _show(
            console,
            "Pass 7: a state database found empty is kept aside and replaced, loudly",
            at,
            [reset] if reset else [],
        )
    lines = (root / "events.jsonl").read_text().splitlines()
    console.print(f"The log sink wrote {len(lines)} CloudEvents, one per line. The first:")
    console.print_json(lines[0])
    console.print(
        "\nNext: point lacme-watch at your own store — see config.example.yaml and the README."
    )
    return 0


def _seen_in(store: str | None) -> str:
    """Where an event comes from, in words: `lacme store`, `TLS endpoint 127.0.0.1:8443`."""
    if store is None:
        return "-"
    kind, _, where = store.partition(":")
    if kind == "tls":
        return f"TLS endpoint {where}"
    if kind == "external":
        return "emit (a hook)"
    label = {"lacme-ca": "lacme CA", "easyrsa": "easy-rsa CA", "pem": "PEM files"}.get(kind)
    return label or f"{kind} store"


def _show(console: Console, title: str, at: datetime, envelopes: list[Envelope]) -> None:
    table = Table(title=f"{title}\n[dim]{at:%Y-%m-%d %H:%M} UTC[/]", title_justify="left")
    table.add_column("event", style="bold")
    table.add_column("seen in")
    table.add_column("what happened")
    for envelope in envelopes:
        table.add_row(
            envelope.event.kind,
            escape(_seen_in(envelope.event.store)),
            escape(envelope.event.summary().partition(": ")[2]),
        )
    if not envelopes:
        table.add_row("[dim](none)[/]", "", "")
    console.print(table)
    console.print()


__all__ = ["build_sandbox", "run_demo", "to_json"]
