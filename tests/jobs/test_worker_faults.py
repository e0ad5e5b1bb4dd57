"""`catalog-service worker` on a bad day: Redis goes away under it, a worker is killed with its scheduler running."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis import Redis

from catalog_service.models import Render, RenderStatus
from catalog_service.services import redis_connection
from jobs.queues import RENDERS, get_queue
from support import free_port, start_redis, stop_redis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOCK = f"rq:scheduler-lock:{RENDERS}"


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`catalog-service worker --queues renders` as a process of its own, stopped (or killed) at the end."""
    with log_path.open("ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker", "--queues", RENDERS],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def wait_until(condition: Callable[[], bool], timeout_s: float, while_alive: subprocess.Popen[bytes] | None = None
               ) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes (or the process `while_alive` has exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if while_alive is not None and while_alive.poll() is not None:
            return condition()
        time.sleep(0.2)
    return condition()


def render_status(app, render_id: int) -> RenderStatus:  # type: ignore[no-untyped-def]
    with app.app_context():
        try:
            return app.extensions["catalog_db"].session().get(Render, render_id).status
        finally:
            app.extensions["catalog_db"].remove()


def schedule_render_due_now(redis: Redis, webhooks, image_server) -> int:  # type: ignore[no-untyped-def]
    """A render whose job waits in RQ's scheduled registry, due already: only a scheduler puts it on the queue."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = int(webhooks.send("product.created", {"id": 7, "title": "Cup", "images": [{"id": 1, "src": src}]}
                                  ).get_json()["render_id"])
    queue = get_queue(RENDERS, redis)
    queue.remove(f"render-{render_id}")
    redis.delete(f"rq:job:render-{render_id}")
    queue.enqueue_at(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5), "jobs.render.render_product", render_id,
                     job_id=f"render-{render_id}")
    assert queue.count == 0
    return render_id


def pid_running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_worker_outlives_a_redis_restart_and_renders_again(
        app, webhooks, image_server, model_session, worker_env, tmp_path) -> None:
    """Redis stops mid-render: the worker waits, logs, reconnects once Redis is back, and renders the next product."""
    port = free_port()
    server = start_redis(port, tmp_path)
    redis = redis_connection(f"redis://127.0.0.1:{port}/0")
    app.extensions["catalog"].redis = redis
    env = {**worker_env, "CATALOG_REDIS_URL": f"redis://127.0.0.1:{port}/0", "CATALOG_LOG_LEVEL": "INFO"}
    log_path = tmp_path / "worker.log"
    slow = image_server.serve("/slow.png", (FIXTURES / "coffee.png").read_bytes(), delay_s=3.0)
    first = webhooks.send("product.created", {"id": 1, "title": "Cup", "images": [{"id": 1, "src": slow}]}
                          ).get_json()["render_id"]
    try:
        with worker_process(env, log_path) as worker:
            assert wait_until(lambda: render_status(app, first) == RenderStatus.RUNNING, 60, worker), \
                log_path.read_text()
            stop_redis(server)  # the render ends with nowhere to record it
            assert wait_until(lambda: "Redis does not answer" in log_path.read_text(), 60, worker), \
                log_path.read_text()
            assert worker.poll() is None, log_path.read_text()

            server = start_redis(port, tmp_path)  # back, and empty
            src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
            second = webhooks.send("product.created", {"id": 2, "title": "Mug", "images": [{"id": 1, "src": src}]}
                                   ).get_json()
            assert second["queued"] is True

            assert wait_until(lambda: render_status(app, second["render_id"]) == RenderStatus.SUCCEEDED, 90,
                              worker), log_path.read_text()
            assert worker.poll() is None
            assert "Redis answers again" in log_path.read_text()
    finally:
        redis.close()
        stop_redis(server)


@pytest.mark.slow
def test_a_killed_workers_scheduler_lets_go_of_its_locks_and_the_next_worker_schedules(
        app, redis, webhooks, image_server, model_session, worker_env, tmp_path) -> None:
    """SIGKILL a worker whose scheduler holds the lock: the scheduler ends and frees it; the next worker schedules."""
    log_path = tmp_path / "worker.log"
    scheduler_pid = 0
    try:
        with worker_process(worker_env, log_path) as first:
            assert wait_until(lambda: redis.exists(LOCK) == 1, 60, first), log_path.read_text()
            holder = redis.get(LOCK).decode()
            # RQ takes the lock before the forked scheduler has written its own record (with its pid): wait for it.
            assert wait_until(lambda: redis.hget(f"rq:scheduler:{holder}", "pid") is not None, 30, first), \
                log_path.read_text()
            scheduler_pid = int(redis.hget(f"rq:scheduler:{holder}", "pid"))
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)

        # Before: the forked scheduler lived on without its worker, refreshing the lock for ever.
        assert wait_until(lambda: redis.exists(LOCK) == 0, 15), f"lock still held by {redis.get(LOCK)!r}"
        assert wait_until(lambda: not pid_running(scheduler_pid), 15)

        render_id = schedule_render_due_now(redis, webhooks, image_server)
        with worker_process(worker_env, log_path) as second:
            assert wait_until(lambda: render_status(app, render_id) == RenderStatus.SUCCEEDED, 60, second), \
                log_path.read_text()
            assert redis.get(LOCK) not in (None, holder.encode())
    finally:
        if scheduler_pid and pid_running(scheduler_pid):
            os.kill(scheduler_pid, signal.SIGKILL)  # the orphan this test made, when the fix is missing


@pytest.mark.slow
def test_a_lock_left_by_a_dead_scheduler_is_taken_over_when_it_expires(
        app, redis, webhooks, image_server, model_session, worker_env, tmp_path) -> None:
    """A worker killed together with its scheduler leaves the lock to expire; a running worker then takes it soon."""
    log_path = tmp_path / "worker.log"
    render_id = schedule_render_due_now(redis, webhooks, image_server)
    redis.set(LOCK, "a-scheduler-killed-with-its-worker", ex=3)  # its last seconds

    with worker_process(worker_env, log_path) as worker:
        # Before: a worker that found the lock taken tried again only at its maintenance, every 10 minutes.
        assert wait_until(lambda: render_status(app, render_id) == RenderStatus.SUCCEEDED, 90, worker), \
            log_path.read_text()
        assert redis.get(LOCK) not in (None, b"a-scheduler-killed-with-its-worker")
