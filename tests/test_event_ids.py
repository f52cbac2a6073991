"""Ids of detected events cannot be predicted by a spool writer, and an id that comes
again with different content is reported and recorded anew, never dropped in silence."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from lacme_watch.events import ChallengeFailed
from lacme_watch.events.cloudevents import event_id, from_cloudevent, to_json, wrap
from lacme_watch.statedb import StateStore

from .conftest import CliRunner, data, kinds, read_events

NOW = datetime.now(UTC).replace(microsecond=0)


def _store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A pem store holding one certificate that crosses 14 days left at NOW + 26 days."""
    certs, spool, log = tmp_path / "certs", tmp_path / "spool", tmp_path / "events.jsonl"
    certs.mkdir()
    spool.mkdir(mode=0o700)
    leaf = trustme.CA().issue_cert(
        "www.example.test", not_before=NOW - timedelta(days=20), not_after=NOW + timedelta(days=40)
    )
    (certs / "cert.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    return certs, spool, log


def _config(tmp_path: Path, state: str) -> Path:
    config = tmp_path / f"{state}.yaml"
    config.write_text(
        f"state_dir: {tmp_path / state}\nhost: web1\nspool: {tmp_path / 'spool'}\n"
        f"stores:\n  - {{type: pem, paths: ['{tmp_path}/certs/*.pem']}}\n"
        f"sinks:\n  - {{type: log, format: json, path: {tmp_path / 'events.jsonl'}}}\n"
    )
    return config


def _harmless(event_id: str, error: str = "404") -> str:
    event = ChallengeFailed(domain="www.example.test", challenge_type="http-01", error=error)
    return to_json(wrap(event, host="web1", time=NOW, id=event_id))


def test_a_spooled_event_cannot_take_the_id_of_the_coming_alert(
    tmp_path: Path, cli: CliRunner
) -> None:
    """The attack as found: ids were uuid5 of public facts under a namespace in the
    source, so a spool writer could compute the next `certificate_expiring`'s id,
    spool a harmless event under it, and the real alert was dropped as recorded."""
    _certs, spool, log = _store(tmp_path)
    later = (NOW + timedelta(days=26)).isoformat()
    # What the attacker knows: the alert's public facts, hence its unsalted id.
    scratch = _config(tmp_path, "scratch")
    cli("--config", str(scratch), "watch", "--once")
    cli("--config", str(scratch), "--now", later, "watch", "--once")
    [alert] = [e for e in read_events(log) if e["type"] == "lacme.certificate_expiring"]
    predicted = event_id("web1", from_cloudevent(alert).event)
    log.unlink()

    config = _config(tmp_path, "state")
    (spool / "planted.json").write_text(_harmless(predicted))
    first = cli("--config", str(config), "watch", "--once")
    second = cli("--config", str(config), "--now", later, "watch", "--once")

    assert (first.code, second.code) == (0, 0), first.err + second.err
    assert kinds(read_events(log)) == ["challenge_failed", "certificate_expiring"]
    real = read_events(log)[1]
    assert real["id"] != predicted
    assert data(real)["threshold"] == "14d"


def test_detected_ids_are_stable_per_installation_and_differ_between_them(
    tmp_path: Path,
) -> None:
    with StateStore(tmp_path / "a") as first:
        salt = first.id_salt
    with StateStore(tmp_path / "a") as again, StateStore(tmp_path / "b") as other:
        assert again.id_salt == salt
        assert other.id_salt != salt
    event = ChallengeFailed(domain="x.example", challenge_type="dns-01", error="no TXT")
    assert event_id("h", event, salt) == event_id("h", event, salt)
    assert event_id("h", event, salt) != event_id("h", event, other.id_salt)
    assert event_id("h", event, salt) != event_id("h", event)


def test_a_reused_id_with_other_content_is_reported_and_both_are_kept(
    tmp_path: Path, cli: CliRunner
) -> None:
    _certs, spool, log = _store(tmp_path)
    config = _config(tmp_path, "state")
    (spool / "1.json").write_text(_harmless("hook-42", error="first"))
    first = cli("--config", str(config), "watch", "--once")
    (spool / "2.json").write_text(_harmless("hook-42", error="second, different"))

    second = cli("--config", str(config), "watch", "--once")

    assert first.code == 0, first.err
    assert second.code == 1
    assert "event id hook-42 was already recorded for a different event" in second.err
    delivered = read_events(log)
    assert [data(e)["error"] for e in delivered] == ["first", "second, different"]
    assert delivered[0]["id"] == "hook-42"
    assert delivered[1]["id"] != "hook-42"
    assert str(delivered[1]["id"]) in second.err


def test_the_same_event_spooled_twice_is_one_event_without_noise(
    tmp_path: Path, cli: CliRunner
) -> None:
    """A resend (a hook retried, a crash between commit and removal) is not a conflict,
    even when it was stamped with another time."""
    _certs, spool, log = _store(tmp_path)
    config = _config(tmp_path, "state")
    (spool / "1.json").write_text(_harmless("hook-7"))
    cli("--config", str(config), "watch", "--once")
    resent = json.loads(_harmless("hook-7"))
    resent["time"] = (NOW + timedelta(minutes=5)).isoformat()
    (spool / "2.json").write_text(json.dumps(resent))

    again = cli("--config", str(config), "watch", "--once")

    assert again.code == 0, again.err
    assert [e["id"] for e in read_events(log)] == ["hook-7"]
    shutil.rmtree(tmp_path / "state")
