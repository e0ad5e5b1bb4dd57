"""End to end onto the fake Shopify and WooCommerce: a signed webhook in, our assets on the product exactly once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from pathlib import Path

import pytest

from catalog_service.models import PushStatus, Render
from catalog_service.shops import create_shop
from fakes.shopify_server import FakeShopify
from fakes.woocommerce_server import FakeWooCommerce
from jobs.push import push_render
from jobs.queues import RENDERS
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"




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
        run_jobs(app, redis)
        assert statuses(app, render_id) == {PushStatus.PUSHED}
        assert len(fake.product_media(4242)) == 4
        uploads = len(fake.uploads)
        push_again(app, render_id)
        assert len(fake.product_media(4242)) == 4 and len(fake.uploads) == uploads
        assert fake.errors == []


@pytest.mark.slow
def test_two_pushes_to_one_product_at_once_put_each_image_on_it_once(
        app, client, redis, image_server, model_session, app_config) -> None:
    """Two push jobs for one Shopify product at the same moment (two workers): each image lands on it once."""
    with FakeShopify(ready_after_polls=1) as fake:
        fake.add_product(4243, "Espresso cup")
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                create_shop(session, platform="shopify", domain=fake.shop_domain, access_token=fake.access_token,
                            api_base_url=fake.url)
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        body = json.dumps({"id": 4243, "title": "Espresso cup", "images": [{"id": 1, "src": src}]}).encode()
        digest = hmac.new(app_config["shopify_api_secret"].encode(), body, hashlib.sha256).digest()
        response = client.post("/webhooks/shopify", data=body, content_type="application/json", headers={
            "X-Shopify-Topic": "products/create", "X-Shopify-Shop-Domain": fake.shop_domain,
            "X-Shopify-Event-Id": str(uuid.uuid4()), "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()})
        render_id = response.get_json()["render_id"]
        run_jobs(app, redis, (RENDERS,))  # rendered; its push waits
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def push() -> None:
            start.wait()
            try:
                push_render(render_id)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=push) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert statuses(app, render_id) == {PushStatus.PUSHED}
        assert len(fake.product_media(4243)) == 4, [m.filename for m in fake.product_media(4243)]


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
        run_jobs(app, redis)
        assert statuses(app, render_id) == {PushStatus.PUSHED}
        images = fake.images_of(product_id)
        assert images[0] == front and len(images) == 5
        push_again(app, render_id)
        assert fake.images_of(product_id) == images
        assert len(fake.uploads()) == 4


def shopify_shop(app, fake, *, token: str, refresh_token: str | None, expires_in: float) -> int:  # type: ignore[no-untyped-def]
    import time as _time

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            shop, _key, _secret = create_shop(
                session, platform="shopify", domain=fake.shop_domain, access_token=token, api_base_url=fake.url,
                credentials={"refresh_token": refresh_token, "expires_at": _time.time() + expires_in})
            return shop.id


def post_shopify_product(client, app_config, fake, src: str, product: int) -> int:  # type: ignore[no-untyped-def]
    body = json.dumps({"id": product, "title": "Cup", "images": [{"id": 1, "src": src}]}).encode()
    digest = hmac.new(app_config["shopify_api_secret"].encode(), body, hashlib.sha256).digest()
    return client.post("/webhooks/shopify", data=body, content_type="application/json", headers={
        "X-Shopify-Topic": "products/create", "X-Shopify-Shop-Domain": fake.shop_domain,
        "X-Shopify-Event-Id": str(uuid.uuid4()), "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
    }).get_json()["render_id"]


@pytest.mark.slow
def test_an_expiring_shopify_token_is_refreshed_before_the_push(
        app, client, redis, image_server, model_session, app_config) -> None:
    """A token a minute from expiry is renewed first; the new pair is saved; the push goes through with it."""
    with FakeShopify(ready_after_polls=0) as fake:
        fake.client_secret = app_config["shopify_api_secret"]
        app.extensions["catalog"].config.shopify_api_key = fake.client_id
        fake.refresh_tokens.add("shprt_old")
        fake.add_product(7, "Cup")
        shop_id = shopify_shop(app, fake, token=fake.access_token, refresh_token="shprt_old", expires_in=60)
        fake.valid_tokens.discard(fake.access_token)  # the old token would be refused
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        render_id = post_shopify_product(client, app_config, fake, src, 7)
        run_jobs(app, redis)
        assert statuses(app, render_id) == {PushStatus.PUSHED}
        with app.app_context():
            from catalog_service.models import Shop

            shop = app.extensions["catalog_db"].session().get(Shop, shop_id)
            stored = json.loads(shop.credentials)
            assert shop.access_token in fake.valid_tokens and stored["refresh_token"] in fake.refresh_tokens
            assert "shprt_old" not in fake.refresh_tokens


@pytest.mark.slow
def test_a_refused_refresh_marks_the_shop_for_reauthorisation(
        app, client, redis, image_server, model_session, app_config) -> None:
    """Shopify will not renew the token: every asset shows why, and the shop is marked needs_reauth."""
    with FakeShopify(ready_after_polls=0) as fake:
        fake.client_secret = app_config["shopify_api_secret"]
        app.extensions["catalog"].config.shopify_api_key = fake.client_id
        fake.add_product(7, "Cup")
        shop_id = shopify_shop(app, fake, token=fake.access_token, refresh_token="shprt_revoked", expires_in=10)
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        render_id = post_shopify_product(client, app_config, fake, src, 7)
        run_jobs(app, redis)
        assert statuses(app, render_id) == {PushStatus.FAILED}
        with app.app_context():
            from catalog_service.models import Render, Shop

            session = app.extensions["catalog_db"].session()
            assert json.loads(session.get(Shop, shop_id).credentials)["needs_reauth"] is True
            assert all("re-authorise" in a.push_error for a in session.get(Render, render_id).assets)
        assert fake.product_media(7) == []
