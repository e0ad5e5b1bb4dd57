"""A worker told to stop (SIGTERM, as a deploy does) finishes the render it is on, then exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalog_service.models import Render, RenderStatus

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
