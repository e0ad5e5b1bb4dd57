"""The only place queues are built: names, timeouts, retries, job ids."""

from __future__ import annotations

import logging

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer, Serializer

log = logging.getLogger(__name__)

RENDERS = "renders"
PUSHES = "pushes"
ALL_QUEUES = (RENDERS, PUSHES)
_JOB_PREFIX = {RENDERS: "render", PUSHES: "push"}  # job ids render-<render id>, push-<render id>

RENDER_RETRY_INTERVALS_S = [15, 60, 300]
"""Seconds before the 1st, 2nd and 3rd retry of a render that failed transiently (fetch, provider)."""

PUSH_RETRY_INTERVALS_S = [10, 60, 300, 900]
"""Seconds before each retry of a push that the shop refused transiently (5xx, throttling)."""

_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}

RESULT_TTL_S = 0
"""A finished job's hash is dropped at once: the database, not Redis, keeps the outcome."""


REDIS_CONNECT_TIMEOUT_S = 1.0
"""A webhook waits at most about this long per try for Redis before answering without queueing."""

REDIS_SOCKET_TIMEOUT_S = 5.0
"""Longest wait for one Redis reply."""


def redis_connection(url: str) -> Redis:
    """A Redis client with bounded timeouts and retries: a Redis outage never stalls a webhook for long."""
    return Redis.from_url(
        url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S, socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        retry=RedisRetry(ExponentialBackoff(cap=0.5, base=0.1), retries=2), health_check_interval=30,
    )


class _JSONSerializer(JSONSerializer, Serializer):
    """RQ's JSON serializer, declared a Serializer.

    RQ checks that its serializer fits the Serializer protocol on every job it builds; on Python 3.11 a
    serializer that does not say so is inspected attribute by attribute, twice per job (1% of a webhook).
    """


_SERIALIZER = _JSONSerializer()


def get_queue(name: str, connection: Redis) -> Queue:
    # JSON, not pickle: our job arguments are ids, and JSON cannot smuggle objects between deploys.
    return Queue(name, connection=connection, serializer=_SERIALIZER)


def _known_queue(connection: Redis, name: str) -> Queue | None:
    """This process's Queue for `name` on `connection`, once one has been registered with RQ."""
    return connection.__dict__.get("_catalog_queues", {}).get(name)


def _enqueue(connection: Redis, queue: str, func: str, object_id: int, *, timeout_s: int, retry: Retry,
             prefix: str = "") -> bool:
    job_id = f"{prefix or _JOB_PREFIX[queue]}-{object_id}"
    try:
        # RQ adds the queue to its set of known queues on every enqueue, a round trip of its own. That
        # goes into this pipeline, sent once per connection and queue: a unique enqueue ignores the
        # pipeline for the job itself (one atomic script), so only the registration waits here. The Queue
        # is kept on the connection (building one per webhook cost more than the enqueue's own work).
        registration = connection.pipeline()
        known = _known_queue(connection, queue)
        target = known or get_queue(queue, connection)
        target.enqueue_call(
            func, args=(object_id,), job_id=job_id, timeout=timeout_s, result_ttl=RESULT_TTL_S,
            failure_ttl=7 * 24 * 3600, retry=retry, unique=True, pipeline=registration,
        )
        if known is None:
            registration.execute()
            connection.__dict__.setdefault("_catalog_queues", {})[queue] = target
    except DuplicateJobError:
        # A job under this id still exists. If it is waiting or running, that is the one to keep; if it
        # already ended (a failed push kept for inspection), it makes way for the new attempt.
        try:
            old = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            if old.get_status(refresh=False) in _ENDED:
                old.delete()
                return _enqueue(connection, queue, func, object_id, timeout_s=timeout_s, retry=retry, prefix=prefix)
        except (NoSuchJobError, RedisError):
            pass
        log.info("job=%s already queued", job_id)
    except RedisError as exc:
        # The row is committed; the sweeper finds it again. The caller still answers the shop.
        log.error("job=%s not queued: %s", job_id, exc)
        return False
    return True


def enqueue_render(connection: Redis, render_id: int, *, timeout_s: int = 600) -> bool:
    """Queue the render job for a committed Render row. False when Redis did not take it."""
    return _enqueue(connection, RENDERS, "jobs.render.render_product", render_id,
                    timeout_s=timeout_s, retry=Retry(max=len(RENDER_RETRY_INTERVALS_S), interval=RENDER_RETRY_INTERVALS_S))


def enqueue_push(connection: Redis, render_id: int, *, timeout_s: int = 300) -> bool:
    """Queue the push of a render's assets to its shop."""
    return _enqueue(connection, PUSHES, "jobs.push.push_render", render_id,
                    timeout_s=timeout_s, retry=Retry(max=len(PUSH_RETRY_INTERVALS_S), interval=PUSH_RETRY_INTERVALS_S))


def enqueue_takedown(connection: Redis, asset_id: int, *, timeout_s: int = 300) -> bool:
    """Queue taking one rejected, already pushed asset off its shop's product (job id takedown-<asset id>)."""
    return _enqueue(connection, PUSHES, "jobs.push.take_down_asset", asset_id, prefix="takedown",
                    timeout_s=timeout_s, retry=Retry(max=len(PUSH_RETRY_INTERVALS_S), interval=PUSH_RETRY_INTERVALS_S))
