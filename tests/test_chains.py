"""Broken chains, stored in fullchain.pem files and served by `openssl s_server -cert_chain`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from lacme_watch.detection.chains import Anchors, covers, signs, structure

from .conftest import CliRunner, data, days, kinds, read_events, watch, write_config
from .hierarchy import Issued, OpenSslServer, certificate, pem

NOW = datetime.now(UTC).replace(microsecond=0)
HOST = "leaf.example.test"


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    """root -> intermediate -> leaf, and the intermediates' other certificates."""
    root = certificate(
        "Test Root X1", issuer=None, not_before=NOW - days(3000), not_after=NOW + days(3000)
    )
    legacy = certificate(
        "Legacy Root", issuer=None, not_before=NOW - days(4000), not_after=NOW + days(2000)
    )
    inter = certificate(
        "Test Intermediate R1", issuer=root, not_before=NOW - days(300), not_after=NOW + days(800)
    )
    key = inter.key

    def again(not_before: datetime, not_after: datetime, issuer: Issued = root) -> Issued:
        return certificate(
            "Test Intermediate R1",
            issuer=issuer,
            key=key,
            not_before=not_before,
            not_after=not_after,
        )

    return {
        "root": root,
        "inter": inter,
        "leaf": certificate(
            HOST,
            issuer=inter,
            ca=False,
            names=(HOST,),
            not_before=NOW - days(10),
            not_after=NOW + days(80),
        ),
        # Root X1 cross-signed by an older root, as ISRG Root X1 was by DST Root CA X3.
        "cross": certificate(
            "Test Root X1",
            issuer=legacy,
            key=root.key,
            not_before=NOW - days(900),
            not_after=NOW + days(1500),
        ),
        "expired": again(NOW - days(1000), NOW - days(1)),
        "expiring": again(NOW - days(700), NOW + days(20)),
        "superseded": again(NOW - days(10), NOW + days(60)),
        "other": certificate(
            "Test Intermediate R2",
            issuer=root,
            not_before=NOW - days(300),
            not_after=NOW + days(800),
        ),
        # The leaf's issuer name, another key: only the signature tells them apart.
        "impostor": certificate(
            "Test Intermediate R1",
            issuer=root,
            not_before=NOW - days(300),
            not_after=NOW + days(800),
        ),
    }


VARIANTS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "good": (["inter"], ()),
    "good-cross": (["inter", "cross"], ()),
    "good-with-root": (["inter", "root"], ()),
    "incomplete": ([], ("incomplete",)),
    "misordered": (["root", "inter"], ("misordered",)),
    "wrong-issuer": (["other"], ("wrong_issuer",)),
    "impostor": (["impostor"], ("wrong_issuer",)),
    "expired": (["expired"], ("expired",)),
    # 20 days left, and the leaf has 80: both are true.
    "expiring": (["expiring"], ("expiring", "intermediate_expires_before_leaf")),
    "superseded": (["superseded"], ("intermediate_expires_before_leaf",)),
}


@pytest.fixture
def servers(pki: dict[str, Issued], tmp_path: Path) -> Iterator[dict[str, OpenSslServer]]:
    started: dict[str, OpenSslServer] = {}
    try:
        for variant, (chain, _) in VARIANTS.items():
            started[variant] = OpenSslServer(
                tmp_path / "served" / variant, pki["leaf"], [pki[n].certificate for n in chain]
            )
        yield started
    finally:
        for server in started.values():
            server.stop()


def test_each_broken_chain_is_reported_once_stored_and_served(
    cli: CliRunner, pki: dict[str, Issued], servers: dict[str, OpenSslServer], tmp_path: Path
) -> None:
    stored = tmp_path / "stored"
    for variant, (chain, _) in VARIANTS.items():
        (stored / variant).mkdir(parents=True)
        bundle = pem(pki["leaf"].certificate, *(pki[n].certificate for n in chain))
        (stored / variant / "fullchain.pem").write_bytes(bundle)
    (tmp_path / "trust.pem").write_bytes(pki["root"].pem)
    endpoints = ", ".join(f"'127.0.0.1:{s.port}/{HOST}'" for s in servers.values())
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{tmp_path / 'trust.pem'}]\n"
        f"expiry: {{chain: leaf}}\n"
        f"stores:\n  - type: pem\n    paths: ['{stored}/*/fullchain.pem']\n"
        f"  - type: tls\n    endpoints: [{endpoints}]\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    code, events = watch(cli, config, log, "--now", NOW.isoformat())

    assert code == 0
    assert set(kinds(events)) == {"chain_problem"}
    found = sorted((str(data(e)["location"]), str(data(e)["reason"])) for e in events)
    port_of = {f"127.0.0.1:{s.port}": name for name, s in servers.items()}
    where = sorted(
        (port_of.get(location) or Path(location).parent.name, reason) for location, reason in found
    )
    expected = sorted(
        (variant, reason)
        for variant, (_, reasons) in VARIANTS.items()
        for reason in reasons
        for _ in ("stored", "served")
    )
    assert where == expected
    expired = next(e for e in events if data(e)["reason"] == "expired")
    assert data(expired)["domain"] == HOST
    assert data(expired)["certificate_subject"] == "CN=Test Intermediate R1"
    assert data(expired)["certificate_not_after"] == pki[
        "expired"
    ].certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    fingerprint = pki["expired"].certificate.fingerprint(hashes.SHA256()).hex()
    assert data(expired)["certificate_fingerprint"] == fingerprint
    expiring = next(e for e in events if data(e)["reason"] == "expiring")
    assert data(expiring)["threshold"] == "30d"

    # Nothing changed: nothing is repeated.
    assert watch(cli, config, log, "--now", NOW.isoformat()) == (0, [])

    # The misordered bundle is fixed: silence. Broken again: it is a new chain, reported again.
    fixed = stored / "misordered" / "fullchain.pem"
    fixed.write_bytes(pem(pki["leaf"].certificate, pki["inter"].certificate))
    assert watch(cli, config, log, "--now", NOW.isoformat()) == (0, [])
    fixed.write_bytes(pem(pki["leaf"].certificate, pki["other"].certificate))
    code, events = watch(cli, config, log, "--now", NOW.isoformat())
    assert [(data(e)["location"], data(e)["reason"]) for e in events] == [
        (str(fixed), "wrong_issuer")
    ]


def test_an_endpoint_serving_another_name_is_a_deployment_mismatch(
    cli: CliRunner, pki: dict[str, Issued], servers: dict[str, OpenSslServer], tmp_path: Path
) -> None:
    (tmp_path / "trust.pem").write_bytes(pki["root"].pem)
    port = servers["good"].port
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{tmp_path / 'trust.pem'}]\n"
        f"stores:\n  - type: tls\n    endpoints: ['127.0.0.1:{port}/www.other.test']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    code, events = watch(cli, config, log, "--now", NOW.isoformat())

    assert (code, kinds(events)) == (0, ["deployment_mismatch"])
    mismatch = data(events[0])
    assert (mismatch["requested_name"], mismatch["domains"]) == ("www.other.test", [HOST])
    assert events[0]["subject"] == "www.other.test"
    assert watch(cli, config, log, "--now", NOW.isoformat()) == (0, [])
    assert read_events(log)[0]["type"] == "lacme.deployment_mismatch"


def test_no_trust_anchor_makes_even_a_good_chain_incomplete(pki: dict[str, Issued]) -> None:
    chain = [pki["leaf"].certificate, pki["inter"].certificate]
    assert structure(chain, Anchors([pki["root"].certificate])) == []
    assert [f.reason for f in structure(chain, Anchors([]))] == ["incomplete"]


@pytest.mark.parametrize(
    ("names", "host", "expected"),
    [
        pytest.param(["a.example"], "a.example", True, id="exact"),
        pytest.param(["A.Example."], "a.example", True, id="case-and-dot"),
        pytest.param(["*.example"], "a.example", True, id="wildcard"),
        pytest.param(["*.example"], "b.a.example", False, id="wildcard-one-label"),
        pytest.param(["*.example"], "example", False, id="wildcard-not-apex"),
        pytest.param(["a.example"], "b.example", False, id="other"),
    ],
)
def test_names_cover_a_host(names: list[str], host: str, expected: bool) -> None:
    assert covers(names, host) is expected


def test_status_names_what_is_wrong_with_each_chain(
    cli: CliRunner, pki: dict[str, Issued], servers: dict[str, OpenSslServer], tmp_path: Path
) -> None:
    (tmp_path / "trust.pem").write_bytes(pki["root"].pem)
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{tmp_path / 'trust.pem'}]\n"
        "stores:\n  - type: tls\n    endpoints:"
        f" ['127.0.0.1:{servers['misordered'].port}/{HOST}',"
        f" '127.0.0.1:{servers['good'].port}/www.other.test']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )
    cli("--config", str(config), "watch", "--once")

    result = cli("--config", str(config), "status", "--json")

    rows = {row["lineage"]: row["findings"] for row in result.json()["certificates"]}  # type: ignore[index]
    assert rows == {
        f"tls:127.0.0.1:{servers['misordered'].port}": ["chain misordered"],
        f"tls:127.0.0.1:{servers['good'].port}": ["not www.other.test"],
    }


def test_an_unchanged_chain_is_judged_again_when_time_crosses_its_next_threshold(
    cli: CliRunner, pki: dict[str, Issued], tmp_path: Path
) -> None:
    """Last pass's verdict on an unchanged fullchain.pem is kept without decoding its
    facts only until its intermediate's next threshold: then it speaks again."""
    stored = tmp_path / "stored" / "site"
    stored.mkdir(parents=True)
    bundle = pem(pki["leaf"].certificate, pki["expiring"].certificate)
    (stored / "fullchain.pem").write_bytes(bundle)
    (tmp_path / "trust.pem").write_bytes(pki["root"].pem)
    log = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        f"trust: [{tmp_path / 'trust.pem'}]\n"
        f"expiry: {{chain: leaf}}\n"
        f"stores:\n  - type: pem\n    paths: ['{stored}/fullchain.pem']\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n",
    )

    def reasons(at: datetime) -> list[tuple[str, object, object]]:
        code, events = watch(cli, config, log, "--now", at.isoformat())
        assert code == 0
        return sorted(
            (str(e["type"]).removeprefix("lacme."), data(e).get("reason"), data(e).get("threshold"))
            for e in events
        )

    assert reasons(NOW) == [
        ("chain_problem", "expiring", "30d"),
        ("chain_problem", "intermediate_expires_before_leaf", None),
    ]
    assert reasons(NOW + days(1)) == []  # 19 days left: no threshold crossed since
    assert reasons(NOW + days(7)) == [("chain_problem", "expiring", "14d")]  # 13 days left
    assert reasons(NOW + days(8)) == []
    assert reasons(NOW + days(21)) == [("chain_problem", "expired", None)]


_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_Hash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def _signed(
    subject: str, issuer_name: str, key: _SigningKey, algorithm: _Hash | None, *, own: _SigningKey
) -> x509.Certificate:
    """A CA certificate for `own`'s key, naming `issuer_name` as its issuer, signed by `key`."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - days(1))
        .not_valid_after(NOW + days(90))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, algorithm)
    )


def _issuer(name: str, key: _SigningKey) -> x509.Certificate:
    edwards = isinstance(key, ed25519.Ed25519PrivateKey)
    return _signed(name, name, key, None if edwards else hashes.SHA256(), own=key)


def _leaf(issuer_name: str, key: _SigningKey, algorithm: _Hash | None) -> x509.Certificate:
    return _signed("leaf", issuer_name, key, algorithm, own=ec.generate_private_key(ec.SECP256R1()))


def _verified_by_cryptography(issuer: x509.Certificate, certificate: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_a_link_is_verified_as_cryptography_verifies_it() -> None:
    """chains.signs() checks an ECDSA link itself (one key loaded per CA, the DER read
    once): every verdict is still the one verify_directly_issued_by gives, for every
    key type, hash, a name that differs and a key that did not sign."""
    p256, p384 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    other = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    edwards = ed25519.Ed25519PrivateKey.generate()
    issuers = {
        "p256": _issuer("CA", p256),
        "p384": _issuer("CA", p384),
        "rsa": _issuer("CA", rsa_key),
        "ed25519": _issuer("CA", edwards),
    }
    leaves = {
        "p256-sha256": _leaf("CA", p256, hashes.SHA256()),
        "p256-sha384": _leaf("CA", p256, hashes.SHA384()),
        "p256-sha512": _leaf("CA", p256, hashes.SHA512()),
        "p384-sha384": _leaf("CA", p384, hashes.SHA384()),
        "p256-other-name": _leaf("Another CA", p256, hashes.SHA256()),
        "other-key": _leaf("CA", other, hashes.SHA256()),
        "rsa": _leaf("CA", rsa_key, hashes.SHA256()),
        "ed25519": _leaf("CA", edwards, None),
    }
    tampered = bytearray(leaves["p256-sha256"].public_bytes(Encoding.DER))
    tampered[-3] ^= 0x01  # inside the signature's INTEGER s: still DER
    leaves["tampered"] = x509.load_der_x509_certificate(bytes(tampered))
    sha256, sha384 = bytes.fromhex("2a8648ce3d040302"), bytes.fromhex("2a8648ce3d040303")
    der = leaves["p256-sha384"].public_bytes(Encoding.DER)
    at = der.rindex(sha384)  # the outer signatureAlgorithm: the inner one now differs
    mismatched = der[:at] + sha256 + der[at + len(sha256) :]
    leaves["mismatched"] = x509.load_der_x509_certificate(mismatched)
    verdicts = {}
    for issuer_name, issuer in issuers.items():
        for leaf_name, leaf in leaves.items():
            expected = _verified_by_cryptography(issuer, leaf)
            der = leaf.public_bytes(Encoding.DER)
            assert signs(issuer, leaf, remember=False, der=der) is expected
            assert signs(issuer, leaf, remember=False) is expected
            assert signs(issuer, leaf) is expected
            anchored = [] if expected else ["incomplete"]  # the leaf alone, its CA trusted
            assert [f.reason for f in structure([leaf], Anchors([issuer]), [der])] == anchored
            assert [f.reason for f in structure([leaf], Anchors([issuer]))] == anchored
            verdicts[issuer_name, leaf_name] = expected
    assert {pair for pair, signed in verdicts.items() if signed} == {
        ("p256", "p256-sha256"),
        ("p256", "p256-sha384"),
        ("p256", "p256-sha512"),
        ("p384", "p384-sha384"),
        ("rsa", "rsa"),
        ("ed25519", "ed25519"),
    }
