"""Every registered sink keeps the same contract, built from YAML as a user would.

A new sink type registered under `lacme_watch.sinks` must add a row to CASES: this
test fails otherwise, so no sink escapes the contract.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from lacme_watch.config import build
from lacme_watch.errors import ConfigError, SinkError
from lacme_watch.options import parse_yaml
from lacme_watch.plugins import GROUPS, Sink, available
from lacme_watch.testing import check_failing_sink, check_sink

from .conftest import Mailbox, WebServer, sample_envelopes


@dataclass
class Case:
    working: Callable[[Fixtures], str]
    broken: Callable[[Fixtures], str]
    received: Callable[[Fixtures], int]
    """How many events the working destination holds."""


@dataclass
class Fixtures:
    tmp: Path
    smtp: Mailbox
    web: WebServer


HOOK = (
    "import sys, pathlib; out = pathlib.Path(sys.argv[1]);"
    " (out / str(len(list(out.iterdir())))).write_text(sys.stdin.read())"
)

CASES: dict[str, Case] = {
    "log": Case(
        working=lambda f: f"format: json\npath: {f.tmp / 'events.jsonl'}",
        broken=lambda f: f"format: json\npath: {f.tmp / 'missing-dir' / 'events.jsonl'}",
        received=lambda f: len((f.tmp / "events.jsonl").read_text().splitlines()),
    ),
    "email": Case(
        working=lambda f: (
            f"smtp: {{host: 127.0.0.1, port: {f.smtp.port}}}\nfrom: a@x.example\nto: [b@x.example]"
        ),
        broken=lambda f: (
            "smtp: {host: 127.0.0.1, port: 9, timeout: 2s}\nfrom: a@x.example\nto: [b@x.example]"
        ),
        received=lambda f: sum(_digest_lines(m) for m in f.smtp.messages),  # one per batch
    ),
    "shell": Case(
        working=lambda f: f"command: ['{sys.executable}', '-c', '{HOOK}', '{f.tmp / 'calls'}']",
        broken=lambda f: f"command: ['{sys.executable}', '-c', 'raise SystemExit(1)']",
        received=lambda f: len(list((f.tmp / "calls").iterdir())),
    ),
    "webhook": Case(
        working=lambda f: f"url: {f.web.url}",
        broken=lambda f: "url: http://127.0.0.1:9/\ntimeout: 2s",
        received=lambda f: len(f.web.requests),
    ),
}

SINK_TYPES = sorted(available(GROUPS["sinks"]))


def _digest_lines(message: EmailMessage) -> int:
    """Events in one digest: a line each under their headings."""
    body = message.get_body(("plain",))
    assert body is not None
    return sum(line.startswith("  - ") for line in body.get_content().splitlines())


def build_sink(kind: str, body: str) -> Sink:
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    text = (
        f"stores:\n  - {{type: pem, paths: [/tmp/x/*.pem]}}\nsinks:\n  - type: {kind}\n{indented}"
    )
    return build(parse_yaml(text, "c.yaml"), "c.yaml").sinks[0].sink


@pytest.fixture
def fixtures(tmp_path: Path, smtp_server: Mailbox, web_server: WebServer) -> Fixtures:
    (tmp_path / "calls").mkdir()
    return Fixtures(tmp_path, smtp_server, web_server)


def test_every_registered_sink_has_a_contract_case() -> None:
    assert set(SINK_TYPES) <= set(CASES), "add the new sink type to CASES"


@pytest.mark.parametrize("kind", SINK_TYPES)
def test_keeps_the_published_contract(kind: str, fixtures: Fixtures) -> None:
    """lacme_watch.testing's checks, the ones the README offers plugin authors."""
    if kind == "log":
        (fixtures.tmp / "events.jsonl").touch()
    check_sink(
        build_sink(kind, CASES[kind].working(fixtures)), lambda: CASES[kind].received(fixtures)
    )
    check_failing_sink(build_sink(kind, CASES[kind].broken(fixtures)))


@pytest.mark.parametrize("kind", SINK_TYPES)
def test_delivers_a_batch(kind: str, fixtures: Fixtures) -> None:
    sink = build_sink(kind, CASES[kind].working(fixtures))

    sink.deliver(sample_envelopes())

    assert CASES[kind].received(fixtures) == 3


@pytest.mark.parametrize("kind", SINK_TYPES)
def test_an_empty_batch_sends_nothing(kind: str, fixtures: Fixtures) -> None:
    sink = build_sink(kind, CASES[kind].working(fixtures))
    if kind == "log":
        (fixtures.tmp / "events.jsonl").touch()

    sink.deliver([])

    assert CASES[kind].received(fixtures) == 0


@pytest.mark.parametrize("kind", SINK_TYPES)
def test_failure_is_a_sink_error_naming_the_sink(kind: str, fixtures: Fixtures) -> None:
    sink = build_sink(kind, CASES[kind].broken(fixtures))

    with pytest.raises(SinkError) as caught:
        sink.deliver(sample_envelopes())

    assert caught.value.sink == sink.name == kind


@pytest.mark.parametrize("kind", SINK_TYPES)
def test_unknown_keys_are_rejected(kind: str, fixtures: Fixtures) -> None:
    with pytest.raises(ConfigError, match="colour: unknown key"):
        build_sink(kind, CASES[kind].working(fixtures) + "\ncolour: blue")
