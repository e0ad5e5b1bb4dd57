"""A worker starting with an OpenAI key reads `GET /v1/models` once and keeps the shutdown dates; a failure there
is one log line and the worker works on."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import select

from catalog_service.models import ModelLifecycle
from fakes.openai_server import FakeOpenAI
from jobs.queues import RENDERS
from jobs.worker import run_worker


@pytest.fixture
def fake_openai(monkeypatch):  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        # The openai library reads these itself, as it does in production; Config sees the key is set.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
        yield fake


@pytest.fixture
def app_config(app_config, fake_openai):  # type: ignore[no-untyped-def]
    """The test app, built once the key is in the environment (as a deployed worker's is)."""
    return app_config


def lifecycle_rows(app) -> dict[str, dt.date | None]:  # type: ignore[no-untyped-def]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        return {row.model: row.shutdown_date for row in session.scalars(select(ModelLifecycle))}


def listed(model: str, shutdown_date: str | None = None) -> dict[str, object]:
    entry: dict[str, object] = {"id": model, "object": "model", "created": 1_776_729_600, "owned_by": "system"}
    if shutdown_date is not None:
        entry["shutdown_date"] = shutdown_date
    return entry


def model_list_calls(fake: FakeOpenAI) -> int:
    return sum(1 for request in fake.requests if request.method == "GET" and request.path == "/v1/models")


@pytest.mark.slow
def test_a_starting_worker_keeps_openais_shutdown_dates(app, redis, model_session, fake_openai) -> None:
    """Once per start: the image models and their dates land in the table; the account's other models do not."""
    fake_openai.models = [listed("gpt-image-2"), listed("gpt-image-2.5-flare", "2027-03-01"),
                          listed("gpt-image-1.5", "2026-12-01"), listed("gpt-4o", "2027-01-01")]
    svc = app.extensions["catalog"]
    assert svc.config.openai_key_set

    run_worker(svc, (RENDERS,), burst=True)

    assert model_list_calls(fake_openai) == 1
    assert lifecycle_rows(app) == {"gpt-image-2": None, "gpt-image-2.5-flare": dt.date(2027, 3, 1),
                                   "gpt-image-1.5": dt.date(2026, 12, 1)}


@pytest.mark.slow
def test_a_failed_read_is_one_log_line_and_the_worker_runs(app, redis, model_session, fake_openai,
                                                          caplog) -> None:
    """OpenAI failing at the worker's start never stops it: one warning line, no traceback, nothing saved."""
    fake_openai.fail(500)
    with caplog.at_level(logging.WARNING, logger="jobs.worker"):
        run_worker(app.extensions["catalog"], (RENDERS,), burst=True)
    lines = [record for record in caplog.records if "shutdown dates not read" in record.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "\n" not in lines[0].getMessage()
    assert "HTTP 500" in lines[0].getMessage()
    assert lifecycle_rows(app) == {}


@pytest.mark.slow
def test_without_a_key_the_worker_asks_nothing(app, redis, model_session, fake_openai) -> None:
    """No OpenAI key configured: no request at start."""
    svc = app.extensions["catalog"]
    svc.config.openai_key_set = False
    run_worker(svc, (RENDERS,), burst=True)
    assert model_list_calls(fake_openai) == 0 and lifecycle_rows(app) == {}
