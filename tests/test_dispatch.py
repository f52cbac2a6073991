"""EventDispatcher behaves as lacme documents its own: typed and global, sync and async."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime

import pytest

from lacme_watch import EventDispatcher
from lacme_watch.events import CertificateIssued, ChallengeFailed, Event

ISSUED = CertificateIssued(
    domain="a.example", domains=("a.example",), expires_at=datetime(2030, 1, 1, tzinfo=UTC)
)
FAILED = ChallengeFailed(domain="a.example", challenge_type="dns-01", error="no TXT record")


def test_typed_subscribers_get_their_type_and_global_ones_get_everything() -> None:
    dispatcher = EventDispatcher()
    typed: list[Event] = []
    every: list[Event] = []
    dispatcher.subscribe(typed.append, event_type=CertificateIssued)
    dispatcher.subscribe(every.append)

    dispatcher.emit_sync(ISSUED)
    dispatcher.emit_sync(FAILED)

    assert typed == [ISSUED]
    assert every == [ISSUED, FAILED]


def test_typed_subscribers_run_before_global_ones() -> None:
    dispatcher = EventDispatcher()
    order: list[str] = []
    dispatcher.subscribe(lambda event: order.append("global"))
    dispatcher.subscribe(lambda event: order.append("typed"), event_type=CertificateIssued)

    dispatcher.emit_sync(ISSUED)

    assert order == ["typed", "global"]


def test_unsubscribe_removes_a_callback_everywhere() -> None:
    dispatcher = EventDispatcher()
    seen: list[Event] = []
    dispatcher.subscribe(seen.append)
    dispatcher.subscribe(seen.append, event_type=CertificateIssued)

    dispatcher.unsubscribe(seen.append)
    dispatcher.emit_sync(ISSUED)

    assert seen == []


def test_a_failing_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = EventDispatcher()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    dispatcher.subscribe(broken)
    dispatcher.subscribe(seen.append)

    dispatcher.emit_sync(ISSUED)
    asyncio.run(dispatcher.emit(ISSUED))

    assert seen == [ISSUED, ISSUED]
    failures = [r for r in caplog.records if r.exc_info and str(r.exc_info[1]) == "subscriber bug"]
    assert len(failures) == 2


def test_emit_awaits_async_subscribers() -> None:
    dispatcher = EventDispatcher()
    seen: list[Event] = []

    async def subscriber(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(event)

    dispatcher.subscribe(subscriber)
    asyncio.run(dispatcher.emit(ISSUED))

    assert seen == [ISSUED]


def test_emit_sync_skips_async_subscribers_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = EventDispatcher()
    seen: list[Event] = []

    async def subscriber(event: Event) -> None:
        seen.append(event)

    dispatcher.subscribe(subscriber)
    with caplog.at_level(logging.WARNING):
        dispatcher.emit_sync(ISSUED)

    assert seen == []
    assert "skipping async callback" in caplog.text


def test_emit_sync_closes_an_awaitable_returned_by_a_sync_callback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = EventDispatcher()
    ran: list[bool] = []

    async def later() -> None:
        ran.append(True)

    dispatcher.subscribe(lambda event: later())
    with caplog.at_level(logging.WARNING):
        dispatcher.emit_sync(ISSUED)  # filterwarnings=error: an unclosed coroutine would fail

    assert ran == []
    assert "returned an awaitable" in caplog.text


def test_subscribing_from_many_threads_loses_nobody() -> None:
    dispatcher = EventDispatcher()
    seen: list[int] = []
    lock = threading.Lock()

    def subscribe(index: int) -> None:
        def callback(event: Event) -> None:
            with lock:
                seen.append(index)

        dispatcher.subscribe(callback)

    threads = [threading.Thread(target=subscribe, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    dispatcher.emit_sync(ISSUED)

    assert sorted(seen) == list(range(50))


def test_an_event_name_subscribes_like_its_class() -> None:
    dispatcher = EventDispatcher()
    typed: list[Event] = []
    dispatcher.subscribe(typed.append, event_type="certificate_issued")

    dispatcher.emit_sync(ISSUED)
    dispatcher.emit_sync(FAILED)

    assert typed == [ISSUED]


@pytest.mark.parametrize("event_type", ["certificate-issued", "lacme.certificate_issued", 3, int])
def test_an_event_type_that_can_never_match_is_a_type_error(event_type: object) -> None:
    with pytest.raises(TypeError, match="event"):
        EventDispatcher().subscribe(print, event_type=event_type)  # type: ignore[arg-type]
