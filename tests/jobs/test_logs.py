"""What a worker logs when a job fails: one line for an expected, retried failure, a traceback for the unexpected."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from catalog_service.logs import JsonFormatter
from catalog_service.models import Shop
from jobs.queues import PUSHES, RENDERS, get_queue
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class ThrottlingCallback:
    """A platform's callback endpoint on loopback that answers every POST 429, as a store throttling us does."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers["Content-Length"]))
                body = b"slow down"
                self.send_response(429)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/catalog-hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def throttling_callback(app, shop) -> Iterator[ThrottlingCallback]:  # type: ignore[no-untyped-def]
    callback = ThrottlingCallback()
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Shop, shop[0]).callback_url = callback.url
    yield callback
    callback.close()


def logged_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The captured WARNING-and-above lines as the service writes them (JSON, with the job's context fields)."""
    return [json.loads(line) for line in caplog.text.splitlines() if line.strip()]


def no_traceback(caplog: pytest.LogCaptureFixture) -> bool:
    return all(record.exc_info is None and "Traceback" not in record.getMessage() for record in caplog.records)


@pytest.fixture
def json_caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog formatting each record when it is emitted, as the service's JSON handler does."""
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.WARNING)
    return caplog


@pytest.mark.slow
def test_a_throttled_push_logs_one_line_with_render_shop_and_reason_and_no_traceback(
        app, redis, webhooks, image_server, model_session, shop, throttling_callback, json_caplog) -> None:
    """A store answering 429: one warning naming the render, the shop and the store's words; RQ still retries."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", {"id": 8, "title": "Cup", "images": [{"id": 1, "src": src}]}
                              ).get_json()["render_id"]
    run_jobs(app, redis, (RENDERS,))
    json_caplog.clear()
    run_jobs(app, redis, (PUSHES,))
    assert no_traceback(json_caplog)
    (line,) = logged_lines(json_caplog)
    assert line["render"] == render_id and line["shop"] == shop[0]
    assert "429" in line["msg"] and "slow down" in line["msg"] and "retry" in line["msg"]
    scheduled = ScheduledJobRegistry(PUSHES, connection=redis, serializer=JSONSerializer)
    assert f"push-{render_id}" in scheduled.get_job_ids()


def test_a_photo_host_that_fails_for_now_logs_one_line_and_no_traceback(
        app, redis, webhooks, image_server, shop, json_caplog) -> None:
    """The photo host answers 503: the render logs one warning with render, shop and reason; RQ retries it."""
    src = image_server.serve("/busy.png", b"busy", content_type="text/plain", status=503)
    render_id = webhooks.send("product.created", {"id": 9, "title": "Cup", "images": [{"id": 1, "src": src}]}
                              ).get_json()["render_id"]
    run_jobs(app, redis, (RENDERS,))
    assert no_traceback(json_caplog)
    (line,) = logged_lines(json_caplog)
    assert line["render"] == render_id and line["shop"] == shop[0] and "503" in line["msg"]
    scheduled = ScheduledJobRegistry(RENDERS, connection=redis, serializer=JSONSerializer)
    assert f"render-{render_id}" in scheduled.get_job_ids()


def test_an_unexpected_error_in_a_job_still_logs_its_traceback(app, redis, json_caplog) -> None:
    """An exception nobody planned for keeps RQ's error line with the whole traceback, and the job fails."""
    job = get_queue(RENDERS, redis).enqueue_call("builtins.int", args=("not a number",))
    run_jobs(app, redis, (RENDERS,))
    errors = [record for record in json_caplog.records if record.levelno >= logging.ERROR]
    assert any("Traceback" in record.getMessage() and "ValueError" in record.getMessage() for record in errors)
    assert job.id in FailedJobRegistry(RENDERS, connection=redis, serializer=JSONSerializer).get_job_ids()
