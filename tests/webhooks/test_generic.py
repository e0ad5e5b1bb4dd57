"""POST /webhooks/generic/<shop_id>: verified, validated, deduplicated, answered at once."""

from __future__ import annotations

import datetime as dt
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


@pytest.fixture
def standard(standard_webhooks):  # type: ignore[no-untyped-def]
    return standard_webhooks


@pytest.mark.both_databases
def test_standard_webhooks_delivery_is_accepted_and_its_id_dedupes(app, standard) -> None:
    """Signed with the standardwebhooks library: accepted; the same webhook-id again is a duplicate."""
    first = standard.send("product.created", PRODUCT, delivery_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    assert first.status_code == 200 and first.get_json()["outcome"] == "render"
    again = standard.send("product.created", PRODUCT, delivery_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"
    with app.app_context():
        keys = [d.delivery_key for d in app.extensions["catalog_db"].session().scalars(select(Delivery))]
    assert keys == ["generic:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"]


def test_standard_webhooks_delivery_six_minutes_old_is_refused(app, standard) -> None:
    """The signed timestamp bounds a replay: six minutes old is 401 and writes nothing."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    response = standard.send("product.created", PRODUCT, timestamp=old)
    assert response.status_code == 401
    assert "too old" in response.get_json()["error"]["message"]
    assert count(app, Delivery) == 0


@pytest.mark.parametrize("tamper", ["secret", "id", "body"])
def test_standard_webhooks_signature_covers_secret_id_and_body(app, standard, tamper: str) -> None:
    """Another secret, a replay under a fresh webhook-id, or an altered body: 401, nothing written."""
    body = json.dumps({"event": "product.created", "product": PRODUCT}).encode()
    if tamper == "secret":
        response = standard.post_standard(body, msg_id="m-1", secret="not-the-shops-secret")
    elif tamper == "id":
        response = standard.post_standard(body, msg_id="m-fresh", signed_id="m-1")
    else:
        response = standard.post_standard(body.replace(b"Ceramic", b"Plastic"), msg_id="m-1", signed_body=body)
    assert response.status_code == 401
    assert "webhook-signature" in response.get_json()["error"]["message"]
    assert count(app, Delivery) == 0


def test_old_style_signature_still_works(app, webhooks) -> None:
    """X-Catalog-Signature (deprecated) with X-Catalog-Delivery-Id is still accepted, for existing senders."""
    response = webhooks.send("product.created", PRODUCT, delivery_id="legacy-1")
    assert response.status_code == 200 and response.get_json()["outcome"] == "render"
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalar(select(Delivery)).delivery_key == "generic:legacy-1"


def test_unsigned_delivery_names_the_standard_headers(app, client, shop) -> None:
    """No signature at all: 401 saying how to sign."""
    body = json.dumps({"event": "product.created", "product": PRODUCT}).encode()
    response = client.post(f"/webhooks/generic/{shop[0]}", data=body, content_type="application/json")
    assert response.status_code == 401
    assert "webhook-signature" in response.get_json()["error"]["message"]
    assert count(app, Delivery) == 0


def test_a_whsec_secret_is_used_as_standard_webhooks_reads_it(app, standard) -> None:
    """A shop given a `whsec_` secret (one another platform generated) verifies with that secret as the library
    decodes it."""
    import base64

    from catalog_service.shops import create_shop

    whsec = "whsec_" + base64.b64encode(b"\x00\x01 raw key bytes \xff").decode()
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            created, _key, _secret = create_shop(session, platform="generic", domain="whsec.example.com",
                                                 webhook_secret=whsec)
    response = standard.for_shop(created.id, whsec).send("product.created", PRODUCT)
    assert response.status_code == 200 and response.get_json()["outcome"] == "render"


@pytest.mark.both_databases
def test_replayed_older_create_does_not_revert_the_images(app, standard) -> None:
    """A create whose signed updated_at is older than the product's, under a fresh id, is recorded and ignored."""
    newer = {**PRODUCT, "updated_at": "2026-11-21T09:00:00Z",
             "images": [{"id": 12, "src": "https://cdn.example.com/mug-2.jpg"}]}
    assert standard.send("product.created", newer).get_json()["outcome"] == "render"
    replay = standard.send("product.created", {**PRODUCT, "updated_at": "2026-11-20T09:00:00+00:00"}).get_json()
    assert replay["outcome"] == "ignored" and replay["reason"].startswith("stale")
    with app.app_context():
        product = app.extensions["catalog_db"].session().scalar(select(Product))
        assert [image.src for image in product.images] == ["https://cdn.example.com/mug-2.jpg"]
    assert count(app, Render) == 1


def test_updated_at_must_be_a_date_time(app, standard) -> None:
    """An updated_at that is not ISO 8601 is a 400 naming the field."""
    response = standard.send("product.created", {**PRODUCT, "updated_at": "yesterday"})
    assert response.status_code == 400 and "updated_at" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_updated_at_at_the_ends_of_the_calendar_is_400(app, standard, moment: str) -> None:
    """A date-time that cannot be moved to UTC is refused with 400 naming the field, never a 500."""
    response = standard.send("product.created", {**PRODUCT, "updated_at": moment})
    assert response.status_code == 400 and "updated_at" in response.get_json()["error"]["message"]
    assert count(app, Delivery) == 0
