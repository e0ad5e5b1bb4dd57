"""POST /webhooks/woocommerce/<shop_id>: the ping, the signature, REST v3 product payloads."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog_service.models import Delivery, Product, Render, RenderStatus

PAYLOAD = json.loads((Path(__file__).parent / "payloads" / "woocommerce_product.json").read_text())
SECRET = "wc-webhook-secret"


class WooCommerce:
    """Sends webhooks the way WooCommerce's WC_Webhook::deliver() does."""

    def __init__(self, client, shop_id: int) -> None:  # type: ignore[no-untyped-def]
        self.client, self.shop_id = client, shop_id

    def send(self, topic: str, payload: object, *, delivery_id: str | None = None, secret: str = SECRET,
             body: bytes | None = None, signature: str | None = None):  # type: ignore[no-untyped-def]
        body = json.dumps(payload).encode() if body is None else body
        digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        resource, event = topic.split(".")
        headers = {
            "X-WC-Webhook-Source": "https://shop.example.com/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": signature if signature is not None else digest,
            "X-WC-Webhook-ID": "31",
            "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
        }
        return self.client.post(f"/webhooks/woocommerce/{self.shop_id}", data=body, headers=headers,
                                content_type="application/json")


@pytest.fixture
def woo(app, client):  # type: ignore[no-untyped-def]
    from catalog_service.shops import create_shop

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            shop, _key, _secret = create_shop(session, platform="woocommerce", domain="shop.example.com",
                                              webhook_secret=SECRET, api_base_url="http://127.0.0.1:9/")
    return WooCommerce(client, shop.id)


def rows(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return app.extensions["catalog_db"].session().scalar(select(func.count()).select_from(model))


def test_ping_when_the_webhook_is_saved_gets_200(app, woo, client) -> None:
    """WooCommerce's form-encoded ping, unsigned, is answered 200 and writes nothing."""
    response = client.post(f"/webhooks/woocommerce/{woo.shop_id}", data="webhook_id=31",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and response.get_json()["outcome"] == "ping"
    assert rows(app, Delivery) == 0


def test_unsigned_json_is_not_a_ping(woo, client) -> None:
    """Only the exact ping shape skips the signature."""
    response = client.post(f"/webhooks/woocommerce/{woo.shop_id}", data=json.dumps(PAYLOAD),
                           content_type="application/json", headers={"X-WC-Webhook-Topic": "product.created"})
    assert response.status_code == 401


def test_product_created_is_normalised(app, woo) -> None:
    """name, description, first category and tag names land on the product."""
    response = woo.send("product.created", PAYLOAD)
    assert response.status_code == 200 and response.get_json()["outcome"] == "render"
    with app.app_context():
        product = app.extensions["catalog_db"].session().scalar(select(Product))
        assert (product.external_id, product.title, product.product_type) == ("794", "Premium Quality", "Clothing")
        assert product.tags == ["cotton"] and "Pellentesque" in product.description
        assert [i.external_id for i in product.images] == ["792", "793"]


@pytest.mark.parametrize("mutate", ["bad", "altered", "missing"])
def test_bad_signatures_get_401_and_nothing_written(app, woo, mutate: str) -> None:
    """Wrong secret, a body changed after signing, or no signature: 401."""
    body = json.dumps(PAYLOAD).encode()
    good = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    if mutate == "bad":
        response = woo.send("product.created", PAYLOAD, secret="other")
    elif mutate == "altered":
        response = woo.send("product.created", None, body=body[:-1] + b" ", signature=good)
    else:
        response = woo.send("product.created", None, body=body, signature="")
    assert response.status_code == 401
    assert rows(app, Delivery) == 0


def test_update_after_our_push_does_not_loop(app, woo) -> None:
    """Our uploaded media comes back in product.updated; it is recognised by file name and ignored."""
    woo.send("product.created", PAYLOAD)
    updated = copy.deepcopy(PAYLOAD)
    updated["images"].append({"id": 901, "src": "https://shop.example.com/wp-content/uploads/2026/11/"
                              "794-cutout-cs0badf00d-1.png", "name": "", "alt": "cutout"})
    assert woo.send("product.updated", updated).get_json()["outcome"] == "ignored"
    assert rows(app, Render) == 1


def test_deleted_cancels_and_restored_comes_back(app, woo) -> None:
    """product.deleted ({"id"}) cancels queued work; product.restored brings the product back."""
    render_id = woo.send("product.created", PAYLOAD).get_json()["render_id"]
    assert woo.send("product.deleted", {"id": 794}).get_json()["outcome"] == "deleted"
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.get(Render, render_id).status == RenderStatus.CANCELLED
    woo.send("product.restored", PAYLOAD)
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalar(select(Product)).deleted is False


@pytest.mark.both_databases
def test_same_delivery_id_is_a_duplicate(app, woo) -> None:
    """A repeated delivery id starts nothing new."""
    woo.send("product.created", PAYLOAD, delivery_id="abc")
    assert woo.send("product.created", PAYLOAD, delivery_id="abc").get_json()["outcome"] == "duplicate"
    assert rows(app, Render) == 1


def test_shop_of_another_platform_is_404(app, woo, shop, client) -> None:
    """A generic shop's id on the WooCommerce route is not found."""
    generic_id = shop[0]
    response = client.post(f"/webhooks/woocommerce/{generic_id}", data=b"{}", content_type="application/json")
    assert response.status_code == 404


def test_malformed_json_is_400(woo) -> None:
    """A signed body that is not JSON: 400."""
    response = woo.send("product.created", None, body=b'{"id": 794,')
    assert response.status_code == 400 and "JSON" in response.get_json()["error"]["message"]


def test_deep_json_is_400_not_a_crash(woo) -> None:
    """A body nested 100 000 levels deep is refused without a recursion error."""
    body = b"[" * 100_000 + b"]" * 100_000
    response = woo.send("product.created", None, body=body)
    assert response.status_code == 400


@pytest.mark.both_databases
def test_replayed_older_create_does_not_revert_the_images(app, woo) -> None:
    """A signed product.created older (date_modified_gmt) than what we hold, under a fresh delivery id, is ignored."""
    newer = {**copy.deepcopy(PAYLOAD), "date_modified_gmt": "2026-11-21T08:00:00",
             "images": [{"id": 795, "src": "https://shop.example.com/wp-content/uploads/2026/11/new.jpg", "alt": ""}]}
    assert woo.send("product.created", newer).get_json()["outcome"] == "render"
    replay = woo.send("product.created", PAYLOAD).get_json()
    assert replay["outcome"] == "ignored" and replay["reason"].startswith("stale")
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert [image.external_id for image in session.scalar(select(Product)).images] == ["795"]
        assert sorted(d.outcome for d in session.scalars(select(Delivery))) == ["ignored", "render"]
    assert rows(app, Render) == 1


def test_date_modified_gmt_is_read_as_utc(app, woo) -> None:
    """WooCommerce's date_modified_gmt has no offset: it is stored as that UTC instant."""
    import datetime as dt

    woo.send("product.created", PAYLOAD)
    with app.app_context():
        stored = app.extensions["catalog_db"].session().scalar(select(Product)).source_updated_at
    assert stored.replace(tzinfo=stored.tzinfo or dt.UTC) == dt.datetime(2026, 11, 20, 20, 37, 21, tzinfo=dt.UTC)
