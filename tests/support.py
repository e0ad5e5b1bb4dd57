"""Helpers several test modules share: running queued jobs the way a worker does, and moving RQ's clock."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis import Redis
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
