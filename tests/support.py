"""Helpers several test modules share: running queued jobs the way a worker does, moving RQ's clock, and a
redis-server of a test's own for tests that stop and restart Redis (never the suite's shared one)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from catalog_service import services
from jobs.queues import ALL_QUEUES, get_queue
from jobs.worker import Worker


def run_jobs(app, redis: Redis, queues: Sequence[str] = ALL_QUEUES) -> float:  # type: ignore[no-untyped-def]
    """Run every queued job in this process, as `catalog-service worker --burst` does; returns the seconds taken."""
    started = time.perf_counter()
    services.install(app.extensions["catalog"])
    Worker([get_queue(name, redis) for name in queues], connection=redis, serializer=JSONSerializer).work(burst=True)
    return time.perf_counter() - started


def requeue_due_retries(redis: Redis, queue: str, *, now: float) -> int:
    """Put back on the queue the retries RQ scheduled before `now`: a test moves the clock instead of sleeping."""
    scheduled = ScheduledJobRegistry(queue, connection=redis, serializer=JSONSerializer)
    due = scheduled.get_jobs_to_schedule(timestamp=int(now))
    for job_id in due:
        scheduled.requeue(job_id)
    return len(due)


def free_port() -> int:
    """A TCP port on loopback nobody listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server on `port` without persistence (a restart comes back empty); return once it answers."""
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            Redis(port=port, socket_connect_timeout=0.2).ping()
            return process
        except RedisError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    """Stop a redis-server started by start_redis and wait for it to be gone."""
    process.terminate()
    process.wait(timeout=10)
