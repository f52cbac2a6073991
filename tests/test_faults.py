"""The fault suite: SIGKILL `watch --once` at random points; no event is lost or invented.

Two worlds see the same timeline of a changing store: certificates issued, renewed,
removed, crossing expiry thresholds as `--now` advances, and CloudEvents dropped into
the spool. The clean world runs each pass once. The killed world runs each pass as a
real process and SIGKILLs it at a random moment, a few times, before letting one run
finish. Both record through a JSON log sink. Then: every event of the clean world is in
the killed one (0 lost), nothing else is (0 invented), and an event written twice
carries the same id both times (at-least-once, deduplicable).

Bounded for CI (about 30 s); LACME_WATCH_FAULT_STEPS and LACME_WATCH_FAULT_KILLS make
it longer, LACME_WATCH_FAULT_SEED picks another timeline. The README's "Faults" section
quotes its figures (printed with `pytest -s`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from lacme_watch.cli.commands import main

STEPS = int(os.environ.get("LACME_WATCH_FAULT_STEPS", "24"))
KILLS = int(os.environ.get("LACME_WATCH_FAULT_KILLS", "2"))
SEED = int(os.environ.get("LACME_WATCH_FAULT_SEED", "9"))
START = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(days=3)


@dataclass
class _World:
    root: Path

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def log(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def config(self) -> Path:
        return self.root / "lacme-watch.yaml"

    def create(self) -> None:
        self.certs.mkdir(parents=True)
        self.spool.mkdir()
        self.config.write_text(
            f"state_dir: {self.root / 'state'}\n"
            f"stores:\n  - type: pem\n    paths: ['{self.certs}/*.pem']\n"
            f"spool: {self.spool}\n"
            "expiry: {thresholds_days: [30, 14, 7, 3, 1]}\n"
            f"sinks:\n  - {{type: log, format: json, path: {self.log}}}\n"
        )

    def apply(self, change: _Change) -> None:
        for name, content in change.writes.items():
            target = self.certs / name
            temporary = target.with_suffix(".tmp")
            temporary.write_bytes(content)
            temporary.rename(target)  # as certbot and lacme do: atomically
        for name in change.removes:
            (self.certs / name).unlink()
        for name, content in change.spooled.items():
            (self.spool / f".{name}").write_bytes(content)
            (self.spool / f".{name}").rename(self.spool / name)

    def recorded(self) -> list[tuple[str, str]]:
        """(id, content key) per line the sink wrote; paths made world-independent."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        found = []
        for line in lines:
            event = json.loads(line)
            data = json.dumps(event["data"], sort_keys=True).replace(str(self.root), "<root>")
            found.append(
                (event["id"], f"{event['type']} {event['subject']} {event['time']} {data}")
            )
        return found


@dataclass
class _Change:
    writes: dict[str, bytes] = field(default_factory=dict)
    removes: list[str] = field(default_factory=list)
    spooled: dict[str, bytes] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)


def _timeline(rng: random.Random) -> list[_Change]:
    """What happens to the store before each pass, decided up front for both worlds."""
    ca = trustme.CA()
    live: list[str] = []
    changes: list[_Change] = []
    actions = ("issue", "issue", "renew", "renew", "spool", "remove")
    for step in range(STEPS):
        now = START + step * STEP
        change = _Change()
        for _ in range(rng.choice((0, 1, 2, 2, 3))):
            action = rng.choice(actions if live else ("issue",))
            if action == "issue":
                name = f"site{len(changes)}-{len(change.writes)}.example"
                lifetime = rng.choice((30, 60, 90))
                born = now - timedelta(days=rng.randrange(lifetime))
                change.writes[f"{name}.pem"] = _pem(ca, name, born, born + timedelta(days=lifetime))
                live.append(f"{name}.pem")
            elif action == "renew" and (older := [f for f in live if f not in change.writes]):
                file = rng.choice(older)
                domain = file.removesuffix(".pem")
                change.writes[file] = _pem(ca, domain, now, now + timedelta(days=90))
            elif action == "remove" and len(live) > 2:
                file = live.pop(rng.randrange(len(live)))
                change.writes.pop(file, None)
                change.removes.append(file)
            elif action == "spool":
                event_id = f"hook-{step}-{len(change.spooled)}"
                change.spooled[f"{event_id}.json"] = _cloudevent(event_id, now)
            change.kinds.append(action)
        changes.append(change)
    return changes


def _pem(ca: trustme.CA, name: str, not_before: datetime, not_after: datetime) -> bytes:
    leaf = ca.issue_cert(name, not_before=not_before, not_after=not_after)
    return leaf.cert_chain_pems[0].bytes()


def _cloudevent(event_id: str, now: datetime) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "lacme-watch://hook/certbot",
            "type": "lacme.challenge_failed",
            "time": now.isoformat(),
            "datacontenttype": "application/json",
            "data": {"domain": "hook.example", "challenge_type": "http-01", "error": event_id},
        }
    ).encode()


@dataclass
class _Figures:
    passes: int = 0
    runs: int = 0
    kills: int = 0
    missed: int = 0
    typical: float = 0.5
    """How long the last whole pass took: kills are timed inside the next one."""


def _run_killed(world: _World, now: datetime, rng: random.Random, figures: _Figures) -> None:
    """SIGKILL the pass at random moments KILLS times, then let one run finish."""
    command = [sys.executable, "-m", "lacme_watch", "--config", str(world.config),
               "--now", now.isoformat(), "watch", "--once"]  # fmt: skip
    for attempt in range(KILLS + 1):
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        figures.runs += 1
        if attempt < KILLS:
            time.sleep(rng.uniform(0, figures.typical * 0.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                figures.kills += 1
            else:
                figures.missed += 1
            process.communicate()
            continue
        _, stderr = process.communicate(timeout=120)
        figures.typical = time.monotonic() - started
        assert process.returncode == 0, stderr.decode()
    figures.passes += 1


def test_random_sigkills_lose_nothing_and_invent_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)  # noqa: S311  # a reproducible timeline, not cryptography
    timeline = _timeline(rng)
    clean, killed = _World(tmp_path / "clean"), _World(tmp_path / "killed")
    clean.create()
    killed.create()
    figures = _Figures()

    for step, change in enumerate(timeline):
        now = START + step * STEP
        clean.apply(change)
        killed.apply(change)
        code = main(["--config", str(clean.config), "--now", now.isoformat(), "watch", "--once"])
        assert code == 0, f"clean pass {step} failed"
        _run_killed(killed, now, rng, figures)

    expected = clean.recorded()
    got = killed.recorded()
    expected_keys = Counter(key for _, key in expected)
    assert max(expected_keys.values()) == 1, "the clean world itself repeated an event"
    ids_by_key: dict[str, set[str]] = {}
    for event_id, key in got:
        ids_by_key.setdefault(key, set()).add(event_id)
    lost = set(expected_keys) - set(ids_by_key)
    invented = set(ids_by_key) - set(expected_keys)
    duplicates = len(got) - len(ids_by_key)
    kinds = Counter(key.split()[0].removeprefix("lacme.") for _, key in expected)
    print(
        f"\nfault suite (seed {SEED}): {figures.passes} passes, {figures.runs} runs,"
        f" {figures.kills} SIGKILLs ({figures.missed} landed after the pass ended),"
        f" {len(expected)} events {dict(kinds)}, {duplicates} duplicates (same id),"
        f" {len(lost)} lost, {len(invented)} invented"
    )
    assert not lost, sorted(lost)
    assert not invented, sorted(invented)
    assert all(len(ids) == 1 for ids in ids_by_key.values()), "a duplicate changed its id"
    assert figures.kills >= STEPS, "too few kills landed during a pass to mean anything"
    assert {"certificate_issued", "certificate_renewed", "certificate_expiring"} <= set(kinds)
    assert "challenge_failed" in kinds  # from the spool
