"""The one benchmark: lacme-watch as a whole process against the simplest loops that do
the same I/O, side by side, interleaved, in one run.

Corpora (cached under --cache, built once with one CA key, in parallel):
  flat     N PEM files in one directory (a `pem` store with a glob)
  lacme    a lacme FileStore: certs/<key>/{cert.pem,fullchain.pem,meta.json}, the
           fullchain the leaf and its CA, as lacme's CertificateAuthority writes it
  easyrsa  an easy-rsa pki/: ca.crt, index.txt, issued/<name>.crt
Floors (each a `python -c` of the simplest possible loop):
  import   what a one-certificate check imports (cryptography.x509, sqlite3, json)
  walk     os.scandir + lstat of every file the store holds
  parse    read + parse + SANs + SHA-256 of every certificate file
lacme-watch (`watch --once`, fresh state each round):
  first    the first pass          rescan   the same store, unchanged
  churn    after 1% were renewed   events   a pass emitting ~N/2 certificate_expiring
  one      one certificate, cold (fresh state), and again as cron runs it (state kept)
  tls      200 loopback endpoints, 20 never answering
  peer     (--peer) ssl-cert-check -d over 1,000 files, against the first pass over them

lacme-watch's bytecode is compiled first, as `pip install` does: a checkout under
PYTHONDONTWRITEBYTECODE would otherwise compile every module in every measured run.

Every figure is the median of --rounds (min-max beside it); peak RSS is the child's
own (os.wait4). Shared machines are noisy: quote the ratios, which come from the
same rounds.

    python benchmarks/bench.py --sizes 1000,10000 --rounds 3
    python benchmarks/bench.py --sizes 100000 --layouts flat,lacme --rounds 3
"""

from __future__ import annotations

import argparse
import compileall
import functools
import json
import multiprocessing
import os
import selectors
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime(2026, 6, 1, tzinfo=UTC)
"""Every corpus is dated against this instant and every pass runs at it (`--now`)."""
CORPUS_VERSION = "3"
LAYOUTS = ("flat", "lacme", "easyrsa")
CHURN = 100  # one in CHURN certificates is renewed for the `churn` pass

IMPORT_FLOOR = "import cryptography.x509, cryptography.hazmat.primitives.hashes, sqlite3, json"

WALK_FLOOR = """
import os, sys
def walk(path):
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            walk(entry.path)
        else:
            os.lstat(entry.path)
walk(sys.argv[1])
"""

PARSE_FLOOR = """
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes
with open(sys.argv[1]) as listing:
    paths = listing.read().split()
for path in paths:
    with open(path, "rb") as stream:
        certificate = x509.load_pem_x509_certificate(stream.read())
    certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    certificate.not_valid_after_utc
    certificate.fingerprint(hashes.SHA256())
"""


# -- corpora -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Corpus:
    layout: str
    count: int
    root: Path

    @property
    def store(self) -> Path:
        """What the floors walk: the directory the source scans."""
        return {"flat": self.root / "certs", "lacme": self.root, "easyrsa": self.root / "pki"}[
            self.layout
        ]

    @property
    def listing(self) -> Path:
        """Every certificate file a pass parses (the lacme store parses fullchain.pem)."""
        return self.root / "certificates.txt"

    @property
    def renewed(self) -> Path:
        """Replacements for the 1% renewed in the churn pass: (target, replacement) lines."""
        return self.root / "renewed.txt"

    def config(self, state: Path, log: Path) -> str:
        stores = {
            "flat": f"stores:\n  - type: pem\n    paths: ['{self.store}/*.pem']\n",
            "lacme": f"stores:\n  - type: lacme\n    path: {self.store}\n",
            "easyrsa": f"authorities:\n  - type: easyrsa\n    path: {self.store}\n",
        }[self.layout]
        return (
            f"state_dir: {state}\nhost: bench\n{stores}"
            f"sinks:\n  - type: log\n    format: json\n    path: {log}\n"
        )


def _name(index: int) -> str:
    return f"host{index:06d}.bench.example"


def _not_after(index: int) -> datetime:
    """30 to 89 days ahead: at NOW + 30 days about half the store crosses its 30d threshold."""
    return NOW + timedelta(days=30 + index % 60, hours=1)


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.derive_private_key(0xC0FFEE, ec.SECP256R1())  # the same CA on every worker
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], index: int, serial: int
) -> bytes:
    key, root = ca
    not_after = _not_after(index)
    name = _name(index)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root.subject)
        .public_key(key.public_key())  # one key for every leaf: signing, not keygen, is timed
        .serial_number(serial)
        .not_valid_before(not_after - timedelta(days=90))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.DNSName("www." + name)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _write_range(job: tuple[str, str, int, int]) -> None:
    layout, root_text, start, stop = job
    root = Path(root_text)
    ca = _ca()
    root_pem = ca[1].public_bytes(serialization.Encoding.PEM)
    index_lines = []
    for index in range(start, stop):
        serial = 0x1000 + index
        pem = _leaf(ca, index, serial)
        name = _name(index)
        if layout == "flat":
            (root / "certs" / f"{name}.pem").write_bytes(pem)
        elif layout == "lacme":
            directory = root / "certs" / name
            directory.mkdir()
            (directory / "cert.pem").write_bytes(pem)
            (directory / "fullchain.pem").write_bytes(pem + root_pem)  # as lacme's CA writes it
            meta = {"domain": name, "domains": [name, "www." + name]}
            (directory / "meta.json").write_text(json.dumps(meta))
        else:
            (root / "pki" / "issued" / f"{name}.crt").write_bytes(pem)
            expires = _not_after(index).strftime("%Y%m%d%H%M%SZ")
            index_lines.append(f"V\t{expires}\t\t{serial:X}\tunknown\t/CN={name}\n")
        if index % CHURN == 0:  # its renewal, kept aside for the churn pass
            renewed = _leaf(ca, index + 60, 0x10000000 + index)
            chain = root_pem if layout == "lacme" else b""  # it replaces a fullchain.pem there
            (root / "renewed" / f"{index}.pem").write_bytes(renewed + chain)
    if index_lines:
        (root / "pki" / f"index.{start:08d}.part").write_text("".join(index_lines))


def _target(corpus: Corpus, index: int) -> Path:
    name = _name(index)
    return {
        "flat": corpus.root / "certs" / f"{name}.pem",
        "lacme": corpus.root / "certs" / name / "fullchain.pem",
        "easyrsa": corpus.root / "pki" / "issued" / f"{name}.crt",
    }[corpus.layout]


def corpus(cache: Path, layout: str, count: int, workers: int) -> Corpus:
    """The cached corpus, built first if missing (about 10 s per 100,000 on 2 cores)."""
    found = Corpus(layout, count, cache / f"{layout}-{count}")
    done = found.root / "done"
    if done.exists() and done.read_text() == CORPUS_VERSION:
        return found
    shutil.rmtree(found.root, ignore_errors=True)
    for directory in ("certs", "renewed", "pki/issued"):
        (found.root / directory).mkdir(parents=True)
    started = time.perf_counter()
    _, root = _ca()
    (found.root / "pki" / "ca.crt").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    step = max(1, min(5000, count // (workers * 4) or 1))
    jobs = [(layout, str(found.root), s, min(count, s + step)) for s in range(0, count, step)]
    if workers > 1 and count > 1000:
        with multiprocessing.Pool(workers) as pool:
            pool.map(_write_range, jobs)
    else:
        for job in jobs:
            _write_range(job)
    if layout == "easyrsa":
        parts = sorted((found.root / "pki").glob("index.*.part"))
        with (found.root / "pki" / "index.txt").open("w") as index_file:
            for part in parts:
                index_file.write(part.read_text())
                part.unlink()
    found.listing.write_text("\n".join(str(_target(found, i)) for i in range(count)) + "\n")
    found.renewed.write_text(
        "".join(
            f"{_target(found, i)} {found.root / 'renewed' / f'{i}.pem'}\n"
            for i in range(0, count, CHURN)
        )
    )
    done.write_text(CORPUS_VERSION)
    print(f"built {layout} corpus of {count} in {time.perf_counter() - started:.1f} s", flush=True)
    # A path whose mtime or ctime is within 2 s of a scan is read again the next pass
    # (statrecord.RACY, git's "racily clean" rule), and utime cannot set a ctime back:
    # a corpus timed just after it was written would have its rescan re-read it.
    time.sleep(2.1)
    return found


# -- running and measuring -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    cpu: float
    """User + system seconds of the child alone: far less moved by a busy machine."""
    rss_mib: float


_LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - started
report = f"{elapsed} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss} {status}"
os.write(int(os.environ["BENCH_REPORT_FD"]), report.encode())
"""
"""Starts each measured process from a small interpreter (`-S`, a few MiB): Linux
counts a child's peak RSS from the process it was forked from, so children of this
script (which holds corpora listings) would all report at least its own size."""


def run(argv: Sequence[str], ok: tuple[int, ...] = (0,)) -> Sample:
    """Run a process to completion: its wall time, CPU time and its own peak RSS, as the
    launcher that forked it measured them (its own start-up not included)."""
    read_end, write_end = os.pipe()
    env = {**os.environ, "BENCH_REPORT_FD": str(write_end)}
    process = subprocess.Popen(
        [sys.executable, "-S", "-c", _LAUNCHER, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(write_end,),
        env=env,
    )
    os.close(write_end)
    errors = process.communicate()[1]
    with os.fdopen(read_end, "rb") as report:
        written = report.read().split()
    if process.returncode != 0 or len(written) != 4:  # the launcher itself failed
        raise RuntimeError(f"{argv}: the launcher failed: {errors.decode()[-2000:]}")
    elapsed, cpu, rss_kib, status = written
    code = os.waitstatus_to_exitcode(int(status))
    if code not in ok:
        raise RuntimeError(f"{argv} exited {code}: {errors.decode()[-2000:]}")
    return Sample(float(elapsed), float(cpu), int(rss_kib) / 1024)


def run_watch(config: Path, now: datetime = NOW) -> Sample:
    """`watch --once`; exit 1 (problems reported) is still a complete pass."""
    return run(watch(config, now), ok=(0, 1))


def watch(config: Path, now: datetime = NOW) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lacme_watch",
        "--config",
        str(config),
        "--now",
        now.isoformat(),
        "watch",
        "--once",
    ]


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, label: str, sample: Sample) -> None:
        self.samples.setdefault(label, []).append(sample)

    def median(self, label: str, cpu: bool = False) -> float:
        return statistics.median(s.cpu if cpu else s.seconds for s in self.samples[label])

    def line(self, label: str) -> str:
        seconds = [s.seconds for s in self.samples[label]]
        cpu = [s.cpu for s in self.samples[label]]
        rss = max(s.rss_mib for s in self.samples[label])
        return (
            f"{label:<28} {statistics.median(seconds):>8.3f} s"
            f" ({min(seconds):.3f}-{max(seconds):.3f})"
            f"  cpu {statistics.median(cpu):>7.3f} s ({min(cpu):.3f}-{max(cpu):.3f})"
            f"  peak RSS {rss:>6.1f} MiB"
        )


def _swap(corpus: Corpus, restore: bool) -> None:
    """Renew 1% in place (the files rewritten, as `cp` or lacme's FileStore does; the
    originals kept outside the store), or put the originals back the same way."""
    keep = corpus.root.with_name(corpus.root.name + "-originals")
    for number, line in enumerate(corpus.renewed.read_text().split("\n")):
        if not line:
            continue
        target, replacement = (Path(part) for part in line.split(" "))
        files = [target, target.with_name("cert.pem")] if corpus.layout == "lacme" else [target]
        for index, path in enumerate(files):  # a lacme renewal rewrites both files
            original = keep / f"{number}-{index}.pem"
            if restore:
                shutil.copyfile(original, path)
                original.unlink()
            else:
                keep.mkdir(exist_ok=True)
                shutil.copyfile(path, original)
                shutil.copyfile(replacement, path)


def _changed_listing(corpus: Corpus, work: Path) -> Path:
    listing = work / f"changed-{corpus.layout}-{corpus.count}.txt"
    targets = [line.split(" ")[0] for line in corpus.renewed.read_text().split("\n") if line]
    listing.write_text("\n".join(targets) + "\n")
    return listing


def bench_corpus(corpus: Corpus, rounds: int, work: Path, results: Results, events: bool) -> None:
    tag = f"{corpus.layout} {corpus.count}"
    changed = _changed_listing(corpus, work)
    for round_number in range(rounds):
        state = work / f"state-{corpus.layout}-{corpus.count}-{round_number}"
        log = work / "events.log"
        config = work / f"{corpus.layout}-{corpus.count}.yaml"
        config.write_text(corpus.config(state, log))
        results.add("import floor", run(python(IMPORT_FLOOR)))
        results.add(f"{tag} walk floor", run(python(WALK_FLOOR, str(corpus.store))))
        results.add(f"{tag} parse floor", run(python(PARSE_FLOOR, str(corpus.listing))))
        results.add(f"{tag} parse changed", run(python(PARSE_FLOOR, str(changed))))
        results.add(f"{tag} first", run_watch(config))
        results.add(f"{tag} rescan", run_watch(config))
        _swap(corpus, restore=False)
        try:
            results.add(f"{tag} churn", run_watch(config))
        finally:
            _swap(corpus, restore=True)
        # The restored originals were written just now, within the stat record's racy
        # window (2 s): read before it is over, they would be looked at again by the
        # quiet pass and the events pass too (and by the next round's rescan, without
        # events). Cron's passes come minutes apart.
        time.sleep(2.1)
        if events:
            run_watch(config)  # re-read the restored originals, untimed
            results.add(f"{tag} quiet", run_watch(config))
            results.add(f"{tag} events", run_watch(config, NOW + timedelta(days=30)))
        shutil.rmtree(state)
        log.unlink(missing_ok=True)


def bench_one(cache: Path, rounds: int, work: Path, results: Results) -> None:
    # A corpus of its own: `--sizes 1 --layouts flat` renews and restores flat-1's file
    # (the churn pass) just before, and a file changed within 2 s of a scan is read
    # again (statrecord.RACY), so `cron` would time a re-read, not a cron pass.
    single = corpus(cache / "one", "flat", 1, 1)
    for round_number in range(rounds):
        state = work / f"state-one-{round_number}"
        config = work / "one.yaml"
        config.write_text(single.config(state, work / "one.log"))
        results.add("import floor", run(python(IMPORT_FLOOR)))
        results.add("one certificate, cold", run_watch(config))
        results.add("one certificate, cron", run_watch(config))  # the state kept, as cron's
        shutil.rmtree(state)


def bench_peer(cache: Path, work: Path, results: Results) -> None:
    """ssl-cert-check (Debian's `ssl-cert-check`, `-d` over a directory: a few openssl
    runs per file) against lacme-watch's first pass over the same 1,000 files, once:
    the issue asks for a lead of at least 100x, not a precise figure."""
    if shutil.which("ssl-cert-check") is None:
        print("ssl-cert-check is not installed (apt-get install ssl-cert-check): skipped")
        return
    peer = corpus(cache, "flat", 1000, 1)
    config = work / "peer.yaml"
    config.write_text(peer.config(work / "state-peer", work / "peer.log"))
    results.add("flat 1000 first, vs peer", run_watch(config))
    command = ["ssl-cert-check", "-d", str(peer.store), "-x", "30"]
    results.add("ssl-cert-check 1000 files", run(command, ok=(0, 1, 2)))
    shutil.rmtree(work / "state-peer")


# -- TLS endpoints -------------------------------------------------------------------


class _Endpoints:
    """`answering` TLS listeners on loopback served by one thread, and `silent` ones
    that accept TCP (the kernel does) but never say a word."""

    def __init__(self, answering: int, silent: int, work: Path) -> None:
        ca = _ca()
        key = ca[0].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (work / "tls.pem").write_bytes(_leaf(ca, 0, 7))
        (work / "tls.key").write_bytes(key)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(work / "tls.pem", work / "tls.key")
        self._selector = selectors.DefaultSelector()
        self.listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(answering)]
        self.silent = [socket.create_server(("127.0.0.1", 0), backlog=64) for _ in range(silent)]
        for listener in self.listeners:
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoints(self) -> Iterator[str]:
        for listener in (*self.listeners, *self.silent):
            yield f"127.0.0.1:{listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stopped.is_set():
            for key, _ in self._selector.select(0.2):
                listener = key.fileobj
                assert isinstance(listener, socket.socket)
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    continue
                threading.Thread(target=self._handshake, args=(connection,), daemon=True).start()

    def _handshake(self, connection: socket.socket) -> None:
        connection.setblocking(True)
        connection.settimeout(10)
        try:
            with self._context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            pass

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        for listener in (*self.listeners, *self.silent):
            listener.close()


def bench_tls(rounds: int, work: Path, results: Results) -> None:
    server = _Endpoints(180, 20, work)
    try:
        endpoints = "".join(f"      - {endpoint}\n" for endpoint in server.endpoints)
        for round_number in range(rounds):
            state = work / f"state-tls-{round_number}"
            config = work / "tls.yaml"
            config.write_text(
                f"state_dir: {state}\nhost: bench\nstores:\n  - type: tls\n"
                f"    timeout: 5s\n    endpoints:\n{endpoints}"
            )
            results.add("tls 200 endpoints, 20 silent", run_watch(config))
            shutil.rmtree(state)
    finally:
        server.stop()


# -- the table -----------------------------------------------------------------------


def ratios(results: Results, sizes: Sequence[int], layouts: Sequence[str]) -> list[str]:
    """Each target of the issue as `wall ratio, cpu ratio (target)`: the wall-clock
    ratio is the issue's; the CPU one (same rounds) is what a busy machine moves least."""
    lines: list[str] = []
    if "import floor" not in results.samples:
        return lines

    def m(label: str, cpu: bool) -> float:
        return results.median(label, cpu)

    def ratio(label: str, floor: Callable[[bool], float], target: float, what: str) -> None:
        if label in results.samples:
            wall, cpu = (m(label, c) / max(floor(c), 1e-9) for c in (False, True))
            mark = "ok" if wall <= target else "MISSED"
            lines.append(
                f"{label:<28} {wall:>6.2f} x wall, {cpu:>6.2f} x cpu  {what}"
                f"  (target <= {target}) {mark}"
            )

    for layout in layouts:
        for size in sizes:
            tag = f"{layout} {size}"
            if f"{tag} walk floor" not in results.samples:
                continue

            def floor(*parts: str, tag: str = tag) -> Callable[[bool], float]:
                return lambda cpu: sum(
                    m(part if part == "import floor" else f"{tag} {part}", cpu) for part in parts
                )

            ratio(f"{tag} first", floor("parse floor", "import floor"), 1.3, "(parse + import)")
            ratio(f"{tag} rescan", floor("walk floor", "import floor"), 1.5, "(walk + import)")
            ratio(
                f"{tag} churn",
                floor("walk floor", "parse changed", "import floor"),
                1.5,
                "(walk + parse changed + import)",
            )
            if f"{tag} quiet" in results.samples:
                ratio(f"{tag} events", floor("quiet"), 2.0, "(the quiet pass)")
    ratio("one certificate, cold", lambda cpu: m("import floor", cpu), 1.5, "(import)")
    ratio("one certificate, cron", lambda cpu: m("import floor", cpu), 1.5, "(import)")
    if "tls 200 endpoints, 20 silent" in results.samples:
        ratio("tls 200 endpoints, 20 silent", lambda cpu: 5.0, 2.0, "(one 5 s timeout, wall)")
    if "ssl-cert-check 1000 files" in results.samples:
        lead = m("ssl-cert-check 1000 files", False) / m("flat 1000 first, vs peer", False)
        mark = "ok" if lead >= 100 else "MISSED"
        lines.append(
            f"{'ssl-cert-check, 1000 files':<28} {lead:>6.0f} x slower  (target >= 100) {mark}"
        )
    return lines


def _compile_package() -> None:
    """Write lacme-watch's .pyc files, which an installed package has (pip compiles them):
    those of the lacme_watch the measured processes import (`-m` looks in the working
    directory first: a checkout run from its root is measured, not what is installed)."""
    found = subprocess.run(
        [sys.executable, "-c", "import lacme_watch; print(lacme_watch.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    )
    compileall.compile_dir(Path(found.stdout.strip()).parent, quiet=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated N")
    parser.add_argument("--layouts", default="flat,lacme", help=f"of {','.join(LAYOUTS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "lacme-watch-bench",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-events", action="store_true", help="skip the 5,000-event pass")
    parser.add_argument("--no-one", action="store_true", help="skip the one-certificate pass")
    parser.add_argument("--no-tls", action="store_true", help="skip the TLS endpoints")
    parser.add_argument(
        "--peer", action="store_true", help="also time ssl-cert-check over 1,000 files (minutes)"
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size]
    layouts = [layout for layout in args.layouts.split(",") if layout]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {sys.version}")
    corpora = [corpus(args.cache, lay, size, args.workers) for size in sizes for lay in layouts]
    _compile_package()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="lacme-watch-bench-") as work_text:
        work = Path(work_text)
        steps: list[Callable[[], None]] = [
            functools.partial(
                bench_corpus, c, 1, work, results, not args.no_events and c.count == 10_000
            )
            for c in corpora
        ]
        if not args.no_one:
            steps.append(functools.partial(bench_one, args.cache, 1, work, results))
        for _ in range(args.rounds):  # interleaved: every scenario once per round
            for step in steps:
                step()
        if not args.no_tls:
            bench_tls(args.rounds, work, results)
        if args.peer:
            bench_peer(args.cache, work, results)
    for label in results.samples:
        print(results.line(label))
    print()
    for line in ratios(results, sizes, layouts):
        print(line)


if __name__ == "__main__":
    main()
