"""Structured logs: JSON lines, with the render and shop of a job on every line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from catalog_service.logs import JsonFormatter, log_context
from support import run_jobs

FIXTURES = Path(__file__).parent / "fixtures"


def test_json_lines_carry_the_context_fields() -> None:
    """Inside log_context every line has its fields; outside, none."""
    record = logging.LogRecord("jobs.render", logging.INFO, __file__, 1, "stage=%s", ("cutout",), None)
    with log_context(render=42, shop=7):
        inside = json.loads(JsonFormatter().format(record))
    outside = json.loads(JsonFormatter().format(record))
    assert inside["render"] == 42 and inside["shop"] == 7 and inside["msg"] == "stage=cutout"
    assert "render" not in outside and outside["level"] == "info"


@pytest.mark.slow
def test_every_line_of_a_render_and_its_push_names_the_render_and_shop(
        app, redis, webhooks, image_server, model_session, shop) -> None:
    """A real job's log lines, as JSON, all say which render and which shop."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.INFO)
    handler.setFormatter(JsonFormatter())
    for name in ("jobs.render", "jobs.push"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        render_id = webhooks.send("product.created", {"id": 1, "title": "Cup", "images": [{"id": 1, "src": src}]}
                                  ).get_json()["render_id"]
        run_jobs(app, redis)
    finally:
        for name in ("jobs.render", "jobs.push"):
            logging.getLogger(name).removeHandler(handler)
    entries = [json.loads(line) for line in lines]
    assert len(entries) >= 3
    assert all(entry["render"] == render_id and entry["shop"] == shop[0] for entry in entries)
    assert {entry["job"] for entry in entries} == {"render", "push"}
