"""How much the file-identity cache saves on a large store.

Builds a lacme-layout store of N certificates, then times, side by side in one run:
  cold      a pass with an empty state database (every file parsed, baseline written)
  warm      a pass over the unchanged store (every file reused from the cache)
  churn     a pass after 1% of the certificates were renewed
Each is repeated; medians are reported with the cold/warm ratio. Shared machines are
noisy: compare the ratio, not the absolute numbers, between runs.

    python benchmarks/rescan.py --certs 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lacme_watch.config import Config
from lacme_watch.delivery import SinkRoute
from lacme_watch.passes import run_pass
from lacme_watch.statedb import StateStore
from lacme_watch.stores.lacme import LacmeStore
from lacme_watch.testing import RecordingSink

NOW = datetime.now(UTC).replace(microsecond=0)


def build_store(base: Path, count: int) -> list[Path]:
    """N certificates in lacme's layout, all signed by one throw-away key (fast to make)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    directories = []
    for index in range(count):
        name = f"host{index}.bench.example"
        directories.append(
            write_cert(base, name, key, issuer, NOW + timedelta(days=30 + index % 60))
        )
    return directories


def write_cert(
    base: Path, name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, not_after: datetime
) -> Path:
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=90))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = base / "certs" / name
    directory.mkdir(parents=True, exist_ok=True)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(pem)
    (directory / "fullchain.pem").write_bytes(pem)
    meta = {
        "domain": name,
        "domains": [name],
        "issued_at": NOW.isoformat(),
        "expires_at": not_after.isoformat(),
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


def timed_pass(config: Config) -> tuple[float, int, int]:
    with StateStore(config.state_dir) as store:
        started = time.perf_counter()
        report = run_pass(config, store, NOW)
        return time.perf_counter() - started, report.files_parsed, report.files_reused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lacme-watch-bench-"))
    try:
        started = time.perf_counter()
        directories = build_store(root / "store", args.certs)
        print(f"built {args.certs} certificates in {time.perf_counter() - started:.1f}s")
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA 2")])
        results: dict[str, list[float]] = {"cold": [], "warm": [], "churn": []}
        counts: dict[str, tuple[int, int]] = {}
        for repeat in range(args.repeats):
            config = Config(
                path=None,
                state_dir=root / f"state-{repeat}",
                host="bench",
                stores=(LacmeStore(str(root / "store")),),
                authorities=(),
                sinks=(SinkRoute(sink=RecordingSink("bench")),),
            )
            for label in ("cold", "warm"):
                seconds, parsed, reused = timed_pass(config)
                results[label].append(seconds)
                counts[label] = (parsed, reused)
            for directory in directories[repeat::100]:  # renew 1%
                write_cert(root / "store", directory.name, key, issuer, NOW + timedelta(days=90))
            seconds, parsed, reused = timed_pass(config)
            results["churn"].append(seconds)
            counts["churn"] = (parsed, reused)
        print(f"{'pass':<6} {'median s':>9} {'parsed':>8} {'reused':>8}")
        for label, samples in results.items():
            parsed, reused = counts[label]
            print(f"{label:<6} {statistics.median(samples):>9.2f} {parsed:>8} {reused:>8}")
        ratio = statistics.median(results["cold"]) / statistics.median(results["warm"])
        print(f"cold/warm ratio: {ratio:.1f}x")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
