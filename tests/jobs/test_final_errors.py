"""A render's last error reads as final when no retry follows: it never promises one."""

from __future__ import annotations

import time

from catalog_service.models import Render, RenderStatus
from jobs.queues import RENDERS
from support import requeue_due_retries, run_jobs


def test_a_render_that_gives_up_does_not_say_we_will_retry(app, redis, webhooks, image_server) -> None:
    """The image host answers 503 on every attempt: after the last retry the render fails with the reason,
    in words that do not promise another try."""
    src = image_server.serve("/down.png", b"", status=503)
    render_id = webhooks.send("product.created", {"id": 8, "title": "Cup", "images": [{"id": 1, "src": src}]}
                              ).get_json()["render_id"]
    run_jobs(app, redis, [RENDERS])
    later = time.time()
    for _ in range(5):  # three retries, and some room
        later += 3600
        if not requeue_due_retries(redis, RENDERS, now=later):
            break
        run_jobs(app, redis, [RENDERS])
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, render_id)
        assert render.status == RenderStatus.FAILED and render.attempts == 4
        assert "503" in (render.last_error or "") and "retry" not in (render.last_error or "").lower()
