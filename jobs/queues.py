"""The only place queues are built: names, timeouts, retries, job ids.

Jobs go in through RQ's own `Queue.enqueue_call(..., job_id=..., unique=True)`: one job per render (or asset)
at a time, whoever queues it (a webhook, the API, the sweeper).
"""

from __future__ import annotations

import functools
import logging

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

log = logging.getLogger(__name__)

RENDERS = "renders"
PUSHES = "pushes"
BACKFILL = "backfill"
ALL_QUEUES = (RENDERS, PUSHES, BACKFILL)
"""In the order a worker takes them: webhook and manual renders first, a catalog backfill's work last."""

RENDER_RETRY_INTERVALS_S = [15, 60, 300]
"""Seconds before the 1st, 2nd and 3rd retry of a render that failed transiently (fetch, provider)."""

PUSH_RETRY_INTERVALS_S = [10, 60, 300, 900]
"""Seconds before each retry of a push that the shop refused transiently (5xx, throttling)."""

RESULT_TTL_S = 0
"""A finished job's hash is dropped at once: the database, not Redis, keeps the outcome."""

FAILURE_TTL_S = 7 * 24 * 3600
"""A failed job's hash is kept a week for inspection."""

_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


@functools.lru_cache(maxsize=16)
def get_queue(name: str, connection: Redis) -> Queue:
    """The RQ queue `name` on this Redis client, built once per name and client (a process has one client)."""
    # JSON, not pickle: our job arguments are ids, and JSON cannot smuggle objects between deploys.
    return Queue(name, connection=connection, serializer=JSONSerializer)


def _ended_job_removed(connection: Redis, job_id: str) -> bool:
    """Delete the job under this id if it has ended; False when it is still waiting or running."""
    try:
        old = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return True  # it ended and went between our enqueue and this look
    if old.get_status(refresh=False) not in _ENDED:
        return False
    old.delete()
    return True


def _enqueue(connection: Redis, queue: str, func: str, object_id: int, *, job_id: str, timeout_s: int,
             retry_intervals: list[int]) -> bool:
    def enqueue_call() -> None:
        get_queue(queue, connection).enqueue_call(
            func, args=(object_id,), job_id=job_id, timeout=timeout_s, result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S, retry=Retry(max=len(retry_intervals), interval=retry_intervals),
            unique=True)

    try:
        try:
            enqueue_call()
        except DuplicateJobError:
            # A job under this id still exists. If it is waiting or running, that is the one to keep; if it
            # already ended (a failed push kept for inspection), it makes way for the new attempt.
            if not _ended_job_removed(connection, job_id):
                log.info("job=%s already queued", job_id)
                return True
            enqueue_call()
        return True
    except DuplicateJobError:
        log.info("job=%s queued meanwhile by another process", job_id)
        return True
    except RedisError as exc:
        # The row is committed; the sweeper finds it again. The caller still answers the shop.
        log.error("job=%s not queued: %s", job_id, exc)
        return False


def enqueue_render(connection: Redis, render_id: int, *, timeout_s: int = 600, backfill: bool = False) -> bool:
    """Queue the render job for a committed Render row (job id render-<id>). False when Redis did not take it.

    A backfill's render goes on the backfill queue, which workers take only when no other render waits."""
    return _enqueue(connection, BACKFILL if backfill else RENDERS, "jobs.render.render_product", render_id,
                    job_id=f"render-{render_id}", timeout_s=timeout_s, retry_intervals=RENDER_RETRY_INTERVALS_S)


def enqueue_collect(connection: Redis, backfill_id: int, *, timeout_s: int = 3600) -> bool:
    """Queue reading a backfill's products from its shop (job id collect-<backfill id>)."""
    return _enqueue(connection, BACKFILL, "jobs.backfill.collect_backfill", backfill_id,
                    job_id=f"collect-{backfill_id}", timeout_s=timeout_s, retry_intervals=RENDER_RETRY_INTERVALS_S)


def enqueue_push(connection: Redis, render_id: int, *, timeout_s: int = 300) -> bool:
    """Queue the push of a render's assets to its shop (job id push-<render id>)."""
    return _enqueue(connection, PUSHES, "jobs.push.push_render", render_id, job_id=f"push-{render_id}",
                    timeout_s=timeout_s, retry_intervals=PUSH_RETRY_INTERVALS_S)


def enqueue_takedown(connection: Redis, asset_id: int, *, timeout_s: int = 300) -> bool:
    """Queue taking one rejected, already pushed asset off its shop's product (job id takedown-<asset id>)."""
    return _enqueue(connection, PUSHES, "jobs.push.take_down_asset", asset_id, job_id=f"takedown-{asset_id}",
                    timeout_s=timeout_s, retry_intervals=PUSH_RETRY_INTERVALS_S)
