"""The daemon: APScheduler 3.x runs the same pass as `watch --once` on a schedule.

The only module that knows APScheduler; a move to APScheduler 4 stays a one-file change.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import Config
from .errors import ConfigError
from .store import StateStore
from .watch import run_pass

log = logging.getLogger(__name__)


def _trigger(config: Config) -> BaseTrigger:
    if config.schedule.cron:
        return CronTrigger.from_crontab(config.schedule.cron)
    assert config.schedule.interval is not None  # noqa: S101  # Schedule holds one or the other
    return IntervalTrigger(seconds=config.schedule.interval.total_seconds(), timezone=UTC)


def run_daemon(config: Config, now: datetime | None = None) -> int:
    """Scan on the schedule until SIGTERM or SIGINT; one pass at a time, the first at once."""
    if now is not None:
        raise ConfigError("--now", "only works with `watch --once`: the daemon runs on real time")

    def one_pass() -> None:
        # A fresh connection per pass: APScheduler runs jobs on a worker thread.
        with StateStore(config.state_dir) as store:
            report = run_pass(config, store, datetime.now(UTC))
        for source, problem in report.problems:
            log.warning("%s: %s: %s %s", source, problem.path, problem.reason, problem.detail)
        for sink, reason in report.delivery.failures.items():
            log.warning("sink %s: %s (queued; will retry)", sink, reason)
        log.info(
            "pass done: %d certificates, %d new events", report.certificates, len(report.envelopes)
        )

    scheduler = BlockingScheduler(timezone=UTC)
    scheduler.add_job(
        one_pass,
        _trigger(config),
        id="scan",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the pass in flight, then stopping", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("watching %d sources, scanning %s", len(config.sources), config.schedule.describe())
    scheduler.start()
    return 0
