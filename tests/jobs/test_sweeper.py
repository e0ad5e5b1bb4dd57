"""The sweeper queues again what the database waits for and Redis lost, and gives up after a bound."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import update

from catalog_service.models import Asset, AssetKind, Product, PushStatus, Render, RenderStatus
from catalog_service.services import redis_connection
from jobs.queues import RENDERS, get_queue
from jobs.sweeper import GRACE_S, MAX_ATTEMPTS, due, sweep
from support import requeue_due_retries, run_jobs

pytestmark = pytest.mark.both_databases  # database behaviour: on PostgreSQL too

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CATALOG_SERVICE = Path(sys.executable).parent / "catalog-service"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("age_s", "attempts", "expected"),
    [(30, 0, False), (61, 0, True), (100, 1, False), (121, 1, True), (3599, 6, False), (3600, 9, True)],
)
def test_due_waits_a_grace_then_backs_off_exponentially_with_a_cap(age_s: int, attempts: int, expected: bool) -> None:
    """A new row gets a minute of grace; then 2**attempts minutes, never more than an hour."""
    assert due(NOW - dt.timedelta(seconds=age_s), attempts, NOW) is expected


def make_render(app, shop_id: int, *, status: RenderStatus, attempts: int, age: dt.timedelta) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=shop_id, external_id=f"p{attempts}{status.value}")
            session.add(product)
            session.flush()
            render = Render(shop_id=shop_id, product_id=product.id, status=status, attempts=attempts,
                            created_at=NOW - age, updated_at=NOW - age)
            session.add(render)
            session.flush()
            return render.id


def run_sweep(app, redis, now=NOW) -> dict:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            return sweep(session, redis, now=now)


def test_a_webhook_taken_while_redis_was_down_is_rendered_after_the_sweep(
        app, redis, webhooks, image_server, model_session) -> None:
    """Redis down at intake: 200, the render committed but not queued; the sweeper queues it; it completes."""
    app.extensions["catalog"].redis = redis_connection("redis://127.0.0.1:1/0")
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    body = webhooks.send("product.created", {"id": 3, "title": "Cup", "images": [{"id": 1, "src": src}]}).get_json()
    assert body["queued"] is False
    app.extensions["catalog"].redis = redis
    assert run_sweep(app, redis, now=dt.datetime.now(dt.UTC))["renders"] == 0  # still in its grace
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    assert run_sweep(app, redis, now=later)["renders"] == 1
    run_jobs(app, redis)
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, body["render_id"])
        assert render.status == RenderStatus.SUCCEEDED
        assert {a.push_status for a in render.assets} == {PushStatus.PUSHED}


def test_a_render_left_running_by_a_dead_worker_is_queued_again_then_given_up(app, redis, shop) -> None:
    """Running with no job: queued again with backoff; at the attempt limit it fails with a reason."""
    stuck = make_render(app, shop[0], status=RenderStatus.RUNNING, attempts=1, age=dt.timedelta(minutes=10))
    spent = make_render(app, shop[0], status=RenderStatus.RUNNING, attempts=MAX_ATTEMPTS, age=dt.timedelta(hours=2))
    counts = run_sweep(app, redis)
    assert counts == {"renders": 1, "pushes": 0, "given_up": 1, "takedowns": 0}
    assert redis.lrange("rq:queue:renders", 0, -1) == [f"render-{stuck}".encode()]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.get(Render, stuck).status == RenderStatus.QUEUED
        failed = session.get(Render, spent)
        assert failed.status == RenderStatus.FAILED and "Gave up" in failed.last_error
    assert run_sweep(app, redis)["renders"] == 0  # its job is alive now: not queued twice


def test_a_finished_render_with_assets_never_pushed_gets_its_push(app, redis, shop) -> None:
    """Pending assets and no push job: the push is queued."""
    render_id = make_render(app, shop[0], status=RenderStatus.SUCCEEDED, attempts=1, age=dt.timedelta(minutes=5))
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.add(Asset(shop_id=shop[0], render_id=render_id, kind=AssetKind.CUTOUT, storage_key="k",
                              content_type="image/png", width=1, height=1, bytes=1))
    assert run_sweep(app, redis)["pushes"] == 1
    assert redis.lrange("rq:queue:pushes", 0, -1) == [f"push-{render_id}".encode()]


def test_a_render_redis_lost_is_brought_to_done_by_the_sweeper_command_and_a_worker(
        app, redis, webhooks, image_server, model_session, worker_env) -> None:
    """Redis flushed after intake: `catalog-service sweeper --once` queues the render again; a worker finishes it."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    body = webhooks.send("product.created", {"id": 4, "title": "Cup", "images": [{"id": 1, "src": src}]}).get_json()
    assert body["queued"] is True
    redis.flushall()  # Redis restarted empty: the job is gone, the row still waits
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            past_grace = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=GRACE_S + 60)
            session.execute(update(Render).where(Render.id == body["render_id"]).values(updated_at=past_grace))

    sweeper = subprocess.run([str(CATALOG_SERVICE), "sweeper", "--once"], env=worker_env, capture_output=True,
                             text=True, timeout=120)

    assert sweeper.returncode == 0, sweeper.stderr
    assert get_queue(RENDERS, redis).get_job_ids() == [f"render-{body['render_id']}"]
    # The worker in this process (tests/support.py), as `catalog-service worker --burst` runs it: a worker
    # process of its own would load the cutout model again for one render.
    run_jobs(app, redis)
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, body["render_id"])
        assert render.status == RenderStatus.SUCCEEDED
        assert {a.kind for a in render.assets} >= {AssetKind.CUTOUT}
        assert {a.push_status for a in render.assets} == {PushStatus.PUSHED}


def test_the_sweeper_command_once_with_redis_down_exits_with_failure(worker_env) -> None:
    """`sweeper --once` under cron: when Redis does not answer, the run fails (exit 1) instead of passing silently."""
    env = {**worker_env, "CATALOG_REDIS_URL": "redis://127.0.0.1:1/0"}

    sweeper = subprocess.run([str(CATALOG_SERVICE), "sweeper", "--once"], env=env, capture_output=True, text=True,
                             timeout=120)

    assert sweeper.returncode == 1, sweeper.stderr
    assert "Redis does not answer" in sweeper.stderr


@pytest.mark.slow
def test_a_render_whose_worker_was_killed_is_taken_back_by_a_sweep_minutes_later(
        app, redis, webhooks, image_server, model_session, worker_env, tmp_path) -> None:
    """Kill -9 mid-render: a sweep 2.5 minutes later hands the job to RQ's retry; the next worker finishes it."""
    src = image_server.serve("/slow.png", (FIXTURES / "coffee.png").read_bytes(), delay_s=5.0)
    render_id = webhooks.send("product.created", {"id": 4, "title": "Cup", "images": [{"id": 1, "src": src}]}
                              ).get_json()["render_id"]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker", "--queues", "renders"],
                                  env=worker_env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != RenderStatus.RUNNING and worker.poll() is None:
            time.sleep(0.1)
            with app.app_context():
                status = app.extensions["catalog_db"].session().get(Render, render_id).status
                app.extensions["catalog_db"].remove()
        assert status == RenderStatus.RUNNING, (tmp_path / "worker.log").read_text()
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    image_server.delays.clear()

    run_sweep(app, redis, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2, seconds=30))

    # Before: the job's heartbeat was its whole timeout + 60 s (31 minutes), so this sweep left it "started".
    job = Job.fetch(f"render-{render_id}", connection=redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.SCHEDULED
    requeue_due_retries(redis, RENDERS, now=time.time() + 3600)  # the retry's own backoff, moved past
    run_jobs(app, redis)
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, render_id)
        assert render.status == RenderStatus.SUCCEEDED and render.attempts == 2
