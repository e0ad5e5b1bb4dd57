"""Enqueueing through RQ's own unique enqueue: what a worker reads back; once per id; bounded when Redis is down."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from catalog_service.services import redis_connection
from jobs.queues import (
    FAILURE_TTL_S,
    PUSH_RETRY_INTERVALS_S,
    PUSHES,
    RENDER_RETRY_INTERVALS_S,
    RENDERS,
    RESULT_TTL_S,
    enqueue_push,
    enqueue_render,
    enqueue_takedown,
    get_queue,
)

KINDS = [
    # our enqueue, its queue, the function RQ runs, the job id's prefix, default timeout, retry intervals
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
    return get_queue(queue, redis).get_job_ids()


def fetch(redis: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)


@pytest.mark.parametrize(("enqueue", "queue", "func", "prefix", "timeout_s", "intervals"), KINDS)
def test_rq_reads_the_job_back_with_its_function_timeout_retries_and_ttls(
    client: Redis, redis: Redis, enqueue: Callable[..., bool], queue: str, func: str, prefix: str, timeout_s: int,
    intervals: list[int],
) -> None:
    """Each kind of job is stored with its function, id argument, timeout, retry intervals and TTLs, and queued."""
    assert enqueue(client, 41) is True

    job = fetch(redis, f"{prefix}-41")
    assert (job.func_name, job.args, job.kwargs) == (func, [41], {})
    assert job.get_status(refresh=False) == JobStatus.QUEUED
    assert (job.origin, job.timeout, job.result_ttl, job.failure_ttl) == (queue, timeout_s, RESULT_TTL_S, FAILURE_TTL_S)
    assert (job.retries_left, job.retry_intervals) == (len(intervals), intervals)
    assert job.enqueued_at is not None and abs(job.enqueued_at.timestamp() - time.time()) < 60
    assert queued_ids(redis, queue) == [f"{prefix}-41"]
    assert redis.smembers("rq:queues") == {f"rq:queue:{queue}".encode()}


def test_a_timeout_given_by_the_caller_is_the_jobs_timeout(client: Redis, redis: Redis) -> None:
    """The render timeout from the config reaches RQ as the job's timeout."""
    enqueue_render(client, 7, timeout_s=900)

    assert fetch(redis, "render-7").timeout == 900


def test_one_queue_object_per_name_and_client(client: Redis, redis: Redis) -> None:
    """get_queue builds a queue once per name and Redis client and hands the same one back."""
    assert get_queue(RENDERS, client) is get_queue(RENDERS, client)
    assert get_queue(RENDERS, client) is not get_queue(PUSHES, client)
    assert get_queue(RENDERS, client) is not get_queue(RENDERS, redis)


def test_the_same_job_queued_twice_is_in_the_queue_once(client: Redis, redis: Redis) -> None:
    """A second enqueue while the first job waits keeps the waiting one, unchanged, and queues nothing more."""
    assert enqueue_render(client, 5, timeout_s=900) is True
    assert enqueue_render(client, 5, timeout_s=600) is True

    assert queued_ids(redis, RENDERS) == ["render-5"]
    assert fetch(redis, "render-5").timeout == 900


def fail_for_good(redis: Redis, job: Job) -> None:
    """As a worker leaves a job whose retries ran out: off the queue, failed, in the failed registry."""
    get_queue(job.origin, redis).remove(job)
    job.set_status(JobStatus.FAILED)
    FailedJobRegistry(job.origin, connection=redis, serializer=JSONSerializer).add(job, ttl=FAILURE_TTL_S)


@pytest.mark.parametrize("end", [fail_for_good, lambda _redis, job: job.cancel()], ids=["failed", "canceled"])
def test_a_job_that_ended_makes_way_for_a_new_attempt(
        client: Redis, redis: Redis, end: Callable[[Redis, Job], None]) -> None:
    """A push job kept after it ended (for inspection) does not block the next push of that render."""
    enqueue_push(client, 9)
    end(redis, fetch(redis, "push-9"))
    assert queued_ids(redis, PUSHES) == []

    assert enqueue_push(client, 9) is True

    assert queued_ids(redis, PUSHES) == ["push-9"]
    assert fetch(redis, "push-9").get_status() == JobStatus.QUEUED
    assert FailedJobRegistry(PUSHES, connection=redis, serializer=JSONSerializer).get_job_ids() == []


def test_a_queue_is_registered_again_after_redis_lost_its_data(client: Redis, redis: Redis) -> None:
    """After a Redis restart that lost its data, the next enqueue queues and registers the queue again."""
    enqueue_render(client, 1)
    redis.flushall()

    assert enqueue_render(client, 1) is True

    assert redis.smembers("rq:queues") == {b"rq:queue:renders"}
    assert queued_ids(redis, RENDERS) == ["render-1"]


def test_a_connection_the_server_dropped_is_replaced(client: Redis, redis: Redis) -> None:
    """A client connection the server closed is reconnected by the client's retry; the enqueue succeeds."""
    enqueue_render(client, 1)
    killed = redis.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1

    assert enqueue_render(client, 2) is True

    assert queued_ids(redis, RENDERS) == ["render-1", "render-2"]


def test_with_redis_down_the_answer_is_false_and_comes_quickly() -> None:
    """Nothing listens: the enqueue gives up after the client's bounded retries and says False."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = redis_connection(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()

    assert enqueue_render(down, 1) is False

    assert time.monotonic() - started < 10  # three refused connects and two short backoffs
    down.close()


def test_threads_enqueueing_at_once_each_get_their_job(client: Redis, redis: Redis) -> None:
    """Eight threads sharing one client each get every job they queue."""
    answers: list[bool] = []

    def send(first: int) -> None:
        answers.extend(enqueue_render(client, first + i) for i in range(25))

    threads = [threading.Thread(target=send, args=(1000 * n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [True] * 200
    assert sorted(queued_ids(redis, RENDERS)) == sorted(f"render-{1000 * n + i}" for n in range(8) for i in range(25))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_enqueues_on_a_connection_of_its_own(client: Redis, redis: Redis) -> None:
    """A process forked after its parent queued (a preloaded server) queues alongside it without crossed replies."""
    enqueue_render(client, 0)  # the parent has its connection and queue before the fork
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit code
        ok = all(enqueue_render(client, 10_000 + i) for i in range(100))
        os._exit(0 if ok else 1)
    # Both at once. On a shared socket one process reads the other's reply, and the one left without
    # waits out its 5 s read timeout; on connections of their own, these enqueues take well under that.
    started = time.monotonic()
    parent_ok = all(enqueue_render(client, 20_000 + i) for i in range(100))
    _, status = os.waitpid(child, 0)

    assert parent_ok and os.waitstatus_to_exitcode(status) == 0
    assert time.monotonic() - started < 4
    assert redis.llen("rq:queue:renders") == 201
