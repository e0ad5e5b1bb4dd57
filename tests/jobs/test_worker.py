"""`catalog-service worker` as run_worker() builds it: the jobs it runs and the retries it brings back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from catalog_service.models import Render, RenderStatus
from jobs.queues import RENDERS, get_queue
from jobs.worker import HEARTBEAT_S, RECONNECT_CAP_S, Worker, reconnect_delay, run_worker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(("attempt", "expected"), [(0, 1.0), (1, 2.0), (3, 8.0), (5, RECONNECT_CAP_S), (500, 30.0)])
def test_reconnect_waits_double_up_to_a_cap(attempt: int, expected: float) -> None:
    """Waiting for Redis: 1 s, 2 s, 4 s ... never more than the cap, however long the outage."""
    assert reconnect_delay(attempt) == expected


def test_a_long_jobs_heartbeat_lapses_in_seconds_not_at_its_timeout(redis) -> None:
    """A 30-minute render's started entry is kept alive by beats, each good for HEARTBEAT_S + 60 s."""
    worker = Worker([get_queue(RENDERS, redis)], connection=redis, serializer=JSONSerializer)
    job = Job.create("jobs.render.render_product", args=(1,), connection=redis, timeout=1800,
                     serializer=JSONSerializer)

    assert worker.get_heartbeat_ttl(job) == HEARTBEAT_S + 60
    assert worker.get_heartbeat_ttl(job, working_time=1790) == 10 + 60  # the beat never outlasts the timeout


@pytest.mark.slow
def test_a_retry_whose_backoff_has_passed_is_run_by_the_worker(app, redis, webhooks, image_server,
                                                               model_session) -> None:
    """RQ keeps a retry in its scheduled registry; the worker's scheduler puts it back on the queue and runs it."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", {"id": 7, "title": "Cup", "images": [{"id": 1, "src": src}]}
                              ).get_json()["render_id"]
    redis.flushdb()  # the queued job is gone; what is left is a retry scheduled in the past
    queue = get_queue(RENDERS, redis)
    queue.enqueue_at(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5), "jobs.render.render_product", render_id,
                     job_id=f"render-{render_id}")
    assert queue.count == 0

    run_worker(app.extensions["catalog"], (RENDERS,), burst=True)

    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, render_id)
        assert render is not None and render.status == RenderStatus.SUCCEEDED, render and render.last_error
