"""The sweeper: renders and pushes the database says are waiting, but whose RQ job is gone, are queued again.

The database is the source of truth and Redis only carries work: a webhook taken while Redis was down,
a worker killed mid-job, or a Redis restart that lost its data all leave rows whose job no longer
exists. `sweep()` finds them and enqueues them again, a bounded number of times, with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog_service.models import Asset, Backfill, BackfillStatus, PushStatus, Render, RenderStatus
from catalog_service.services import Services

from .backfill import feed_all
from .batches import run_batches
from .queues import ALL_QUEUES, PUSHES, RENDERS, enqueue_collect, enqueue_push, enqueue_render, enqueue_takedown

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""A render re-queued this many times by the sweeper is failed for good, with the reason."""

GRACE_S = 60
"""A row younger than this is left alone: its own enqueue (right after commit) may still be on the way."""

BACKOFF_CAP_S = 3600
"""The longest wait between two sweeper re-queues of one render (2**attempts minutes, capped)."""

_ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def job_alive(redis: Redis, job_id: str) -> bool:
    """Whether RQ still has a job that will run or is running."""
    try:
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status(refresh=False) in _ALIVE
    except NoSuchJobError:
        return False


def due(updated_at: dt.datetime, attempts: int, now: dt.datetime) -> bool:
    """Pure: is a stuck row old enough to be queued again? Grace first, then 2**attempts minutes, capped."""
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=dt.UTC)
    wait = GRACE_S if attempts == 0 else min(BACKOFF_CAP_S, 60 * 2 ** attempts)
    return (now - updated_at).total_seconds() >= wait


def sweep(session: Session, redis: Redis, *, now: dt.datetime, render_timeout_s: int = 1800,
          push_timeout_s: int = 300) -> dict[str, int]:
    """Queue again what the database waits for and Redis lost; fail what has been tried too often."""
    counts = {"renders": 0, "pushes": 0, "given_up": 0, "takedowns": 0}
    for name in ALL_QUEUES:
        # A dead worker's jobs: RQ retries or fails them once their heartbeat has expired (workers beat every
        # HEARTBEAT_S and an entry lapses 60 s after the last beat: jobs/worker.py).
        StartedJobRegistry(name, connection=redis, serializer=JSONSerializer).cleanup(timestamp=now.timestamp())
    waiting = session.scalars(
        select(Render).where(Render.status.in_([RenderStatus.QUEUED, RenderStatus.RUNNING]))).all()
    for render in waiting:
        if job_alive(redis, f"render-{render.id}") or not due(render.updated_at, render.attempts, now):
            continue
        if render.attempts >= MAX_ATTEMPTS:
            render.status, render.finished_at = RenderStatus.FAILED, now
            render.last_error = f"Gave up after {render.attempts} attempts; regenerate the product to try again."
            counts["given_up"] += 1
            continue
        render.status, render.updated_at = RenderStatus.QUEUED, now
        if enqueue_render(redis, render.id, timeout_s=render_timeout_s, backfill=render.trigger == "backfill"):
            counts["renders"] += 1
    # A backfill still reading its shop's catalog whose collect job is gone (a flushed Redis, a killed worker).
    collecting = session.scalars(select(Backfill).where(Backfill.status == BackfillStatus.COLLECTING)).all()
    for backfill in collecting:
        if not job_alive(redis, f"collect-{backfill.id}") and due(backfill.updated_at, 0, now):
            enqueue_collect(redis, backfill.id)
    finished = session.scalars(
        select(Render.id).join(Asset, Asset.render_id == Render.id)
        .where(Asset.push_status == PushStatus.PENDING,
               Render.status.in_([RenderStatus.SUCCEEDED, RenderStatus.PARTIAL]))
        .distinct()).all()
    for render_id in finished:
        if not job_alive(redis, f"push-{render_id}") and enqueue_push(redis, render_id, timeout_s=push_timeout_s):
            counts["pushes"] += 1
    # Rejected after they were pushed: each waits for the job that takes it off the shop.
    removing = session.scalars(select(Asset).where(Asset.push_status == PushStatus.REMOVING)).all()
    for asset in removing:
        if job_alive(redis, f"takedown-{asset.id}") or not due(asset.updated_at, 0, now):
            continue
        if enqueue_takedown(redis, asset.id, timeout_s=push_timeout_s):
            counts["takedowns"] += 1
    session.flush()
    return counts


def run_sweeper(svc: Services, *, interval_s: float = 60.0, once: bool = False) -> bool:
    """`catalog-service sweeper`: sweep every `interval_s` seconds, or once; False when that one sweep failed."""
    while True:
        swept = False
        try:
            with svc.db.transaction() as session:
                counts = sweep(session, svc.redis, now=dt.datetime.now(dt.UTC),
                               render_timeout_s=svc.config.render_timeout_s,
                               push_timeout_s=svc.config.push_timeout_s)
            # Backfill scenes in OpenAI batches: submitted, polled, made; their renders ended or made direct.
            batched = run_batches(svc)
            # Backfills: finished renders counted, the next products queued, a budget pause lifted when it can be.
            fed = feed_all(svc)
            swept = True
            log.info("sweep renders=%s pushes=%s given_up=%s takedowns=%s backfill_renders=%s batch_scenes_made=%s",
                     counts["renders"], counts["pushes"], counts["given_up"], counts["takedowns"], fed,
                     batched["made"])
        except RedisError as exc:
            log.warning("sweep skipped: Redis does not answer (%s)", exc)
        finally:
            svc.db.remove()
        if once:
            return swept
        time.sleep(interval_s)


__all__ = ["sweep", "due", "run_sweeper", "RENDERS", "PUSHES"]
