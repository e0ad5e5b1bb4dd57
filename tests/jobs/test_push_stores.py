"""End to end onto the fake Shopify and WooCommerce: a signed webhook in, our assets on the product exactly once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from catalog_service.models import PushStatus, Render
from catalog_service.shops import create_shop
from fakes.shopify_server import FakeShopify
from fakes.woocommerce_server import FakeWooCommerce
from jobs.push import push_render
from jobs.queues import ALL_QUEUES, get_queue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def work(app, redis) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        SimpleWorker([get_queue(q, redis) for q in ALL_QUEUES], connection=redis, serializer=JSONSerializer).work(
            burst=True)


def push_again(app, render_id: int) -> None:  # type: ignore[no-untyped-def]
    """What a retried or duplicated push job does: every asset pending again, the job run once more."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            for asset in session.get(Render, render_id).assets:
                asset.push_status = PushStatus.PENDING
        push_render(render_id)


def statuses(app, render_id: int) -> set[PushStatus]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return {a.push_status for a in app.extensions["catalog_db"].session().get(Render, render_id).assets}


@pytest.mark.slow
def test_shopify_product_gets_our_media_once_through_throttling_and_a_second_push(
        app, client, redis, image_server, model_session, app_config) -> None:
    """products/create in; five media on the Shopify product; THROTTLED first and a re-run change nothing."""
    with FakeShopify(ready_after_polls=0) as fake:
        fake.add_product(4242, "Espresso cup")
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                create_shop(session, platform="shopify", domain=fake.shop_domain, access_token=fake.access_token,
                            api_base_url=fake.url)
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        body = json.dumps({"id": 4242, "title": "Espresso cup", "images": [{"id": 1, "src": src}]}).encode()
        digest = hmac.new(app_config["shopify_api_secret"].encode(), body, hashlib.sha256).digest()
        response = client.post("/webhooks/shopify", data=body, content_type="application/json", headers={
            "X-Shopify-Topic": "products/create", "X-Shopify-Shop-Domain": fake.shop_domain,
            "X-Shopify-Event-Id": str(uuid.uuid4()), "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()})
        render_id = response.get_json()["render_id"]
        fake.throttle(1)
        work(app, redis)
        assert statuses(app, render_id) == {PushStatus.PUSHED}
        assert len(fake.product_media(4242)) == 5
        uploads = len(fake.uploads)
        push_again(app, render_id)
        assert len(fake.product_media(4242)) == 5 and len(fake.uploads) == uploads
        assert fake.errors == []


@pytest.mark.slow
def test_woocommerce_product_keeps_the_merchants_images_and_gets_ours_once(
        app, client, redis, image_server, model_session) -> None:
    """product.created in; the merchant's images first and untouched, ours after them, once, even pushed twice."""
    with FakeWooCommerce() as fake:
        front = fake.add_media("mug-front.jpg", b"front", alt="Front")
        product_id = fake.add_product("Espresso cup", images=[front])
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                shop, _key, secret = create_shop(
                    session, platform="woocommerce", domain="shop.example.com", api_base_url=fake.url,
                    credentials={"consumer_key": fake.consumer_key, "consumer_secret": fake.consumer_secret,
                                 "wp_user": fake.wp_user, "wp_app_password": fake.wp_app_password})
                shop_id = shop.id
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        body = json.dumps({"id": product_id, "name": "Espresso cup", "images": [{"id": front, "src": src}]}).encode()
        signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        response = client.post(f"/webhooks/woocommerce/{shop_id}", data=body, content_type="application/json",
                               headers={"X-WC-Webhook-Topic": "product.created", "X-WC-Webhook-Signature": signature,
                                        "X-WC-Webhook-Delivery-ID": "1"})
        render_id = response.get_json()["render_id"]
        work(app, redis)
        assert statuses(app, render_id) == {PushStatus.PUSHED}
        images = fake.images_of(product_id)
        assert images[0] == front and len(images) == 6
        push_again(app, render_id)
        assert fake.images_of(product_id) == images
        assert len(fake.uploads()) == 5
