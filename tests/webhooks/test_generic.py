"""POST /webhooks/generic/<shop_id>: verified, validated, deduplicated, answered at once."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from catalog_service.models import Delivery, Product, Render, RenderStatus

PRODUCT = {
    "id": 1001,
    "title": "Ceramic mug",
    "description": "<p>Glazed stoneware mug</p>",
    "product_type": "Kitchen",
    "vendor": "Clayworks",
    "tags": ["mug", "ceramic"],
    "images": [{"id": 11, "src": "https://cdn.example.com/mug.jpg", "alt": "front"}],
}


def count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return app.extensions["catalog_db"].session().scalar(select(func.count()).select_from(model))


@pytest.mark.both_databases
def test_created_product_is_recorded_and_a_render_queued(app, webhooks, redis) -> None:
    """A signed product.created answers 200 with the render it queued."""
    response = webhooks.send("product.created", PRODUCT)
    assert response.status_code == 200
    body = response.get_json()
    assert body["outcome"] == "render" and body["queued"] is True
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        render = session.get(Render, body["render_id"])
        assert render.status == RenderStatus.QUEUED
        product = session.scalar(select(Product))
        assert product.external_id == "1001" and product.title == "Ceramic mug"
        assert [image.src for image in product.images] == ["https://cdn.example.com/mug.jpg"]
    assert redis.llen("rq:queue:renders") == 1


@pytest.mark.both_databases
def test_same_delivery_twice_starts_work_once(app, webhooks) -> None:
    """A shop's retry of a delivery we already took is answered 200 and changes nothing."""
    first = webhooks.send("product.created", PRODUCT, delivery_id="d-1")
    second = webhooks.send("product.created", PRODUCT, delivery_id="d-1")
    assert first.status_code == second.status_code == 200
    assert second.get_json()["outcome"] == "duplicate"
    assert count(app, Render) == 1 and count(app, Delivery) == 1


def test_update_without_new_images_does_not_render_again(app, webhooks) -> None:
    """A title edit is recorded but costs no render; a new photo does."""
    webhooks.send("product.created", PRODUCT)
    edited = webhooks.send("product.updated", {**PRODUCT, "title": "Big ceramic mug"})
    assert edited.get_json()["outcome"] == "ignored"
    with app.app_context():
        product = app.extensions["catalog_db"].session().scalar(select(Product))
        assert product.title == "Big ceramic mug"
    new_photo = {**PRODUCT, "images": [{"id": 12, "src": "https://cdn.example.com/mug-2.jpg"}]}
    assert webhooks.send("product.updated", new_photo).get_json()["outcome"] == "render"
    assert count(app, Render) == 2


def test_delete_marks_the_product_deleted(app, webhooks) -> None:
    """product.deleted keeps the history but marks the product gone."""
    webhooks.send("product.created", PRODUCT)
    assert webhooks.send("product.deleted", {"id": 1001}).get_json()["outcome"] == "deleted"
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalar(select(Product)).deleted is True


def test_product_without_images_is_recorded_but_not_rendered(app, webhooks) -> None:
    """Nothing to cut out: no render, and the answer says why."""
    body = webhooks.send("product.created", {**PRODUCT, "images": []}).get_json()
    assert body["outcome"] == "ignored" and "no images" in body["reason"]
    assert count(app, Render) == 0


def test_bad_signature_is_refused_and_nothing_written(app, webhooks) -> None:
    """A body signed with the wrong secret gets 401."""
    response = webhooks.send("product.created", PRODUCT, secret="wrong")
    assert response.status_code == 401
    assert "X-Catalog-Signature" in response.get_json()["error"]["message"]
    assert count(app, Delivery) == 0


def test_unknown_shop_is_404(client) -> None:
    """No shop, no webhook."""
    response = client.post("/webhooks/generic/999", data=b"{}", headers={"X-Catalog-Signature": "sha256=00"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"event": "product.exploded", "product": PRODUCT}).encode(), "event"),
        (json.dumps({"event": "product.created"}).encode(), "product"),
        (json.dumps({"event": "product.created", "product": {**PRODUCT, "id": None}}).encode(), "id"),
        (json.dumps({"event": "product.created",
                     "product": {**PRODUCT, "images": [{"src": "ftp://x/y.jpg"}]}}).encode(), "src"),
        (json.dumps({"event": "product.created", "product": {**PRODUCT, "tags": "a,b"}}).encode(), "tags"),
        (json.dumps([1, 2, 3]).encode(), "schema"),
    ],
)
def test_malformed_bodies_get_400_with_the_field(app, webhooks, body: bytes, message: str) -> None:
    """Validly signed garbage is refused with a message naming what is wrong; nothing is written."""
    response = webhooks.post(body, delivery_id="x")
    assert response.status_code == 400
    assert message in response.get_json()["error"]["message"]
    assert count(app, Delivery) == 0


def test_missing_delivery_id_is_400(webhooks) -> None:
    """Without a delivery id we could not deduplicate, so we refuse."""
    body = json.dumps({"event": "product.created", "product": PRODUCT}).encode()
    response = webhooks.post(body, delivery_id=None)
    assert response.status_code == 400
    assert "X-Catalog-Delivery-Id" in response.get_json()["error"]["message"]


def test_oversized_body_is_413(app, webhooks) -> None:
    """A body over the limit (5 MB by default) is refused before it is parsed."""
    cap = app.extensions["catalog"].config.max_body_bytes
    assert cap == 5 * 1024 * 1024
    response = webhooks.post(b"{" + b" " * cap + b"}", delivery_id="big")
    assert response.status_code == 413


@pytest.mark.both_databases
def test_unicode_everywhere_is_kept(app, webhooks) -> None:
    """Titles and tags in any script survive intact."""
    product = {**PRODUCT, "title": "Tasse à café ☕ 咖啡杯", "tags": ["żółw", "🐢"]}
    assert webhooks.send("product.created", product).status_code == 200
    with app.app_context():
        stored = app.extensions["catalog_db"].session().scalar(select(Product))
        assert stored.title == "Tasse à café ☕ 咖啡杯" and stored.tags == ["żółw", "🐢"]


def test_redis_down_still_acknowledges_with_the_render_recorded(app, webhooks) -> None:
    """When Redis is unreachable the Render row is committed (for the sweeper) and the shop gets 200."""
    from catalog_service.services import redis_connection

    app.extensions["catalog"].redis = redis_connection("redis://127.0.0.1:1/0")
    body = webhooks.send("product.created", PRODUCT).get_json()
    assert body["outcome"] == "render" and body["queued"] is False
    assert count(app, Render) == 1


@pytest.mark.both_databases
def test_database_unreachable_gives_503_so_the_shop_retries(app, client) -> None:
    """With the database gone the webhook answers 503, never 500, and never 200."""
    from catalog_service.db import Database

    app.extensions["catalog_db"].engine.dispose()
    broken = Database("postgresql+psycopg://postgres@127.0.0.1:1/gone?connect_timeout=1")
    app.extensions["catalog_db"] = app.extensions["catalog"].db = broken
    response = client.post("/webhooks/generic/1", data=b"{}", headers={"X-Catalog-Signature": "sha256=00"})
    assert response.status_code == 503
    assert "retry" in response.get_json()["error"]["message"]


def set_settings(app, shop_id: int, **changes) -> None:  # type: ignore[no-untyped-def]
    from catalog_service.models import Shop
    from catalog_service.schemas import settings_with_defaults

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop_id)
            row.settings = settings_with_defaults({**row.settings, **changes})


def test_auto_generate_off_records_the_product_without_rendering(app, webhooks, shop) -> None:
    """A shop that renders by hand only gets its products recorded."""
    set_settings(app, shop[0], auto_generate=False)
    body = webhooks.send("product.created", PRODUCT).get_json()
    assert body["outcome"] == "ignored" and "auto-generate" in body["reason"]
    assert count(app, Product) == 1 and count(app, Render) == 0


def test_on_update_ignore_never_renders_for_updates(app, webhooks, shop) -> None:
    """With on_update=ignore, even new photos on an existing product start nothing."""
    webhooks.send("product.created", PRODUCT)
    set_settings(app, shop[0], on_update="ignore")
    new_photo = {**PRODUCT, "images": [{"id": 12, "src": "https://cdn.example.com/mug-2.jpg"}]}
    assert webhooks.send("product.updated", new_photo).get_json()["outcome"] == "ignored"
    assert count(app, Render) == 1


def test_wrong_content_type_is_415(webhooks) -> None:
    """A signed body sent as form data is refused with 415."""
    body = json.dumps({"event": "product.created", "product": PRODUCT}).encode()
    response = webhooks.client.post(
        f"/webhooks/generic/{webhooks.shop_id}", data=body, content_type="text/plain",
        headers={"X-Catalog-Signature": "sha256=" + __import__("hmac").new(
            webhooks.secret.encode(), body, "sha256").hexdigest(), "X-Catalog-Delivery-Id": "ct"})
    assert response.status_code == 415
