"""A worker told to stop (SIGTERM, as a deploy does) finishes the render it is on, then exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalog_service.models import Render, RenderStatus
from jobs.queues import RENDERS, get_queue
from jobs.worker import Worker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.slow
def test_sigterm_mid_render_finishes_the_render_then_exits(app, redis, webhooks, image_server, model_session,
                                                           worker_env, tmp_path) -> None:
    """SIGTERM while the photo downloads: the render still succeeds, and the worker exits cleanly."""

    src = image_server.serve("/slow.png", (FIXTURES / "coffee.png").read_bytes(), delay_s=3.0)
    render_id = webhooks.send("product.created", {"id": 2, "title": "Cup", "images": [{"id": 1, "src": src}]}
                              ).get_json()["render_id"]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker", "--queues", "renders"],
                                  env=worker_env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with app.app_context():
                status = app.extensions["catalog_db"].session().get(Render, render_id).status
                app.extensions["catalog_db"].remove()
            if status == RenderStatus.RUNNING:
                break
            time.sleep(0.1)
        assert status == RenderStatus.RUNNING, (tmp_path / "worker.log").read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Render, render_id).status == RenderStatus.SUCCEEDED


def test_a_stopping_worker_leaves_its_command_listener_at_once(redis) -> None:
    """RQ unsubscribes while the listener thread waits for a subscription: it must not hold the exit up."""
    worker = Worker([get_queue(RENDERS, redis)], connection=redis)
    worker.subscribe()
    deadline = time.monotonic() + 10
    while not worker.pubsub.subscribed and time.monotonic() < deadline:
        time.sleep(0.05)
    # Unsubscribed first, the thread goes back to waiting for a subscription: RQ's order of events.
    worker.pubsub.unsubscribe()
    time.sleep(0.5)
    started = time.monotonic()

    worker.unsubscribe()

    assert time.monotonic() - started < 5  # RQ's own listener would wait out 60 s here
    assert not worker.pubsub_thread.is_alive()
