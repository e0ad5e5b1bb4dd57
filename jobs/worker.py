"""`catalog-service worker`: an RQ worker that loads the cutout model once and runs jobs in-process."""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, NoReturn

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from catalog_service import services
from catalog_service.imaging.cutout import get_session
from catalog_service.model_status import save_shutdown_dates
from catalog_service.scenes.openai_lifecycle import make_client, read_shutdown_dates
from catalog_service.services import Services

from .common import JobError
from .queues import ALL_QUEUES, get_queue

log = logging.getLogger(__name__)

PUBSUB_POLL_S = 1.0
"""How often the worker's command listener looks up; also the longest a stopping worker waits for it."""

HEARTBEAT_S = 15
"""Seconds between a running job's heartbeats (RQ's `job_monitoring_interval`). RQ lets a job's entry in the
started registry lapse 60 s after the last beat, so a killed worker's job is taken back (by the sweeper or
an idle worker's maintenance) about 75 s after the worker died, not after the whole job timeout."""

WORKER_TTL_S = 35
"""RQ's `worker_ttl`: an idle worker wakes from its blocking wait every WORKER_TTL_S - 15 seconds, which is
also how soon it runs its due maintenance."""

MAINTENANCE_S = 20
"""RQ's `maintenance_interval`: how often a worker cleans the registries and, when no scheduler of its own is
running, tries again to take the scheduler locks (RQ's default, 10 minutes, left retries unscheduled that long
after the worker holding the locks died)."""

RECONNECT_BASE_S = 1.0
RECONNECT_CAP_S = 30.0
"""Waits between attempts to reach Redis again: RECONNECT_BASE_S doubling, never more than RECONNECT_CAP_S."""

_PR_SET_PDEATHSIG = 1  # prctl(2)


def reconnect_delay(attempt: int) -> float:
    """Pure: seconds to wait before reconnect attempt `attempt` (0-based): base * 2**attempt, capped."""
    return min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** min(attempt, 32))


class _JobHeartbeat(threading.Thread):
    """Beats for a job SimpleWorker runs in this process, every HEARTBEAT_S, until the job ends.

    RQ's forking worker beats from the parent while the child runs the job; SimpleWorker has no parent to do
    it, so it sets the job's heartbeat to the whole job timeout + 60 s up front. This thread calls RQ's own
    `maintain_heartbeats` instead. It stops beating once the job is past its timeout, so a job stuck where
    RQ's timeout cannot interrupt it still lapses and is taken back.
    """

    def __init__(self, worker: BaseWorker, job: Job, execution: Execution) -> None:
        super().__init__(name=f"heartbeat {job.id}", daemon=True)
        self.worker, self.job, self.execution = worker, job, execution
        self.ended = threading.Event()
        timeout = job.timeout if job.timeout is not None and job.timeout > 0 else None
        self.deadline = math.inf if timeout is None else time.monotonic() + timeout + 60

    def run(self) -> None:
        while not self.ended.wait(self.worker.job_monitoring_interval):
            if time.monotonic() > self.deadline:
                log.warning("job=%s past its timeout: heartbeats stop, so the job is taken back", self.job.id)
                return
            try:
                self.worker.maintain_heartbeats(self.job, self.execution)
            except RedisError as exc:
                log.warning("job=%s heartbeat not sent: %s", self.job.id, exc)

    def end(self) -> None:
        self.ended.set()
        self.join(timeout=PUBSUB_POLL_S)


class Worker(SimpleWorker):
    """RQ's SimpleWorker with short heartbeats during a job, frequent maintenance and a quick command listener.

    Upstream behaviour worked around in `subscribe`: RQ 3.0's `Worker.subscribe` starts the listener with
    `pubsub.run_in_thread(sleep_time=60)`. When the worker stops, RQ's `unsubscribe()` unsubscribes and then
    calls `PubSubWorkerThread.stop()`, which in redis-py 8.2 joins the thread with no timeout; the thread,
    left without a subscription, sits in `PubSub.get_message(timeout=60)` waiting for one. A worker told to
    stop (SIGTERM, a deploy) could so take up to a minute to exit after its last job. This is RQ's subscribe
    with only the wait changed; without it, test_a_stopping_worker_leaves_its_command_listener_at_once
    (tests/jobs/test_worker_shutdown.py) takes 60 s and fails.
    """

    # RQ's own reconnect loop (idle workers waiting for a job) backs off up to this, as run_worker's does.
    max_connection_wait_time = RECONNECT_CAP_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("job_monitoring_interval", HEARTBEAT_S)
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_S)
        super().__init__(*args, **kwargs)
        self.stop_requested = False
        """Set when a stop was asked for (SIGTERM, SIGINT, RQ's shutdown command): work() then ended on purpose."""
        self._heartbeat: _JobHeartbeat | None = None

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ's __init__ sets this attribute to None without an annotation, so mypy takes its type to be None.
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_POLL_S, daemon=True, exception_handler=self._pubsub_exception_handler)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # SimpleWorker's rule (the whole job timeout + 60 s) assumes nothing beats during the job; ours beats
        # every job_monitoring_interval (_JobHeartbeat), so RQ's base rule for beating workers applies.
        return BaseWorker.get_heartbeat_ttl(self, job, working_time)

    def prepare_execution(self, job: Job) -> Execution:
        execution = super().prepare_execution(job)
        self._heartbeat = _JobHeartbeat(self, job, execution)
        self._heartbeat.start()
        return execution

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        # RQ logs every exception a job raises with its whole traceback before its exception handlers run, so
        # a handler cannot take it back; an expected, retried failure keeps to the one line retry_or_fail wrote.
        if expected_failure(exc_info[1]):
            return
        super().handle_exception(job, *exc_info)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.end()
                self._heartbeat = None
        self._after_job()

    # Memory (see give_memory_back, should_recycle): run_worker sets the limits; 0 is never, as in tests.
    recycle_after_jobs = 0
    recycle_above_mb = 0
    jobs_done = 0
    recycle_reason: str | None = None

    def _after_job(self) -> None:
        """Give freed memory back; when the worker should start afresh, end work() as a requested stop does."""
        self.jobs_done += 1
        give_memory_back()
        self.recycle_reason = should_recycle(self.jobs_done, resident_mb(), max_jobs=self.recycle_after_jobs,
                                             max_rss_mb=self.recycle_above_mb)
        if self.recycle_reason is not None:
            raise StopRequested  # RQ's work() loop ends on it and tears the worker down cleanly

    def release(self) -> None:
        """Once Redis answers again: what an interrupted teardown left, the worker's registration and listener."""
        try:
            self.register_death()
            self.unsubscribe()
        except RedisError as exc:
            log.warning("worker=%s not released: %s", self.name, exc)


def expected_failure(exc: BaseException | None) -> bool:
    """Whether a job's exception is one it raised on purpose for RQ to retry (a store throttling us, a photo
    host failing for now): retry_or_fail logged it in one line with the render, shop and reason."""
    return isinstance(exc, JobError) and exc.retryable


_fork_parent: tuple[int, bool] | None = None


def _note_fork_parent() -> None:
    global _fork_parent
    _fork_parent = (os.getpid(), threading.current_thread() is threading.main_thread())


def _die_with_parent() -> None:
    """In a child forked by the worker's main thread (RQ's scheduler): SIGTERM when the worker dies.

    RQ forks its scheduler from the worker and the child keeps refreshing the scheduler locks on its own; a
    worker killed outright (SIGKILL, out of memory) left it running, holding the locks, for ever. On SIGTERM
    RQ's scheduler stops and releases its locks, so the next worker schedules.
    """
    if _fork_parent is None or not _fork_parent[1] or _prctl is None:
        return
    if _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return
    if os.getppid() != _fork_parent[0]:
        os._exit(1)  # the worker died before the signal was armed


_prctl: Any = None


def _children_die_with_worker() -> None:
    """Arm _die_with_parent for the children this process forks from now on (Linux; elsewhere nothing)."""
    global _prctl
    if _prctl is not None or not sys.platform.startswith("linux"):
        return
    # Looked up here, not in the child: a child forked from a threaded process should call, not load.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    os.register_at_fork(before=_note_fork_parent, after_in_child=_die_with_parent)


def _wait_for_redis(redis: Redis, stop: threading.Event) -> bool:
    """Ping Redis with capped backoff until it answers (True) or a stop is asked for (False); logs each wait."""
    attempt = 0
    while not stop.is_set():
        try:
            redis.ping()
        except RedisError as exc:
            delay = reconnect_delay(attempt)
            log.warning("worker: Redis does not answer (%s); reconnect attempt %s in %.0f s", exc, attempt + 1,
                        delay)
            attempt += 1
            stop.wait(delay)
            continue
        log.warning("worker: Redis answers again after %s attempt(s); starting a new worker", attempt + 1)
        return True
    return False


# --- memory ------------------------------------------------------------------------------------------------


def resident_mb() -> float:
    """This process's resident memory in MB (2**20 bytes) from /proc; 0.0 where there is no /proc."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def give_memory_back() -> bool:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim); False when nothing went back.

    A job frees its decoded images and model buffers, but glibc keeps most freed heap pages for later use
    unless asked: the worker would stay at its largest job's size. Where malloc_trim does not exist (musl,
    macOS) this does nothing and worker recycling alone bounds the memory.
    """
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))


@functools.cache
def _malloc_trim() -> Any:
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def should_recycle(jobs_done: int, rss_mb: float, *, max_jobs: int, max_rss_mb: int) -> str | None:
    """Pure: why a worker that has run jobs_done jobs and holds rss_mb after its last should start afresh, or None."""
    if max_jobs and jobs_done >= max_jobs:
        return f"ran {jobs_done} jobs (CATALOG_WORKER_MAX_JOBS={max_jobs})"
    if max_rss_mb and rss_mb > max_rss_mb:
        return f"holds {rss_mb:.0f} MB after its job (CATALOG_WORKER_MAX_RSS_MB={max_rss_mb})"
    return None


def recycle(reason: str) -> NoReturn:
    """Replace this process with a fresh run of the same command line: same PID, so a supervisor sees no exit."""
    log.warning("worker: %s; starting afresh", reason)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def run_worker(svc: Services, queues: tuple[str, ...] = ALL_QUEUES, *, burst: bool = False) -> bool:
    """Work the queues until stopped (or until empty with burst). Returns whether any job ran.

    When Redis goes away the RQ worker ends (a job that cannot be recorded, a Redis timeout); unless a stop
    was asked for, a new one is started once Redis answers again, after waits with capped backoff.
    """
    if not burst:
        # Until RQ installs its warm-shutdown handler (after the worker registers and forks its scheduler), no
        # job runs here: a stop asked for meanwhile (a deploy during start-up or right after a recycle) ends the
        # process at once. os._exit, not sys.exit: at exit, multiprocessing would join the scheduler process,
        # which runs until its worker dies, so the worker would never end; the scheduler gets its SIGTERM from
        # the kernel when the worker is gone (_die_with_parent).
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _exit_before_work)
    services.install(svc)
    # SimpleWorker runs each job in this process, so the model loaded here serves every job;
    # a forking worker would pay for it again in each child.
    get_session(svc.config.cutout_model, svc.config.model_dir)
    log.info("worker model=%s queues=%s loaded", svc.config.cutout_model, ",".join(queues))
    read_model_lifecycle(svc)
    if not burst:
        _children_die_with_worker()
    worked = False
    restarts = 0
    while True:
        worker: Worker | None = None
        interrupted: Worker | None = None  # a worker whose teardown Redis cut short
        started = time.monotonic()
        try:
            # RQ's Worker() already talks to Redis (it names its connection), so it is built in here too.
            worker = Worker([get_queue(name, svc.redis) for name in queues], connection=svc.redis,
                            serializer=JSONSerializer)
            if not burst:  # a burst worker ends by itself; recycling is for long-running ones
                worker.recycle_after_jobs = svc.config.worker_max_jobs
                worker.recycle_above_mb = svc.config.worker_max_rss_mb
            # The scheduler moves retries whose backoff has passed (RQ keeps them in its scheduled registry)
            # back onto their queue; without it a job that failed once would never run again.
            worked = worker.work(burst=burst, with_scheduler=True,
                                 logging_level=svc.config.log_level.upper()) or worked
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if burst:
                raise
            interrupted = worker
            log.warning("worker=%s lost Redis: %s", worker.name if worker else "-", exc)
        if worker is not None and worker.recycle_reason is not None:
            recycle(worker.recycle_reason)
        if burst or (worker is not None and worker.stop_requested):
            return worked
        # Ended without being asked to: RQ quit its loop on an error it logged (Redis gone mid-job, a timeout).
        if time.monotonic() - started > 2 * RECONNECT_CAP_S:
            restarts = 0  # it had been working: this is a new outage, not the same one again
        stop = _stop_on_signal()
        stop.wait(reconnect_delay(restarts))
        restarts += 1
        if not _wait_for_redis(svc.redis, stop):
            return worked
        if interrupted is not None:
            interrupted.release()


def read_model_lifecycle(svc: Services) -> int | None:
    """Once at start, when an OpenAI key is set: OpenAI's shutdown dates of its image models into the database
    (catalog_service/model_status.py), so the settings page can warn and refuse. Returns how many were saved.

    A failure is logged in one line and returns None: the dates are a warning ahead of time, never a reason for
    the worker not to start (the next start reads them again).
    """
    if not svc.config.openai_key_set:
        return None
    try:
        client = make_client()
        try:
            dates = read_shutdown_dates(client)
        finally:
            client.close()
        with svc.db.transaction() as session:
            saved = save_shutdown_dates(session, dates)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the worker starts (see the docstring)
        first_line = next(iter(str(exc).splitlines()), "")
        log.warning("worker: OpenAI model shutdown dates not read (%s): %s", type(exc).__name__, first_line)
        return None
    finally:
        svc.db.remove()
    announced = sorted(model for model, day in dates.items() if day is not None)
    log.info("worker: OpenAI models read=%d saved=%d with_shutdown_date=%s", len(dates), saved,
             ",".join(announced) or "-")
    return saved


def _exit_before_work(_signum: int, _frame: FrameType | None) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _stop_on_signal() -> threading.Event:
    """Between two RQ workers nobody handles SIGTERM/SIGINT: they now set the returned event."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
