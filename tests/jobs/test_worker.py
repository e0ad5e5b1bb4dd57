"""`catalog-service worker` as run_worker() builds it: the jobs it runs and the retries it brings back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from catalog_service.models import Render, RenderStatus
from jobs.queues import RENDERS, get_queue
from jobs.worker import run_worker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


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
