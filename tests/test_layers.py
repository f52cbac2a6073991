"""Dependencies point one way: sources → observations → detection → state database +
outbox → delivery → sinks, with the run modes on top. Read from the imports themselves."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
import trustme
from lacme import FileStore

from lacme_watch.events.cloudevents import to_json
from lacme_watch.testing import sample_envelopes

from .conftest import save_acme_cert

PACKAGE = Path(__file__).resolve().parent.parent / "lacme_watch"

STAGES = {"reading", "sources", "detection", "dispatch", "run", "cli"}
"""The stage folders: each holds modules of several tiers, and imports nothing itself."""

TIERS: list[set[str]] = [
    STAGES,
    {"reading.beside"},
    {"wording", "printable", "boundedjson", "reading.statrecord", "atomicfile"},
    {"detection.suffixlist"},
    {
        "errors",
        "events",
        "instants",
        "config.cron",
        "run.logconfig",
        "run.notify",
        "cli.loopback",
        "cli.terminal",
    },
    {"detection.renewal"},
    {"detection.thresholds"},
    {"options", "statedb.files", "observations", "events.cloudevents", "dispatch.subscribers"},
    {"detection.profiles", "detection.changes", "reading.dernames"},
    {"reading.certfacts", "reading.forked", "detection.chains", "reading.guarded"},
    {
        "reading.reader",
        "reading.payloads",
        "detection.ratelimits",
        "detection.detect",
        "dispatch.spool",
        "run.metrics",
        "statedb.lock",
    },
    {"plugins", "sources.crl", "detection.freshness"},
    {"sources.stores", "sources.authorities", "sinks", "config.routes", "bridge"},
    {"ari", "detection.verdicts"},
    {"config", "statedb", "testing"},
    {"dispatch.delivery", "detection.verify", "detection.incremental"},
    {"run.rescans"},
    {"run.slices"},
    {"run.scans"},
    {"dispatch.ingest", "run.passes"},
    {"cli.check", "cli.demo", "run.daemon", "cli.views", "cli.units"},
    {"cli.inventory"},
    {"cli.arguments"},
    {"cli.commands", "__main__", ""},
]
"""Data-flow order, bottom up: a module imports only from tiers below its own, or from its
own entry's package (config/, statedb/, events/, ari/, sources/stores/ ...). A stage
folder's name covers only its own __init__: each of its modules has a tier of its own."""


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _graph() -> dict[str, frozenset[str]]:
    """lacme_watch's own modules (dotted, without the package name) and what each imports."""
    graph: dict[str, frozenset[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
                found |= (
                    {f"{target}.{a.name}".strip(".") for a in node.names}
                    if node.module is None
                    else {target}
                )
        graph[name] = frozenset(found & _names() - {name})
    return graph


@cache
def _names() -> frozenset[str]:
    return frozenset(_module(path) for path in PACKAGE.rglob("*.py"))


def _entry(module: str) -> str | None:
    """The TIERS entry a module falls under: itself, or the longest package around it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if any(name in tier for tier in TIERS) and (end == len(parts) or name not in STAGES):
            return name
    return "" if module == "" else None


def _tier(module: str) -> int:
    entry = _entry(module)
    return next(index for index, tier in enumerate(TIERS) if entry in tier)


def _reaches(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dependency in _graph()[todo.pop()]:
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def test_every_module_has_a_tier() -> None:
    assert {m for m in _names() if _entry(m) is None} == set()


def test_nothing_imports_back_up_the_data_flow() -> None:
    upward = sorted(
        f"{module} imports {dependency}"
        for module, dependencies in _graph().items()
        for dependency in dependencies
        if _tier(dependency) >= _tier(module) and _entry(dependency) != _entry(module)
    )
    assert upward == []


@pytest.mark.parametrize(
    ("module", "never"),
    [
        (
            "observations",
            {"events.cloudevents", "reading.reader", "detection.detect", "statedb"},
        ),
        ("detection.detect", {"events.cloudevents", "reading.reader", "statedb", "config"}),
        ("config", {"statedb", "dispatch.delivery", "run.passes", "run.daemon", "testing"}),
        ("cli.demo", {"testing", "run.daemon"}),
        ("statedb", {"config", "dispatch.delivery", "run.passes"}),
        ("run.passes", {"run.daemon", "cli.commands", "cli.check", "cli.demo"}),
    ],
)
def test_what_each_layer_does_not_reach(module: str, never: set[str]) -> None:
    assert _reaches(module) & never == set()


LOAD_CONFIG = """
import pathlib, sys, tempfile
from lacme_watch.config import load
directory = pathlib.Path(tempfile.mkdtemp())
(directory / "c.yaml").write_text('''
state_dir: {d}/state
schedule: {{scan: "*/15 * * * mon-fri"}}
stores:
  - {{type: lacme, path: {d}}}
  - {{type: pem, paths: ["{d}/*.pem"]}}
  - {{type: certbot, path: {d}}}
  - {{type: dehydrated, path: {d}}}
  - {{type: tls, endpoints: ["127.0.0.1:9"]}}
authorities:
  - {{type: lacme, path: {d}, name: root}}
  - {{type: easyrsa, path: {d}}}
sinks:
  - {{type: log}}
  - {{type: email, from: a@example.com, to: [b@example.com]}}
  - {{type: shell, command: [/bin/true]}}
  - {{type: webhook, url: "http://127.0.0.1:9/"}}
'''.format(d=directory))
load(directory / "c.yaml")
"""


def _modules_after(code: str) -> set[str]:
    """sys.modules after running `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    # Not under coverage (CI measures subprocesses): it imports sqlite3 for its data file.
    env = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(probe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        pytest.param(LOAD_CONFIG, {"sqlite3", "apscheduler", "lacme_watch.testing"}, id="config"),
        pytest.param(
            "import lacme_watch",
            {"sqlite3", "apscheduler", "prometheus_client", "lacme_watch.config"},
            id="package",
        ),
        pytest.param(
            "import lacme_watch.detection.detect", {"sqlite3", "apscheduler"}, id="detection"
        ),
        pytest.param(
            "import lacme_watch.statedb", {"apscheduler", "lacme_watch.config"}, id="state"
        ),
        pytest.param("import lacme_watch.run.passes", {"apscheduler", "rich"}, id="passes"),
        pytest.param(
            "import lacme_watch.cli.demo", {"lacme_watch.testing", "apscheduler"}, id="demo"
        ),
    ],
)
def test_a_fresh_interpreter_does_not_pull_in(code: str, absent: set[str]) -> None:
    loaded = _modules_after(code)
    assert {m for m in loaded if m.split(".")[0] in absent or m in absent} == set()


def test_only_the_daemon_imports_apscheduler() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name.split(".")[0] == "apscheduler" for name in names):
                importers.add(_module(path))
    assert importers == {"run.daemon"}


WATCH_ONCE = """
from lacme_watch.cli.commands import main
code = main(["--config", {config!r}, "--now", {now!r}, "watch", "--once"])
assert code == 0, code
"""

CRON_NEVER_NEEDS = {
    "apscheduler",
    "rich",  # stdout and stderr are pipes here, as under cron
    "ssl",
    "_ssl",
    "http",
    "urllib.request",
    "zoneinfo",
    "concurrent",
    "importlib.metadata",
    "tempfile",
    "shutil",  # argparse measures the terminal only to print help (arguments.py)
    "pickle",  # forked.py's, for a first pass of at least 400 files
    "uuid",  # event ids are uuid5 text made from SHA-1 (cloudevents.uuid5_text)
    "prometheus_client",
    "publicsuffixlist",
    "OpenSSL",
    # A leaf whose issuer the store does not hold: no signature is checked, so neither
    # cryptography's OpenSSL backend module nor its serialization (SSH keys, ciphers).
    "cryptography.hazmat.backends",
    "cryptography.hazmat.primitives.serialization",
    "lacme_watch.ari.rounds",
    "lacme_watch.ari.client",
    "lacme_watch.ari.window",
    "lacme_watch.cli.check",
    "lacme_watch.config.cron",
    "lacme_watch.run.daemon",
    "lacme_watch.cli.demo",
    "lacme_watch.cli.inventory",
    "lacme_watch.run.metrics",
    "lacme_watch.testing",
    "lacme_watch.cli.views",
    "lacme_watch.sources.stores.certbot",
    "lacme_watch.sources.stores.dehydrated",
    "lacme_watch.sources.stores.lacme",
    "lacme_watch.sources.stores.tls",
    "lacme_watch.sinks.email",
    "lacme_watch.sinks.shell",
    "lacme_watch.sinks.webhook",
    "lacme_watch.events.lifecycle",  # one family per kind: an expiry needs lacme's own
    "lacme_watch.events.chains",
}
"""What a cron `watch --once` over PEM files into a log sink must not import: other
commands' modules, the scheduler, TLS and HTTP, the ARI round when no directory is
known, the PSL when too few issuances are new for any warning, the stores and sinks not
configured, the event families of kinds it does not emit."""

UNCHANGED_RESCAN_NEVER_NEEDS = {
    "lacme_watch.events.base",
    "lacme_watch.events.lacme",
    "lacme_watch.events.lifecycle",
    "lacme_watch.events.renewal",
    "lacme_watch.events.chains",
    "lacme_watch.reading.reader",
    "lacme_watch.detection.chains",
    "lacme_watch.reading.forked",
    "lacme_watch.detection.verdicts",
    "lacme_watch.detection.freshness",
    "lacme_watch.reading.certfacts",
    "cryptography.x509",
    "yaml",
    "socket",  # the default host is uname's nodename (cryptography's email.utils imports it)
    "secrets",
    "random",
}
"""What the cron pass after that one, over the same unchanged file, must not import
either: it only stats, so no reader (nor its chains and forked), no chain or
revocation verdicts and no cryptography.x509 (~25 ms); it finds nothing, so it builds
no event class (each family is a few milliseconds of frozen-dataclass creation); the
first pass kept the parsed configuration in state_dir, so PyYAML is not loaded."""


_TRUST_FRESH_FILES = "from lacme_watch.reading import statrecord\nstatrecord.RACY = -3600.0\n"
"""Files written a moment ago are trusted by their lstat, as a cron pass an hour on would."""


def _write_leaf(path: Path, now: datetime, issued_days_ago: int, days_left: int) -> None:
    """A leaf for www.example.test of a CA of its own, at `path`."""
    leaf = trustme.CA().issue_cert(
        "www.example.test",
        not_before=now - timedelta(days=issued_days_ago),
        not_after=now + timedelta(days=days_left),
    )
    leaf.cert_chain_pems[0].write_to_path(str(path))


def _one_store_config(tmp_path: Path, store: str, log: Path) -> Path:
    """c.yaml: one store (a YAML flow mapping), state in tmp_path/state, a JSON log."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"stores:\n  - {store}\n"
        f"sinks:\n  - {{type: log, format: json, path: {log}}}\n"
    )
    return config


@pytest.mark.parametrize(
    ("issued_days_ago", "days_left", "expected"),
    [
        pytest.param(30, 60, [], id="quiet-pass"),  # outside every rate-limit window
        pytest.param(30, 5, ["certificate_expiring"], id="pass-with-an-event"),
        # inside: one new certificate, far below any registered domain's warning point
        pytest.param(1, 60, [], id="a-new-issuance"),
    ],
)
def test_a_cron_pass_over_pem_files_imports_only_what_it_needs(
    tmp_path: Path, issued_days_ago: int, days_left: int, expected: list[str]
) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    _write_leaf(tmp_path / "www.pem", now, issued_days_ago, days_left)
    log = tmp_path / "events.jsonl"
    config = _one_store_config(tmp_path, f"{{type: pem, paths: ['{tmp_path}/*.pem']}}", log)

    loaded = _modules_after(WATCH_ONCE.format(config=str(config), now=now.isoformat()))

    lines = log.read_text().splitlines() if log.exists() else []
    assert [json.loads(line)["type"].removeprefix("lacme.") for line in lines] == expected
    assert "lacme_watch.sources.stores.pem" in loaded  # the pass really ran its store
    pulled_in = {m for m in loaded if m in CRON_NEVER_NEEDS or m.split(".")[0] in CRON_NEVER_NEEDS}
    assert pulled_in == set()


def test_an_unchanged_rescan_reads_nothing_and_builds_no_event_class(tmp_path: Path) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    certs = tmp_path / "certs"  # a directory of its own: the state lands beside it
    certs.mkdir()
    _write_leaf(certs / "www.pem", now, 30, 60)
    store = f"{{type: pem, paths: ['{certs}/*.pem']}}"
    config = _one_store_config(tmp_path, store, tmp_path / "events.jsonl")
    # The file was written a moment ago: trust its lstat anyway, as a cron pass an hour on would.
    probe = _TRUST_FRESH_FILES + WATCH_ONCE.format(config=str(config), now=now.isoformat())
    first = _modules_after(probe)
    assert "lacme_watch.reading.reader" in first  # the first pass read the file

    loaded = _modules_after(probe)

    assert "lacme_watch.sources.stores.pem" in loaded
    assert not (tmp_path / "events.jsonl").exists()  # nothing to tell, twice
    never = CRON_NEVER_NEEDS | UNCHANGED_RESCAN_NEVER_NEEDS
    assert {m for m in loaded if m in never or m.split(".")[0] in never} == set()


def test_a_rescan_where_time_alone_crossed_a_threshold_loads_no_reader(tmp_path: Path) -> None:
    """Nothing changed, but the certificate came due: its certificate_expiring comes from
    the state database, with no reader, parser, chain or revocation check loaded."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    certs = tmp_path / "certs"
    certs.mkdir()
    _write_leaf(certs / "www.pem", now, 30, 60)
    log = tmp_path / "events.jsonl"
    config = _one_store_config(tmp_path, f"{{type: pem, paths: ['{certs}/*.pem']}}", log)
    _modules_after(_TRUST_FRESH_FILES + WATCH_ONCE.format(config=str(config), now=now.isoformat()))
    later = (now + timedelta(days=31)).isoformat()  # 29 days left: 33% and 30d crossed

    loaded = _modules_after(_TRUST_FRESH_FILES + WATCH_ONCE.format(config=str(config), now=later))

    lines = log.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["lacme.certificate_expiring"]
    assert json.loads(lines[0])["data"]["threshold"] == "33%"  # 29 of 90 days left
    assert "lacme_watch.events.lacme" in loaded  # the event was built, and its family loaded
    never = {
        "lacme_watch.reading.reader",
        "lacme_watch.detection.chains",
        "lacme_watch.reading.forked",
        "lacme_watch.detection.verdicts",
        "lacme_watch.reading.certfacts",
        "cryptography.x509",
    }
    assert {m for m in loaded if m in never} == set()


def test_an_unchanged_lacme_store_is_rescanned_without_the_reader(tmp_path: Path) -> None:
    """The lacme store names the reader in its signatures only: a pass that reads none
    of its files (nothing changed, or certificates only came due) does not load it."""
    now = datetime.now(UTC).replace(microsecond=0)
    save_acme_cert(
        FileStore(tmp_path / "lacme"),
        trustme.CA(),
        ["www.example.test"],
        not_before=now - timedelta(days=30),
        not_after=now + timedelta(days=60),
    )
    log = tmp_path / "events.jsonl"
    config = _one_store_config(tmp_path, f"{{type: lacme, path: {tmp_path / 'lacme'}}}", log)
    first = _modules_after(
        _TRUST_FRESH_FILES + WATCH_ONCE.format(config=str(config), now=now.isoformat())
    )
    assert "lacme_watch.reading.reader" in first

    later = (now + timedelta(days=31)).isoformat()  # 29 days left: 33% crossed, overdue
    for at in (now.isoformat(), later):
        loaded = _modules_after(_TRUST_FRESH_FILES + WATCH_ONCE.format(config=str(config), now=at))
        assert "lacme_watch.sources.stores.lacme" in loaded
        assert {"lacme_watch.reading.reader", "cryptography.x509"} & loaded == set()
    lines = log.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == [
        "lacme.certificate_expiring",
        "lacme.renewal_overdue",  # lacme renews 30 days before expiry: past it, and the grace
    ]


def test_decoding_one_event_loads_only_its_family() -> None:
    """The registry finds every kind by name, and loads the family it needs, not all."""
    line = next(
        to_json(envelope)
        for envelope in sample_envelopes(datetime(2026, 6, 1, tzinfo=UTC))
        if envelope.event.kind == "certificate_unreadable"
    )
    loaded = _modules_after(
        f"from lacme_watch.events.cloudevents import from_json\n"
        f"assert from_json({line!r}).event.kind == 'certificate_unreadable'\n"
    )
    families = {m for m in loaded if m.startswith("lacme_watch.events.")}
    assert families == {
        "lacme_watch.events.cloudevents",  # the codec itself
        "lacme_watch.events.base",
        "lacme_watch.events.lifecycle",
    }


def _architecture_rows() -> dict[str, str]:
    """The README's Architecture table: first cell -> the whole row."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("### Architecture", 1)[1].split("\n## ", 1)[0]
    return {line.split(" | ")[0]: line for line in section.splitlines() if line.startswith("| `")}


def test_the_readme_architecture_map_names_every_module() -> None:
    """A newcomer finds every module's job there: by its path, or as a named part of its
    folder's own row (`statedb/`: `schema`, `outbox`, ...)."""
    rows = _architecture_rows()
    cells = " ".join(rows)
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" or f"`{relative}`" in cells:
            continue
        folder = f"| `{path.parent.relative_to(PACKAGE).as_posix()}/`"
        if f"`{path.stem}`" not in rows.get(folder, ""):
            missing.append(relative)
    assert missing == []
