"""A backfill survives a bad day: its worker killed mid-render and Redis restarted empty, a new worker and the
sweeper take it to done, and no product is rendered or pushed twice."""

from __future__ import annotations

import datetime as dt
import io
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, update

from catalog_service.app import create_app
from catalog_service.models import Asset, Backfill, BackfillStatus, Product, PushStatus, Render, RenderStatus
from catalog_service.schemas import settings_with_defaults
from catalog_service.shops import create_shop
from catalog_service.stores.catalog import CatalogFilters
from catalog_service.stores.shopify import ShopifyStore
from catalog_service.stores.shopify_bulk import ShopifyBulkCatalog
from fakes.shopify_server import FakeShopify
from jobs.queues import BACKFILL, get_queue
from jobs.sweeper import GRACE_S, sweep
from support import free_port, run_jobs, start_redis, stop_redis

pytestmark = pytest.mark.both_databases  # database locks and times matter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CATALOG_SERVICE = Path(sys.executable).parent / "catalog-service"
PRODUCTS = 8
SLOW = 10_004
"""The product whose photo is slow to come: its render is the one the kill interrupts."""


def small_photo() -> bytes:
    image = Image.open(FIXTURES / "rocket.jpg")
    image.thumbnail((320, 320))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


class OwnRedis:
    """A redis-server of this test's own, without persistence: `restart()` brings it back empty."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = start_redis(self.port, workdir)

    def restart(self) -> None:
        stop_redis(self.process)
        self.process = start_redis(self.port, self.workdir)

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_redis(self.process)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait(timeout=10)


def wait_for(condition: Callable[[], bool], *, timeout_s: float, worker: subprocess.Popen[bytes],
             log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert worker.poll() is None, f"the worker died:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.05)


@pytest.mark.slow  # real worker processes
def test_a_killed_worker_and_an_emptied_redis_leave_no_product_undone_or_done_twice(
        app_config, worker_env, own_redis: OwnRedis, image_server, model_session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    redis_url = own_redis.url
    app = create_app({**app_config, "redis_url": redis_url})
    env = {**worker_env, "CATALOG_REDIS_URL": redis_url}
    db = app.extensions["catalog_db"]
    log_path = tmp_path / "worker.log"
    worker = None
    try:
        with FakeShopify(ready_after_polls=0) as fake:
            photo = small_photo()
            for gid in fake.add_catalog(PRODUCTS, images=1):
                for media in fake.products[gid].media_list:
                    number = int(gid.rsplit("/", 1)[-1])
                    media.cdn_url = image_server.serve(f"/cdn/{number}.jpg", photo, "image/jpeg",
                                                       delay_s=4.0 if number == SLOW else 0.0)
            with app.app_context():
                with db.transaction() as session:
                    shop, key, _secret = create_shop(session, platform="shopify", domain=fake.shop_domain,
                                                     access_token=fake.access_token, api_base_url=fake.url)
                    shop.settings = settings_with_defaults(
                        {**shop.settings, "scene_presets": [], "cutout": {"enabled": True, "white": True}})
                    shop_id = shop.id
            created = app.test_client().post(f"/api/v1/shops/{shop_id}/backfills",
                                             headers={"Authorization": f"Bearer {key}"}, json={"dry_run": False})
            backfill_id = created.get_json()["id"]

            def render_of(number: int) -> RenderStatus | None:
                with app.app_context():
                    status = db.session().scalar(select(Render.status).join(Product).where(
                        Product.external_id == str(number), Render.trigger == "backfill"))
                    db.remove()
                    return status

            worker = start_worker(env, log_path)
            wait_for(lambda: render_of(SLOW) == RenderStatus.RUNNING, timeout_s=120, worker=worker,
                     log_path=log_path)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            # Redis restarts and comes back empty: every queued job and the killed one's record are gone.
            own_redis.restart()
            image_server.delays.clear()
            with app.app_context():
                with db.transaction() as session:
                    assert session.get(Backfill, backfill_id).status == BackfillStatus.RUNNING
                    past_grace = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=GRACE_S + 60)
                    session.execute(update(Render).where(Render.status.in_([RenderStatus.QUEUED,
                                                                            RenderStatus.RUNNING]))
                                    .values(updated_at=past_grace))

            sweeper = subprocess.run([str(CATALOG_SERVICE), "sweeper", "--once"], env=env, capture_output=True,
                                     text=True, timeout=120)
            assert sweeper.returncode == 0, sweeper.stderr
            worker = start_worker(env, log_path)

            def finished() -> bool:
                """The backfill is over and its last push has run (a render's push follows it)."""
                with app.app_context():
                    status = db.session().get(Backfill, backfill_id).status
                    pending = db.session().scalar(select(Asset.id).where(Asset.push_status == PushStatus.PENDING)
                                                  .limit(1))
                    db.remove()
                    return status.is_finished and pending is None

            wait_for(finished, timeout_s=240, worker=worker, log_path=log_path)
            stop(worker)

            with app.app_context():
                session = db.session()
                backfill = session.get(Backfill, backfill_id)
                assert backfill.status == BackfillStatus.DONE
                renders = session.scalars(select(Render).where(Render.shop_id == shop_id)).all()
                per_product = Counter(render.product.external_id for render in renders)
                assert per_product == {str(10_001 + n): 1 for n in range(PRODUCTS)}  # one render each
                assert {render.status for render in renders} == {RenderStatus.SUCCEEDED}
                slow = next(r for r in renders if r.product.external_id == str(SLOW))
                assert slow.attempts == 2  # the killed attempt, then the one that finished
                db.remove()
            for n in range(PRODUCTS):  # the merchant's photo, then our cutout and white variant: once each
                media = fake.product_media(10_001 + n)
                assert len(media) == 3, (10_001 + n, [m.filename for m in media])
            assert len(fake.uploads) == 2 * PRODUCTS
            assert fake.errors == []
    finally:
        if worker is not None:
            stop(worker)
        app.extensions["catalog"].close()



def test_a_collect_job_lost_with_redis_is_queued_again_and_reads_the_same_bulk_operation(
        app, client, redis, image_server) -> None:  # type: ignore[no-untyped-def]
    """The collect job had started Shopify's bulk operation (its id saved) when Redis lost the job: the sweeper
    queues it again, and it reads that operation rather than starting another."""
    db = app.extensions["catalog_db"]
    with FakeShopify(ready_after_polls=0) as fake:
        fake.add_catalog(4, images=1)
        with app.app_context():
            with db.transaction() as session:
                shop, key, _secret = create_shop(session, platform="shopify", domain=fake.shop_domain,
                                                 access_token=fake.access_token, api_base_url=fake.url)
                shop_id = shop.id
        backfill_id = client.post(f"/api/v1/shops/{shop_id}/backfills", headers={"Authorization": f"Bearer {key}"},
                                  json={"dry_run": True}).get_json()["id"]
        store = ShopifyStore(shop_domain=fake.shop_domain, access_token=fake.access_token, api_base_url=fake.url,
                             sleep=lambda _s: None)
        operation_id = ShopifyBulkCatalog(store).start(CatalogFilters())  # what the lost job had done
        redis.flushall()
        with app.app_context():
            with db.transaction() as session:
                backfill = session.get(Backfill, backfill_id)
                backfill.source_state = {"operation_id": operation_id}
                backfill.updated_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=GRACE_S + 60)

        with app.app_context():
            with db.transaction() as session:
                sweep(session, redis, now=dt.datetime.now(dt.UTC))
        assert get_queue(BACKFILL, redis).get_job_ids() == [f"collect-{backfill_id}"]
        run_jobs(app, redis)

        with app.app_context():
            backfill = db.session().get(Backfill, backfill_id)
            assert backfill.status == BackfillStatus.READY and backfill.estimate["products"] == 4
        assert fake.operations().count("bulkOperationRunQuery") == 1
