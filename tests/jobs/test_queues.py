"""Enqueueing: the job RQ's workers read, exactly as RQ's own unique enqueue writes it; once per id; bounded."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from rq import Retry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from jobs.queues import (
    FAILURE_TTL_S, PUSH_RETRY_INTERVALS_S, PUSHES, RENDER_RETRY_INTERVALS_S, RENDERS, RESULT_TTL_S, _JSONSerializer,
    enqueue_push, enqueue_render, enqueue_takedown, get_queue, redis_connection,
)

KINDS = [
    # our enqueue, its queue, the function RQ runs, the job id's prefix, timeout, retry intervals
    pytest.param(enqueue_render, RENDERS, "jobs.render.render_product", "render", 600, RENDER_RETRY_INTERVALS_S,
                 id="render"),
    pytest.param(enqueue_push, PUSHES, "jobs.push.push_render", "push", 300, PUSH_RETRY_INTERVALS_S, id="push"),
    pytest.param(enqueue_takedown, PUSHES, "jobs.push.take_down_asset", "takedown", 300, PUSH_RETRY_INTERVALS_S,
                 id="takedown"),
]


@pytest.fixture
def client(redis_url: str, redis: Redis) -> Iterator[Redis]:
    """The client the app builds (its timeouts and retries), on the suite's flushed Redis."""
    connection = redis_connection(redis_url)
    yield connection
    connection.close()


def queued_ids(redis: Redis, queue: str) -> list[str]:
    return [job_id.decode() for job_id in redis.lrange(f"rq:queue:{queue}", 0, -1)]


@pytest.mark.parametrize(("enqueue", "queue", "func", "prefix", "timeout_s", "intervals"), KINDS)
def test_a_job_is_stored_as_rqs_own_unique_enqueue_stores_it(
    client: Redis, redis: Redis, enqueue: Callable[..., bool], queue: str, func: str, prefix: str, timeout_s: int,
    intervals: list[int],
) -> None:
    assert enqueue(client, 41, timeout_s=timeout_s) is True
    get_queue(queue, redis).enqueue_call(
        func, args=(42,), job_id=f"{prefix}-42", timeout=timeout_s, result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S, retry=Retry(max=len(intervals), interval=intervals), unique=True,
    )

    ours, rqs = redis.hgetall(f"rq:job:{prefix}-41"), redis.hgetall(f"rq:job:{prefix}-42")
    assert set(ours) == set(rqs)
    for field in (b"created_at", b"enqueued_at"):
        assert len(ours[field]) == len(rqs[field]) and ours[field].endswith(b"Z")
    assert json.loads(zlib.decompress(ours[b"data"])) == [func, None, [41], {}]
    assert json.loads(zlib.decompress(rqs[b"data"])) == [func, None, [42], {}]
    assert ours[b"description"] == rqs[b"description"].replace(b"(42)", b"(41)") == f"{func}(41)".encode()
    varying = {b"created_at", b"enqueued_at", b"data", b"description"}
    assert {k: v for k, v in ours.items() if k not in varying} == {k: v for k, v in rqs.items() if k not in varying}
    assert queued_ids(redis, queue) == [f"{prefix}-41", f"{prefix}-42"]
    assert redis.smembers("rq:queues") == {f"rq:queue:{queue}".encode()}


def test_rq_reads_the_job_back_with_its_timeout_retries_and_ttls(client: Redis, redis: Redis) -> None:
    enqueue_render(client, 7, timeout_s=900)

    job = Job.fetch("render-7", connection=redis, serializer=_JSONSerializer)
    assert (job.func_name, job.args, job.kwargs) == ("jobs.render.render_product", [7], {})
    assert job.get_status(refresh=False) == JobStatus.QUEUED
    assert (job.origin, job.timeout, job.result_ttl, job.failure_ttl) == (RENDERS, 900, 0, FAILURE_TTL_S)
    assert (job.retries_left, job.retry_intervals) == (3, RENDER_RETRY_INTERVALS_S)
    assert job.enqueued_at is not None and abs(job.enqueued_at.timestamp() - time.time()) < 60
    assert get_queue(RENDERS, redis).job_ids == ["render-7"]


def test_the_same_job_queued_twice_is_in_the_queue_once(client: Redis, redis: Redis) -> None:
    assert enqueue_render(client, 5) is True
    assert enqueue_render(client, 5) is True  # the waiting one is kept

    assert queued_ids(redis, RENDERS) == ["render-5"]


def test_a_job_that_ended_makes_way_for_a_new_attempt(client: Redis, redis: Redis) -> None:
    enqueue_push(client, 9)
    # A worker took it off the queue and it failed for good; its hash is kept for inspection.
    redis.lrem("rq:queue:pushes", 0, "push-9")
    failed = Job.fetch("push-9", connection=redis, serializer=_JSONSerializer)
    failed.set_status(JobStatus.FAILED)
    FailedJobRegistry(PUSHES, connection=redis).add(failed, ttl=FAILURE_TTL_S)

    assert enqueue_push(client, 9) is True

    assert queued_ids(redis, PUSHES) == ["push-9"]
    assert Job.fetch("push-9", connection=redis, serializer=_JSONSerializer).get_status() == JobStatus.QUEUED


def test_a_queue_is_registered_again_after_redis_lost_its_data(client: Redis, redis: Redis) -> None:
    enqueue_render(client, 1)
    redis.flushall()

    enqueue_render(client, 2)

    assert redis.smembers("rq:queues") == {b"rq:queue:renders"}
    assert queued_ids(redis, RENDERS) == ["render-2"]


def test_a_connection_the_server_dropped_is_replaced(client: Redis, redis: Redis) -> None:
    enqueue_render(client, 1)
    killed = redis.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1

    assert enqueue_render(client, 2) is True

    assert queued_ids(redis, RENDERS) == ["render-1", "render-2"]


def test_with_redis_down_the_answer_is_false_and_comes_quickly() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = redis_connection(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()

    assert enqueue_render(down, 1) is False

    assert time.monotonic() - started < 10  # three refused connects and two short backoffs
    down.close()


def test_threads_enqueueing_at_once_each_get_their_job(client: Redis, redis: Redis) -> None:
    answers: list[bool] = []

    def send(first: int) -> None:
        answers.extend(enqueue_render(client, first + i) for i in range(50))

    threads = [threading.Thread(target=send, args=(1000 * n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [True] * 400
    assert sorted(queued_ids(redis, RENDERS)) == sorted(f"render-{1000 * n + i}" for n in range(8) for i in range(50))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_enqueues_on_a_connection_of_its_own(client: Redis, redis: Redis) -> None:
    enqueue_render(client, 0)  # the parent has its connection before the fork, as a preloaded server might
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit code
        ok = all(enqueue_render(client, 10_000 + i) for i in range(300))
        os._exit(0 if ok else 1)
    # Both at once. On a shared socket one process reads the other's reply, and the one left without
    # waits out its 5 s read timeout; on connections of their own, 300 enqueues take well under a second.
    started = time.monotonic()
    parent_ok = all(enqueue_render(client, 20_000 + i) for i in range(300))
    _, status = os.waitpid(child, 0)

    assert parent_ok and os.waitstatus_to_exitcode(status) == 0
    assert time.monotonic() - started < 4
    assert redis.llen("rq:queue:renders") == 601
