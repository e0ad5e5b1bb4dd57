"""Fair to everyone (issue 20, item 5): with shop A's 300-product backfill running on ONE worker, shop B's new
product (a webhook) finishes within the time of two renders, and shop C's 10-product backfill ends before A's is
half done: webhook renders go first, and backfills take turns."""

from __future__ import annotations

import datetime as dt
import io
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image
from sqlalchemy import select

from catalog_service.backfills import FEED_DEPTH
from catalog_service.models import Backfill, BackfillItem, BackfillItemStatus, Render, RenderStatus, Shop
from catalog_service.schemas import settings_with_defaults
from catalog_service.shops import create_shop

pytestmark = pytest.mark.slow  # a real worker process with the real cutout model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CUTOUT_ONLY = {"scene_presets": [], "cutout": {"enabled": True, "white": False}}
"""One image a product: the fairness is in the order of the work, not its size."""
T = TypeVar("T")


def small_photo() -> bytes:
    image = Image.open(FIXTURES / "rocket.jpg")
    image.thumbnail((320, 320))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def epoch(moment: dt.datetime) -> float:
    """Seconds since the epoch of a database time (SQLite gives it back without its UTC zone)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def one_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`catalog-service worker` (every queue, in its order) as a process of its own, stopped at the end."""
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def wait_for(read: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float, worker: subprocess.Popen[bytes],
             log_path: Path, poll_s: float = 0.05) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value):
            return value
        assert worker.poll() is None, f"the worker died:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out at {value!r}:\n{log_path.read_text()[-3000:]}"
        time.sleep(poll_s)


def test_a_webhook_goes_first_and_a_small_backfill_is_not_held_up_by_a_large_one(
        app, client, shop, webhooks, image_server, model_session, worker_env, tmp_path) -> None:
    db = app.extensions["catalog_db"]
    src = image_server.serve("/photo.jpg", small_photo(), "image/jpeg")

    def products(count: int, prefix: str) -> list[dict[str, Any]]:
        return [{"id": f"{prefix}{n}", "title": f"{prefix} {n}", "images": [{"id": f"{prefix}{n}", "src": src}]}
                for n in range(count)]

    with app.app_context():
        with db.transaction() as session:
            for row in [session.get(Shop, shop[0])]:  # shop B: the fixture's, its webhooks signed by `webhooks`
                row.settings = settings_with_defaults({**row.settings, **CUTOUT_ONLY})
            made = {}
            for name in ("a", "c"):
                created, key, _secret = create_shop(session, platform="generic", domain=f"{name}.example.com")
                created.settings = settings_with_defaults({**created.settings, **CUTOUT_ONLY})
                made[name] = (created.id, key)

    def backfill_for(name: str, count: int) -> int:
        shop_id, key = made[name]
        answer = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key),
                             json={"dry_run": False, "products": products(count, name)})
        assert answer.status_code == 201 and answer.get_json()["status"] == "running", answer.get_json()
        return int(answer.get_json()["id"])

    def done(backfill_id: int) -> int:
        with app.app_context():
            count = len(db.session().scalars(select(BackfillItem.id).where(
                BackfillItem.backfill_id == backfill_id, BackfillItem.status == BackfillItemStatus.DONE)).all())
            db.remove()
            return count

    def finished_times(backfill_id: int) -> list[float]:
        with app.app_context():
            rows = db.session().scalars(select(Render.finished_at).join(
                BackfillItem, BackfillItem.render_id == Render.id).where(
                BackfillItem.backfill_id == backfill_id, Render.finished_at.is_not(None))).all()
            db.remove()
            return sorted(epoch(row) for row in rows)

    log_path = tmp_path / "worker.log"
    a_id = backfill_for("a", 300)
    with one_worker(worker_env, log_path) as worker:
        # A few of A's products done: the worker is warm and A's backfill fills its turn.
        wait_for(lambda: done(a_id), lambda n: n >= 6, timeout_s=180, worker=worker, log_path=log_path)
        sent = time.time()
        render_id = webhooks.send("product.created", {"id": "b1", "title": "B's new product",
                                                      "images": [{"id": "b1", "src": src}]}).get_json()["render_id"]

        def b_render() -> Render:
            with app.app_context():
                row = db.session().get(Render, render_id)
                db.remove()
                return row

        b = wait_for(b_render, lambda r: r.status.is_finished, timeout_s=120, worker=worker, log_path=log_path)
        assert b.status == RenderStatus.SUCCEEDED, b.last_error
        b_latency = epoch(b.finished_at) - sent
        # Within the time of two renders: the one of A's the worker was on when B's webhook came, then B's. Counted
        # in renders rather than seconds, so a busy machine does not decide it: at most one of A's ends between.
        a_finishes = finished_times(a_id)
        render_s = statistics.median(y - x for x, y in zip(a_finishes, a_finishes[1:], strict=False))
        a_between = [moment for moment in a_finishes if sent < moment <= epoch(b.finished_at)]
        assert len(a_between) <= 1, (f"{len(a_between)} of A's renders ended before B's ({b_latency:.2f} s; "
                                     f"a render takes {render_s:.2f} s)")

        c_id = backfill_for("c", 10)
        a_before = done(a_id)
        wait_for(lambda: done(c_id), lambda n: n >= 10, timeout_s=300, worker=worker, log_path=log_path)
        a_after = done(a_id)

    with app.app_context():
        assert db.session().get(Backfill, c_id).status.value == "done"
        db.remove()
    assert a_after < 150, f"A had done {a_after} of 300 when C ended"
    # Turns: while C's ten were done, A did about as many (each backfill keeps FEED_DEPTH queued), not all of its own.
    assert a_after - a_before <= 10 + 2 * FEED_DEPTH, (a_before, a_after)
