"""The only place queues are built: names, timeouts, retries, job ids."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import weakref
import zlib
from typing import Any

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.connection import AbstractConnection
from redis.exceptions import RedisError
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer, Serializer
from rq.utils import get_call_string, utcformat

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

FAILURE_TTL_S = 7 * 24 * 3600
"""A failed job's hash is kept a week for inspection."""

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


# Enqueueing writes the job exactly as RQ's own unique enqueue does (Queue.enqueue_call(unique=True)): the
# job hash RQ's Job.to_dict() makes, pushed on the queue only when no job has that id, in one atomic
# script; it also registers the queue in RQ's set of queues, as every RQ enqueue does. RQ and redis-py
# took about a third of a webhook's CPU to do that (a Job object, 40 arguments encoded one by one, a pool
# checkout with a readiness poll); here what never changes for a kind of job is packed once per process,
# and the command goes out on a connection kept for it. tests/jobs/test_queues.py compares the result
# with RQ's own enqueue field by field, so an RQ upgrade that changes the format fails there.
_ENQUEUE_SCRIPT = b"""
if redis.call("EXISTS", KEYS[1]) == 1 then
    return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV, 2))
redis.call("RPUSH", KEYS[2], ARGV[1])
redis.call("SADD", KEYS[3], KEYS[2])
return 1
"""
# KEYS: the job's hash, the queue's list, RQ's set of queues. ARGV: the job id, then field, value, ...


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


_EVAL_HEAD_ARGS = (b"EVAL", _ENQUEUE_SCRIPT, b"3")  # the command, the script, its number of keys
_EVAL_HEAD = b"".join(map(_bulk, _EVAL_HEAD_ARGS))


@dataclasses.dataclass(frozen=True)
class _JobKind:
    """What every job of one function on one queue shares, RESP-packed once."""

    func: str
    keys: bytes  # packed: the queue's key and RQ's set of queues (the job's key, first, varies)
    fixed: bytes  # packed: the field/value pairs that are the same for every job of this kind
    count: int  # how many arguments _EVAL_HEAD, keys and fixed hold together


# Fields that differ from job to job; everything else in the hash comes from the kind.
_PER_JOB_FIELDS = ("created_at", "enqueued_at", "data", "description")


_KINDS: dict[tuple[str, str, int, tuple[int, ...]], _JobKind] = {}


def _job_kind(connection: Redis, queue: str, func: str, timeout_s: int, retry_intervals: list[int]) -> _JobKind:
    """This kind's packed fixed part, made on first use (RQ's Job wants a client; nothing is sent)."""
    key = (queue, func, timeout_s, tuple(retry_intervals))
    kind = _KINDS.get(key)
    if kind is None:
        kind = _KINDS[key] = _make_job_kind(connection, *key)
    return kind


def _make_job_kind(connection: Redis, queue: str, func: str, timeout_s: int, retry_intervals: tuple[int, ...]
                   ) -> _JobKind:
    """The fixed part of this kind's job hash, taken from a Job that RQ itself builds."""
    job = Job.create(func, args=(0,), id="kind", timeout=timeout_s, result_ttl=RESULT_TTL_S,
                     failure_ttl=FAILURE_TTL_S, origin=queue, serializer=_SERIALIZER, connection=connection,
                     retry=Retry(max=len(retry_intervals), interval=list(retry_intervals)),
                     status=JobStatus.QUEUED)
    encode = connection.get_encoder().encode  # as redis-py sends a value (JobStatus by its value)
    fields = {key: value for key, value in job.to_dict().items() if value is not None and key not in _PER_JOB_FIELDS}
    fixed = [encode(part) for key, value in fields.items() for part in (key, value)]
    keys = [encode(Queue.redis_queue_namespace_prefix + queue), encode(Queue.redis_queues_keys)]
    return _JobKind(func=func, keys=b"".join(map(_bulk, keys)), fixed=b"".join(map(_bulk, fixed)),
                    count=len(_EVAL_HEAD_ARGS) + len(keys) + len(fixed))


def _packed_enqueue(kind: _JobKind, job_id: str, object_id: int, now: dt.datetime) -> bytes:
    args = (object_id,)
    stamp = utcformat(now).encode()
    data = zlib.compress(_SERIALIZER.dumps((kind.func, None, args, {})))
    description = get_call_string(kind.func, args, {}, max_length=75) or ""
    varying = (
        (Job.redis_job_namespace_prefix + job_id).encode(),  # the first key; the queue's two follow
        job_id.encode(), b"created_at", stamp, b"enqueued_at", stamp, b"data", data, b"description",
        description.encode(),
    )
    return b"".join((b"*%d\r\n" % (kind.count + len(varying)), _EVAL_HEAD, _bulk(varying[0]), kind.keys,
                     *map(_bulk, varying[1:]), kind.fixed))


class _Sender:
    """One Redis connection per client and process, kept for enqueues, and used by one thread at a time.

    Taken from the client's own pool, so the client's settings (timeouts, retries, TLS, password) apply and
    closing the client closes it; a forked child (gunicorn's workers) takes a connection of its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: AbstractConnection | None = None
        self.pid = 0

    def call(self, client: Redis, packed: bytes) -> Any:
        with self.lock:
            if self.connection is None or self.pid != os.getpid():
                self.connection = client.connection_pool.get_connection()
                self.pid = os.getpid()
            connection = self.connection

            def send() -> Any:
                connection.send_packed_command([packed])
                return connection.read_response()

            # The client's bounded retry: a dropped connection is reconnected, a down server is given up on.
            return connection.retry.call_with_retry(send, lambda _error: connection.disconnect())


# Per client, and no reference back to it: a client that is dropped takes its sender along.
_SENDERS: weakref.WeakKeyDictionary[Redis, _Sender] = weakref.WeakKeyDictionary()
_SENDERS_LOCK = threading.Lock()


def _sender(client: Redis) -> _Sender:
    sender = _SENDERS.get(client)
    if sender is None:
        with _SENDERS_LOCK:
            sender = _SENDERS.setdefault(client, _Sender())
    return sender


def _enqueue(connection: Redis, queue: str, func: str, object_id: int, *, timeout_s: int,
             retry_intervals: list[int], prefix: str = "") -> bool:
    job_id = f"{prefix or _JOB_PREFIX[queue]}-{object_id}"
    kind = _job_kind(connection, queue, func, timeout_s, retry_intervals)
    try:
        packed = _packed_enqueue(kind, job_id, object_id, dt.datetime.now(dt.timezone.utc))
        if _sender(connection).call(connection, packed):
            return True
        # A job under this id still exists. If it is waiting or running, that is the one to keep; if it
        # already ended (a failed push kept for inspection), it makes way for the new attempt.
        try:
            old = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            if old.get_status(refresh=False) in _ENDED:
                old.delete()
                return _enqueue(connection, queue, func, object_id, timeout_s=timeout_s,
                                retry_intervals=retry_intervals, prefix=prefix)
        except NoSuchJobError:
            pass
        log.info("job=%s already queued", job_id)
        return True
    except RedisError as exc:
        # The row is committed; the sweeper finds it again. The caller still answers the shop.
        log.error("job=%s not queued: %s", job_id, exc)
        return False


def enqueue_render(connection: Redis, render_id: int, *, timeout_s: int = 600) -> bool:
    """Queue the render job for a committed Render row. False when Redis did not take it."""
    return _enqueue(connection, RENDERS, "jobs.render.render_product", render_id,
                    timeout_s=timeout_s, retry_intervals=RENDER_RETRY_INTERVALS_S)


def enqueue_push(connection: Redis, render_id: int, *, timeout_s: int = 300) -> bool:
    """Queue the push of a render's assets to its shop."""
    return _enqueue(connection, PUSHES, "jobs.push.push_render", render_id,
                    timeout_s=timeout_s, retry_intervals=PUSH_RETRY_INTERVALS_S)


def enqueue_takedown(connection: Redis, asset_id: int, *, timeout_s: int = 300) -> bool:
    """Queue taking one rejected, already pushed asset off its shop's product (job id takedown-<asset id>)."""
    return _enqueue(connection, PUSHES, "jobs.push.take_down_asset", asset_id, prefix="takedown",
                    timeout_s=timeout_s, retry_intervals=PUSH_RETRY_INTERVALS_S)
