"""A certbot store of N lineages in which 1% were just renewed: the pass after, read in
full against read only where it changed, and against another checkout's code (--base,
e.g. main), interleaved round by round, each as a whole `watch --once` process.

The corpus is certbot's own output: one lineage issued and renewed by real certbot
against pebble (tests/acme.py), copied N times under other names (its renewal conf's
paths and its live/ links renamed with it; its private keys hard-linked, never read).
--base-python is an interpreter that imports the other checkout's lacme_watch and its
entry points (not this one's: two registrations of one store type are an error).
A renewal is what certbot does to a lineage: the next archive/NAME/*2.pem files,
live/NAME/ links unlinked and made again, renewal/NAME.conf written beside and renamed
over. Each round renews another 1%, waits out the stat record's racy window, then runs

  base     --base's code (a pass after any change reads the store in full)
  full     this checkout, its stat record dropped first: a full read
  partial  this checkout, by its stat record
  unchanged  the same again, nothing changed since (the record's lstat calls alone)

each in its own state directory, all three in an order that turns every round. ARI is
off: the corpus names a pebble no longer running, and an ARI round whose directory is
unreachable reads every certificate back (about 0.7 s at 10,000), whatever the scan did.

    python benchmarks/certbot_renewal.py --count 10000 --rounds 5 \\
        --base-python /tmp/main-venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import Sample, run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.acme import Certbot, start_pebble  # the repository's own fixture

TEMPLATE = "template.bench.example"
KINDS = ("cert", "chain", "fullchain", "privkey")
WATCH = ("watch", "--once")


def _template(work: Path) -> Path:
    """A config directory where certbot issued TEMPLATE, with the files of its renewal
    kept aside (renewed/): made once per --work."""
    made = work / "template"
    if (made / "renewed" / f"{TEMPLATE}.conf").exists():
        return made
    shutil.rmtree(made, ignore_errors=True)
    pebble = start_pebble(work / "pebble")
    try:
        certbot = Certbot(pebble, made / "certbot")
        issued = certbot.issue(TEMPLATE)
        assert issued.returncode == 0, issued.stderr
        shutil.copytree(certbot.config_dir, made / "issued", symlinks=True)
        renewed = certbot.renew(TEMPLATE)
        assert renewed.returncode == 0, renewed.stderr
    finally:
        pebble.stop()
    config = certbot.config_dir
    (made / "renewed").mkdir()
    for kind in KINDS:
        source = config / "archive" / TEMPLATE / f"{kind}2.pem"
        os.link(source, made / "renewed" / f"{kind}2.pem")  # a key is never opened
    shutil.copyfile(config / "renewal" / f"{TEMPLATE}.conf", made / "renewed" / f"{TEMPLATE}.conf")
    return made


def _name(index: int) -> str:
    return f"host{index:06d}.bench.example"


def _corpus(template: Path, root: Path, count: int) -> Path:
    """The issued template's config directory with `count` lineages, each a copy of the
    template's under its own name."""
    if root.exists():
        shutil.rmtree(root)
    issued = template / "issued"
    shutil.copytree(issued, root, symlinks=True, ignore=shutil.ignore_patterns(TEMPLATE + "*"))
    conf = (issued / "renewal" / f"{TEMPLATE}.conf").read_text()
    conf = conf.replace(str(template / "certbot" / "config"), str(root))
    for index in range(count):
        name = _name(index)
        archive, live = root / "archive" / name, root / "live" / name
        archive.mkdir()
        live.mkdir()
        for kind in KINDS:
            source = issued / "archive" / TEMPLATE / f"{kind}1.pem"
            if kind == "privkey":
                os.link(source, archive / f"{kind}1.pem")
            else:
                shutil.copy2(source, archive / f"{kind}1.pem")
            (live / f"{kind}.pem").symlink_to(f"../../archive/{name}/{kind}1.pem")
        shutil.copy2(issued / "live" / TEMPLATE / "README", live / "README")
        (root / "renewal" / f"{name}.conf").write_text(conf.replace(TEMPLATE, name))
    return root


def _renew(template: Path, root: Path, names: list[str]) -> None:
    """What `certbot renew` does to each lineage (storage.py save_successor and
    update_all_links_to, renewal.py's conf written beside and renamed over)."""
    renewed = template / "renewed"
    conf = (renewed / f"{TEMPLATE}.conf").read_text()
    conf = conf.replace(str(template / "certbot" / "config"), str(root))
    for name in names:
        for kind in KINDS:
            target = root / "archive" / name / f"{kind}2.pem"
            if kind == "privkey":
                os.link(renewed / f"{kind}2.pem", target)
            else:
                shutil.copy2(renewed / f"{kind}2.pem", target)
        for kind in KINDS:
            link = root / "live" / name / f"{kind}.pem"
            link.unlink()
            link.symlink_to(f"../../archive/{name}/{kind}2.pem")
        temporary = root / "renewal" / f"{name}.conf.new"
        temporary.write_text(conf.replace(TEMPLATE, name))
        os.replace(temporary, root / "renewal" / f"{name}.conf")


def _config(work: Path, variant: str, store: Path) -> Path:
    path = work / f"{variant}.yaml"
    path.write_text(
        f"state_dir: {work / ('state-' + variant)}\nhost: bench\n"
        f"stores:\n  - type: certbot\n    path: {store}\n    ari: false\n"
        f"sinks:\n  - type: log\n    format: json\n    path: {work / (variant + '.log')}\n"
    )
    return path


def _watch(python: str, config: Path, now: datetime) -> Sample:
    """`watch --once` by the lacme_watch `python` imports."""
    return run(
        [python, "-m", "lacme_watch", "--config", str(config), "--now", now.isoformat(), *WATCH],
        ok=(0, 1),
    )


def _drop_record(work: Path) -> None:
    with sqlite3.connect(work / "state-full" / "state.sqlite3") as db:
        db.execute("DELETE FROM stat_records")
        db.execute("DELETE FROM stat_deltas")


_COMPILE = (
    "import compileall, os, lacme_watch;"
    " compileall.compile_dir(os.path.dirname(lacme_watch.__file__), quiet=1)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.01, help="lineages renewed a round")
    parser.add_argument(
        "--base-python",
        required=True,
        help="an interpreter whose lacme_watch (and its entry points) is another checkout's",
    )
    parser.add_argument("--work", type=Path, default=None, help="kept between runs")
    options = parser.parse_args()
    work = options.work or Path(tempfile.mkdtemp(prefix="certbot-renewal-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # not the checkout: `python -m` puts the working directory first
    template = _template(work)
    store = _corpus(template, work / "config", options.count)
    now = datetime.now(UTC).replace(microsecond=0)
    codes = {"base": options.base_python, "full": sys.executable, "partial": sys.executable}
    for python in set(codes.values()):  # as `pip install` does: no compiling while measured
        compiled = run([python, "-c", _COMPILE])
        assert compiled.seconds >= 0
    configs = {variant: _config(work, variant, store) for variant in codes}
    for variant in codes:  # the baseline, and one pass that goes by its record
        shutil.rmtree(work / f"state-{variant}", ignore_errors=True)
        _watch(codes[variant], configs[variant], now)
        _watch(codes[variant], configs[variant], now)
    each = max(1, round(options.count * options.share))
    samples: dict[str, list[Sample]] = {variant: [] for variant in [*codes, "unchanged"]}
    order = list(codes)
    for turn in range(options.rounds):
        start = (turn * each) % options.count
        _renew(template, store, [_name(index) for index in range(start, start + each)])
        time.sleep(2.5)  # past statrecord.RACY: the renewal is not racy to any variant
        _drop_record(work)
        for variant in order[turn % 3 :] + order[: turn % 3]:
            samples[variant].append(_watch(codes[variant], configs[variant], now))
        samples["unchanged"].append(_watch(sys.executable, configs["partial"], now))
        print(
            f"round {turn + 1}: "
            + ", ".join(f"{v} {found[-1].seconds:.3f} s" for v, found in samples.items()),
            flush=True,
        )
    print(f"\n{options.count} certbot lineages, {each} renewed a round, {options.rounds} rounds,")
    print(f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    for variant, found in samples.items():
        seconds = [sample.seconds for sample in found]
        cpu = statistics.median(sample.cpu for sample in found)
        rss = statistics.median(sample.rss_mib for sample in found)
        print(
            f"  {variant:9} {statistics.median(seconds):.3f} s"
            f" ({min(seconds):.3f}-{max(seconds):.3f}), CPU {cpu:.3f} s, {rss:.0f} MiB"
        )


if __name__ == "__main__":
    main()
