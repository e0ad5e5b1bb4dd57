"""Faults: Redis loses its data with renders queued; the store fails for a while. Everything still lands once."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from catalog_service.models import PushStatus, Render, RenderStatus
from catalog_service.services import redis_connection
from catalog_service.shops import create_shop
from fakes.woocommerce_server import FakeWooCommerce
from jobs.queues import PUSHES
from jobs.sweeper import sweep
from support import free_port, requeue_due_retries, run_jobs, start_redis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.slow
def test_renders_queued_when_redis_restarts_with_its_data_gone_all_complete(
        app, webhooks, image_server, model_session, tmp_path) -> None:
    """Three products queued, Redis restarted empty: the sweeper re-queues all three and all complete."""
    port = free_port()
    server = start_redis(port, tmp_path)
    redis = redis_connection(f"redis://127.0.0.1:{port}/0")
    app.extensions["catalog"].redis = redis
    try:
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        ids = [webhooks.send("product.created", {"id": n, "title": f"Cup {n}", "images": [{"id": 1, "src": src}]}
                             ).get_json()["render_id"] for n in (1, 2, 3)]
        assert redis.llen("rq:queue:renders") == 3
        server.terminate()  # no persistence: it comes back empty
        server.wait(timeout=10)
        server = start_redis(port, tmp_path)
        assert redis.llen("rq:queue:renders") == 0
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                counts = sweep(session, redis, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2))
        assert counts["renders"] == 3
        run_jobs(app, redis)
        with app.app_context():
            session = app.extensions["catalog_db"].session()
            for render_id in ids:
                render = session.get(Render, render_id)
                assert render.status == RenderStatus.SUCCEEDED
                assert {a.push_status for a in render.assets} == {PushStatus.PUSHED}
    finally:
        redis.close()
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_store_failing_for_a_while_then_recovering_gets_every_asset_once(
        app, client, redis, image_server, model_session) -> None:
    """WooCommerce answers 500 three times: RQ retries the push with backoff; the product ends with each image once."""
    with FakeWooCommerce() as fake:
        product_id = fake.add_product("Cup", images=[])
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                shop, _key, secret = create_shop(
                    session, platform="woocommerce", domain="shop.example.com", api_base_url=fake.url,
                    credentials={"consumer_key": fake.consumer_key, "consumer_secret": fake.consumer_secret,
                                 "wp_user": fake.wp_user, "wp_app_password": fake.wp_app_password})
                shop_id = shop.id
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        body = json.dumps({"id": product_id, "name": "Cup", "images": [{"id": 1, "src": src}]}).encode()
        signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        render_id = client.post(f"/webhooks/woocommerce/{shop_id}", data=body, content_type="application/json",
                                headers={"X-WC-Webhook-Topic": "product.created", "X-WC-Webhook-Signature": signature,
                                         "X-WC-Webhook-Delivery-ID": "9"}).get_json()["render_id"]
        fake.fail_next(3, status=500)
        for _round in range(5):  # each failed attempt is retried after its backoff; move the clock past it
            run_jobs(app, redis)
            requeue_due_retries(redis, PUSHES, now=time.time() + 3600)
        with app.app_context():
            assets = app.extensions["catalog_db"].session().get(Render, render_id).assets
            assert {a.push_status for a in assets} == {PushStatus.PUSHED}
        assert len(fake.images_of(product_id)) == len(assets) == 4
        assert len(fake.uploads()) == 4
