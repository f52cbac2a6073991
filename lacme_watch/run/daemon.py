"""The daemon: APScheduler 3.x runs the same pass as `watch --once` on a schedule.

The only module that imports APScheduler (the configuration checks cron expressions
with cron.py, so a move to APScheduler 4 stays a one-file change; tests/test_layers.py
holds it) and the only one that installs signal handlers:

- scan on `schedule.scan` (first pass at start-up), retries on `schedule.deliver`;
  one job at a time (one worker thread), missed runs coalesce;
- READY=1 after the first pass, STATUS= after each, WATCHDOG=1 while alive;
- SIGHUP re-reads the configuration: a valid one replaces the old, an invalid one is
  logged with its file:line and the old one keeps running; a burst of SIGHUPs gives
  one reload (or two, when one arrives while a reload runs);
- SIGTERM/SIGINT let the pass or delivery in flight finish (it commits), then exit 0;
- signal handlers only write one byte to a self-pipe: a thread of ours reads it and
  acts, so no lock (APScheduler's, logging's) is ever taken inside a signal handler;
- a lock on state_dir keeps a second instance out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..config import Config, cron
from ..dispatch.delivery import drain
from ..dispatch.ingest import ingest_spool, record_reset
from ..errors import ConfigError, LacmeWatchError
from ..statedb import StateStore
from ..statedb.lock import StateLock
from .metrics import Metrics
from .notify import Notifier
from .passes import pass_metrics, run_pass

log = logging.getLogger(__name__)

Loader = Callable[[], Config]


def _scan_trigger(config: Config) -> BaseTrigger:
    """The scan schedule. A cron line means what it means in crontab(5): cron.parse()
    translates its day of week (0 = Sunday) and its day-of-month OR day-of-week rule."""
    jitter = int(config.schedule.jitter.total_seconds()) or None
    if config.schedule.cron:
        return cron_trigger(config.schedule.cron, config.schedule.timezone, jitter)
    assert config.schedule.interval is not None  # noqa: S101  # Schedule holds one or the other
    return IntervalTrigger(
        seconds=config.schedule.interval.total_seconds(), timezone=UTC, jitter=jitter
    )


def cron_trigger(expression: str, timezone: str | None, jitter: int | None = None) -> BaseTrigger:
    """APScheduler's trigger for a crontab line (timezone None: the system's time zone)."""
    triggers: list[BaseTrigger] = [
        CronTrigger(**fields.as_dict(), timezone=timezone, jitter=jitter)
        for fields in cron.parse(expression)
    ]
    return triggers[0] if len(triggers) == 1 else OrTrigger(triggers, jitter=jitter)


class Daemon:
    """One long-lived watcher over one state_dir."""

    def __init__(self, config: Config, reload: Loader, notifier: Notifier | None = None) -> None:
        self.config = config
        self._reload_config = reload
        self._notifier = notifier or Notifier()
        self._metrics = Metrics()
        self._ready = False
        self._stopping = threading.Event()
        self._reload_wanted = threading.Event()
        """Set by the signal thread, cleared when the reload job starts: coalesces bursts."""
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._reloads = 0
        self._busy_since: float | None = None
        """monotonic() when the running pass or delivery started; None when idle."""
        self._scheduler = BlockingScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(max_workers=1),  # passes and deliveries take turns
                "watchdog": ThreadPoolExecutor(max_workers=1),  # never stuck behind a slow pass
            },
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )

    def run(self) -> int:
        lock = StateLock(self.config.state_dir)
        lock.require()
        threading.Thread(target=self._handle_signals, name="signals", daemon=True).start()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            if self.config.metrics.listen:
                self._metrics.serve(self.config.metrics.listen)
                log.info("serving metrics on http://%s/metrics", self.config.metrics.listen)
            self._schedule(first_pass=True)
            if self._notifier.watchdog is not None:
                self._scheduler.add_job(
                    self._ping_watchdog,
                    IntervalTrigger(seconds=self._notifier.watchdog.total_seconds() / 2),
                    id="watchdog",
                    executor="watchdog",
                )
            log.info(
                "watching %d sources, scanning %s",
                len(self.config.sources),
                self.config.schedule.describe(),
            )
            self._scheduler.start()  # blocks until shutdown
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)  # stopping already; say nothing twice
            self._notifier.send(stopping="1")
            lock.release()
            os.close(self._wake_write)  # ends the signal thread
        log.info("stopped")
        return 0

    def _schedule(self, *, first_pass: bool) -> None:
        # APScheduler 3 reads an explicit next_run_time=None as "add paused": pass it only
        # to start the first pass at once.
        start = {"next_run_time": datetime.now(UTC)} if first_pass else {}
        self._scheduler.add_job(
            self._scan, _scan_trigger(self.config), id="scan", replace_existing=True, **start
        )
        self._scheduler.add_job(
            self._deliver,
            IntervalTrigger(seconds=self.config.schedule.deliver.total_seconds(), timezone=UTC),
            id="deliver",
            replace_existing=True,
        )

    def _ping_watchdog(self) -> None:
        """WATCHDOG=1, unless a pass has been stuck longer than the watchdog interval:
        then silence, so systemd restarts the daemon (WatchdogSec > the longest pass)."""
        assert self._notifier.watchdog is not None  # noqa: S101  # scheduled only then
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > self._notifier.watchdog.total_seconds():
            log.error(
                "a pass has run for %.0f s; letting systemd's watchdog restart us",
                time.monotonic() - busy,
            )
            return
        self._notifier.send(watchdog="1")

    def _scan(self) -> None:
        self._busy_since = time.monotonic()
        try:
            self._scan_once()
        finally:
            self._busy_since = None

    def _scan_once(self) -> None:
        config = self.config
        try:
            with StateStore(config.state_dir) as store:
                if (reset := record_reset(config, store, datetime.now(UTC))) is not None:
                    log.error("%s", reset.event.summary())
                report = run_pass(config, store, datetime.now(UTC))
                self._metrics.update(pass_metrics(report, config, store))
            if config.metrics.textfile:
                self._metrics.write_textfile(config.metrics.textfile)
            status = report.status()
            for source, problem in report.problems:
                log.warning("%s: %s: %s %s", source, problem.path, problem.reason, problem.detail)
            for sink, reason in report.delivery.failures.items():
                log.warning("sink %s: %s (queued; will retry)", sink, reason)
            for path, reason in report.spool_rejected:
                log.warning("spool: %s: not a valid event (%s); set aside", path, reason)
            for message in report.id_conflicts:
                log.warning("%s", message)
            log.info("pass done: %s", status)
        except LacmeWatchError as exc:
            status = f"last pass failed: {exc}"
            log.error("%s", status)
        if not self._ready:
            self._ready = True
            self._notifier.send(ready="1", status=status)
        else:
            self._notifier.send(status=status)

    def _deliver(self) -> None:
        config = self.config
        try:
            with StateStore(config.state_dir) as store:
                now = datetime.now(UTC)
                spooled = ingest_spool(config, store, now)
                if spooled.unreadable:
                    log.error("spool: %s", spooled.unreadable)
                for path, reason in spooled.rejected:
                    log.error("spool: %s is not a valid event (%s); set aside", path, reason)
                report = drain(store, config.sinks, now, config.retry)
        except LacmeWatchError as exc:
            log.error("delivery failed: %s", exc)
            return
        for sink, reason in report.failures.items():
            log.warning("sink %s: %s (queued; will retry)", sink, reason)

    def _reload(self) -> None:
        """Runs as a job in the scheduler's worker, after the pass in flight: read,
        validate, then swap."""
        self._reload_wanted.clear()  # a SIGHUP from now on asks for one more reload
        self._notifier.send(reloading="1")
        try:
            fresh = self._reload_config()
            if fresh.state_dir != self.config.state_dir:
                raise ConfigError(
                    "state_dir",
                    "cannot change on reload (the lock and the outbox live there);"
                    " restart lacme-watch instead",
                )
        except LacmeWatchError as exc:
            log.error("reload failed; keeping the running configuration: %s", exc)
        else:
            self.config = fresh
            self._schedule(first_pass=False)
            log.info(
                "configuration reloaded: %d sources, scanning %s",
                len(fresh.sources),
                fresh.schedule.describe(),
            )
        self._notifier.send(ready="1")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The whole signal handler: one byte down the self-pipe, nothing else."""
        with contextlib.suppress(BlockingIOError, OSError):  # full pipe: a byte is waiting
            os.write(self._wake_write, bytes([signum]))

    def _handle_signals(self) -> None:
        """The signal thread: read what the handlers wrote and act, outside any handler."""
        while True:
            try:
                select.select([self._wake_read], [], [])
                received = os.read(self._wake_read, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not received:  # run() closed the writing end: the daemon has stopped
                os.close(self._wake_read)
                return
            if signal.SIGTERM in received or signal.SIGINT in received:
                self._stop(signal.SIGTERM if signal.SIGTERM in received else signal.SIGINT)
            elif signal.SIGHUP in received and not self._stopping.is_set():
                self._request_reload()

    def _request_reload(self) -> None:
        if self._reload_wanted.is_set():
            return  # one is queued and has not started yet: this SIGHUP joins it
        self._reload_wanted.set()
        # Its own id: a reload asked for while another runs queues behind it instead of
        # being skipped as a second instance of the same job.
        self._reloads += 1
        self._scheduler.add_job(self._reload, id=f"reload-{self._reloads}")

    def _stop(self, signum: int) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("signal %d: finishing the work in flight, then stopping", signum)
        self._notifier.send(stopping="1")
        # shutdown(wait=True) waits for the running pass, then the main thread's
        # scheduler loop returns and run() exits.
        self._scheduler.shutdown(wait=True)


def run_daemon(config: Config, reload: Loader, now: datetime | None = None) -> int:
    """`lacme-watch watch`: run until SIGTERM or SIGINT."""
    if now is not None:
        raise ConfigError("--now", "only works with `watch --once`: the daemon runs on real time")
    return Daemon(config, reload).run()
