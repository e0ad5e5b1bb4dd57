"""POST /webhooks/shopify: signed by the app's secret, deduplicated on the event id, every topic."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from catalog_service.models import Asset, AssetKind, Delivery, Product, Render, RenderStatus, Shop
from catalog_service.stores.base import asset_filename

PAYLOAD = json.loads((Path(__file__).parent / "payloads" / "shopify_product.json").read_text())
DOMAIN = "acme-apparel.myshopify.com"


class Shopify:
    """Sends webhooks the way Shopify does: base64 HMAC of the raw body, the standard headers."""

    def __init__(self, client, secret: str) -> None:  # type: ignore[no-untyped-def]
        self.client, self.secret = client, secret

    def send(self, topic: str, payload: object, *, event_id: str | None = None, webhook_id: str | None = None,
             domain: str = DOMAIN, body: bytes | None = None, signature: str | None = None,
             content_type: str = "application/json"):  # type: ignore[no-untyped-def]
        body = json.dumps(payload).encode() if body is None else body
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).digest()
        headers = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": domain,
            "X-Shopify-API-Version": "2026-10",
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": "2026-11-25T10:00:00.000Z",
            "X-Shopify-Hmac-Sha256": signature if signature is not None else base64.b64encode(digest).decode(),
        }
        if event_id is not None:
            headers["X-Shopify-Event-Id"] = event_id
        return self.client.post("/webhooks/shopify", data=body, headers=headers, content_type=content_type)


@pytest.fixture
def shopify(app, client, app_config):  # type: ignore[no-untyped-def]
    from catalog_service.shops import create_shop

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            create_shop(session, platform="shopify", domain=DOMAIN, access_token="shpat_secret_token")
    return Shopify(client, app_config["shopify_api_secret"])


def rows(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return app.extensions["catalog_db"].session().scalar(select(func.count()).select_from(model))


def test_product_create_is_parsed_from_the_rest_payload(app, shopify) -> None:
    """The documented payload becomes a product: tags split, HTML kept, images with their ids."""
    response = shopify.send("products/create", PAYLOAD, event_id="evt-1")
    assert response.status_code == 200 and response.get_json()["outcome"] == "render"
    with app.app_context():
        product = app.extensions["catalog_db"].session().scalar(select(Product))
        assert product.external_id == "788032119674292922"
        assert product.tags == ["example", "mens", "t-shirt"]
        assert product.vendor == "Acme" and product.product_type == "Shirts"
        assert [(i.external_id, i.alt) for i in product.images] == [("40712392212604", "Front of the shirt")]


def test_each_delivery_records_what_it_did(app, shopify) -> None:
    """The Delivery row names its outcome and the Render it made; a re-sent product with the same photos makes none."""
    first = shopify.send("products/create", PAYLOAD, event_id="evt-a").get_json()
    again = shopify.send("products/update", PAYLOAD, event_id="evt-b").get_json()
    assert again["outcome"] == "ignored" and again["render_id"] is None
    with app.app_context():
        deliveries = app.extensions["catalog_db"].session().scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [(d.delivery_key, d.outcome, d.render_id) for d in deliveries] == [
            ("shopify:evt-a", "render", first["render_id"]), ("shopify:evt-b", "ignored", None)]
        render = app.extensions["catalog_db"].session().get(Render, first["render_id"])
        assert render.status == RenderStatus.QUEUED and render.trigger == "webhook" and render.options == {}


def test_signature_must_match_the_exact_body(app, shopify) -> None:
    """Good passes; bad, missing, or a body altered by one byte get 401 and write nothing."""
    body = json.dumps(PAYLOAD).encode()
    good = base64.b64encode(hmac.new(shopify.secret.encode(), body, hashlib.sha256).digest()).decode()
    altered = body.replace(b"Example T-Shirt", b"Example T-Shirs")
    assert shopify.send("products/create", None, body=altered, signature=good).status_code == 401
    assert shopify.send("products/create", None, body=body, signature="").status_code == 401
    assert shopify.send("products/create", None, body=body, signature="bm9wZQ==").status_code == 401
    assert rows(app, Delivery) == 0
    assert shopify.send("products/create", None, body=body, signature=good).status_code == 200


@pytest.mark.both_databases
def test_dedupe_prefers_the_event_id(app, shopify) -> None:
    """Two subscriptions deliver one event under two webhook ids: one delivery row, one render."""
    first = shopify.send("products/create", PAYLOAD, event_id="evt-7", webhook_id="wh-a")
    second = shopify.send("products/create", PAYLOAD, event_id="evt-7", webhook_id="wh-b")
    assert second.status_code == 200 and second.get_json()["outcome"] == "duplicate"
    assert first.get_json()["outcome"] == "render"
    assert rows(app, Delivery) == 1 and rows(app, Render) == 1


@pytest.mark.both_databases
def test_webhook_id_is_the_fallback_key(app, shopify) -> None:
    """Without an event id, a retried delivery (same webhook id) is a duplicate."""
    shopify.send("products/create", PAYLOAD, webhook_id="wh-1")
    assert shopify.send("products/create", PAYLOAD, webhook_id="wh-1").get_json()["outcome"] == "duplicate"
    assert rows(app, Render) == 1


def test_our_own_pushed_media_does_not_render_again(app, shopify) -> None:
    """After our push, Shopify sends products/update listing our files too: no new render (no loop)."""
    shopify.send("products/create", PAYLOAD)
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        render = session.scalar(select(Render))
        session.add(Asset(shop_id=render.shop_id, render_id=render.id, kind=AssetKind.CUTOUT, storage_key="k",
                          content_type="image/png", width=1, height=1, bytes=1,
                          external_id="40712399999999"))
        session.commit()
    updated = copy.deepcopy(PAYLOAD)
    updated["images"].append({"id": 40712399999999, "alt": "cutout", "position": 2,
                              "src": "https://cdn.shopify.com/s/files/1/0712/3456/files/x.png?v=2"})
    updated["images"].append({"id": 40712400000000, "alt": "scene", "position": 3,
                              "src": "https://cdn.shopify.com/s/files/1/0712/3456/files/788-scene-studio-cs1a2b3c4d_9f.jpg?v=3"})
    response = shopify.send("products/update", updated)
    assert response.get_json()["outcome"] == "ignored"
    assert rows(app, Render) == 1
    with app.app_context():
        product = app.extensions["catalog_db"].session().scalar(select(Product))
        assert len(product.images) == 1  # ours are not taken for the merchant's source photos


def test_merchant_adding_a_photo_renders_again(app, shopify) -> None:
    """A new photo of the merchant's is a reason to render."""
    shopify.send("products/create", PAYLOAD)
    updated = copy.deepcopy(PAYLOAD)
    updated["images"].insert(0, {"id": 40712392299999, "alt": "", "position": 1,
                                 "src": "https://cdn.shopify.com/s/files/1/0712/3456/files/tshirt-new.jpg?v=9"})
    assert shopify.send("products/update", updated).get_json()["outcome"] == "render"


def test_delete_cancels_queued_work(app, shopify) -> None:
    """products/delete sends only the id; the product's queued render is cancelled."""
    render_id = shopify.send("products/create", PAYLOAD).get_json()["render_id"]
    response = shopify.send("products/delete", {"id": PAYLOAD["id"]})
    assert response.get_json()["outcome"] == "deleted"
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.get(Render, render_id).status == RenderStatus.CANCELLED
        assert session.scalar(select(Product)).deleted is True


def test_uninstall_deactivates_the_shop_and_cancels_its_work(app, shopify) -> None:
    """app/uninstalled: the shop goes inactive, its queued renders are cancelled, later product hooks get 404."""
    render_id = shopify.send("products/create", PAYLOAD).get_json()["render_id"]
    assert shopify.send("app/uninstalled", {"id": 1, "domain": DOMAIN}).get_json()["outcome"] == "deactivated"
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.scalar(select(Shop)).active is False
        assert session.get(Render, render_id).status == RenderStatus.CANCELLED
    assert shopify.send("products/create", PAYLOAD).status_code == 404


@pytest.mark.parametrize("topic", ["customers/data_request", "customers/redact"])
def test_customer_privacy_requests_are_answered(app, shopify, topic: str) -> None:
    """We hold no customer data: the request is recorded and answered 200."""
    payload = {"shop_id": 954889, "shop_domain": DOMAIN, "customer": {"id": 191167, "email": "john@example.com"},
               "orders_requested": [299938], "data_request": {"id": 9999}}
    response = shopify.send(topic, payload)
    assert response.status_code == 200 and response.get_json()["outcome"] == "noted"
    with app.app_context():
        delivery = app.extensions["catalog_db"].session().scalar(select(Delivery))
        assert delivery.topic == topic


@pytest.mark.both_databases
def test_shop_redact_deletes_rows_and_files(app, shopify) -> None:
    """shop/redact removes the shop, its products, renders and stored files; a repeat is still 200."""
    shopify.send("products/create", PAYLOAD)
    storage = app.extensions["catalog"].storage
    key = storage.put(b"\x89PNG fake asset bytes", ext="png")
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        render = session.scalar(select(Render))
        session.add(Asset(shop_id=render.shop_id, render_id=render.id, kind=AssetKind.CUTOUT, storage_key=key,
                          content_type="image/png", width=1, height=1, bytes=1))
        session.commit()
    response = shopify.send("shop/redact", {"shop_id": 954889, "shop_domain": DOMAIN})
    assert response.status_code == 200 and response.get_json()["outcome"] == "redacted"
    assert not storage.exists(key)
    for model in (Shop, Product, Render, Asset, Delivery):
        assert rows(app, model) == 0
    assert shopify.send("shop/redact", {"shop_id": 954889, "shop_domain": DOMAIN}).status_code == 200


def test_unknown_shop_gets_404_for_product_topics(app, shopify) -> None:
    """A correctly signed delivery for a shop that never installed us is not found, and leaves no trace."""
    response = shopify.send("products/create", PAYLOAD, domain="stranger.myshopify.com")
    assert response.status_code == 404 and "stranger.myshopify.com" in response.get_json()["error"]["message"]
    for model in (Delivery, Product, Render):
        assert rows(app, model) == 0


def test_inactive_shop_gets_404_and_nothing_is_written(app, shopify) -> None:
    """An uninstalled shop's product webhooks are refused before anything is stored."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.scalar(select(Shop)).active = False
    assert shopify.send("products/create", PAYLOAD).status_code == 404
    for model in (Delivery, Product, Render):
        assert rows(app, model) == 0


@pytest.mark.both_databases
def test_a_dropped_database_connection_costs_one_retry(app, shopify, postgres_url) -> None:
    """The server dropped the intake's pooled connection: that delivery gets 503 (Shopify sends it again),
    nothing is half-written, and the retry, on a new connection, is accepted."""
    assert shopify.send("products/create", {**PAYLOAD, "id": 1}).status_code == 200  # the pool has a connection
    db = app.extensions["catalog_db"]
    with db.engine.connect() as connection:  # the pool's one connection, which that delivery used
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = create_engine(postgres_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    admin.dispose()

    first = shopify.send("products/create", PAYLOAD, event_id="evt-dropped")
    assert first.status_code == 503
    assert rows(app, Delivery) == 1 and rows(app, Product) == 1

    retry = shopify.send("products/create", PAYLOAD, event_id="evt-dropped")
    assert retry.status_code == 200 and retry.get_json()["outcome"] == "render"
    assert rows(app, Delivery) == 2 and rows(app, Product) == 2


def test_new_product_without_photos_is_recorded_and_left_alone(app, shopify) -> None:
    """No image, nothing to make: the product and the delivery are stored, the outcome says why."""
    response = shopify.send("products/create", {**PAYLOAD, "images": [], "media": []}, event_id="evt-bare")
    assert response.get_json() == {"outcome": "ignored", "render_id": None, "reason": "the product has no images"}
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.scalar(select(Product)).images == []
        recorded = [(d.delivery_key, d.outcome) for d in session.scalars(select(Delivery))]
        assert recorded == [("shopify:evt-bare", "ignored")]
    assert rows(app, Render) == 0


def test_update_about_a_product_we_never_saw_renders_it(app, shopify) -> None:
    """An update can be the first we hear of a product (installed after it was created): it is new to us."""
    body = shopify.send("products/update", PAYLOAD, event_id="evt-first-update").get_json()
    assert body["outcome"] == "render"
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.scalar(select(Delivery)).render_id == body["render_id"]
        assert [image.src for image in session.scalar(select(Product)).images] == [PAYLOAD["images"][0]["src"]]


def test_our_own_file_on_a_new_product_is_not_a_source(app, shopify) -> None:
    """A product whose only image is a file we made (a duplicated product, say) has nothing of theirs to render."""
    name = asset_filename(str(PAYLOAD["id"]), "cutout", "", "0123456789ab" * 5, "png")
    ours = {**PAYLOAD, "images": [{"id": 555, "alt": "", "src": f"https://cdn.shopify.com/s/files/1/0712/3456/files/{name}?v=1"}]}
    body = shopify.send("products/create", ours).get_json()
    assert body["outcome"] == "ignored" and body["render_id"] is None
    assert rows(app, Render) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**PAYLOAD, "id": "not-a-number"}, "id"),
        ({**PAYLOAD, "images": [{"id": 1, "src": "javascript:alert(1)"}]}, "src"),
        ({**PAYLOAD, "tags": ["a", "b"]}, "tags"),
        ([], "_schema"),
    ],
)
def test_payload_failing_the_schema_is_400(app, shopify, payload: object, field: str) -> None:
    """Signed but malformed: 400 naming the field, nothing written."""
    response = shopify.send("products/create", payload)
    assert response.status_code == 400
    assert field in response.get_json()["error"]["message"]
    assert rows(app, Delivery) == 0


def test_wrong_content_type_is_415(shopify) -> None:
    """A signed body that is not declared as JSON is refused."""
    assert shopify.send("products/create", PAYLOAD, content_type="text/plain").status_code == 415


def test_unsubscribed_topic_is_acknowledged(shopify) -> None:
    """A topic we do not use is answered 200 so Shopify keeps the endpoint healthy."""
    response = shopify.send("orders/create", {"id": 1})
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"


def test_unset_app_secret_refuses_everything(app, shopify) -> None:
    """Without CATALOG_SHOPIFY_API_SECRET nothing can be verified, so nothing is accepted."""
    app.extensions["catalog"].config.shopify_api_secret = ""
    response = shopify.send("products/create", PAYLOAD)
    assert response.status_code == 401
    assert "CATALOG_SHOPIFY_API_SECRET" in response.get_json()["error"]["message"]


def test_access_token_is_encrypted_at_rest(app, shopify) -> None:
    """The shop's token is not readable in the database."""
    from sqlalchemy import text

    with app.app_context():
        raw = app.extensions["catalog_db"].session().execute(text("SELECT access_token FROM shops")).scalar()
        assert raw and "shpat_secret_token" not in raw


OTHER = "other-shop.myshopify.com"


def install(app, domain: str) -> None:  # type: ignore[no-untyped-def]
    from catalog_service.shops import create_shop

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            create_shop(session, platform="shopify", domain=domain, access_token="shpat_other_token")


def active_shops(app) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return {shop.domain: shop.active for shop in app.extensions["catalog_db"].session().scalars(select(Shop))}


@pytest.mark.both_databases
def test_shop_redact_signed_for_one_shop_cannot_delete_another(app, shopify) -> None:
    """A signed shop/redact naming shop A, sent with shop B's domain header, deletes neither shop."""
    install(app, OTHER)
    response = shopify.send("shop/redact", {"shop_id": 954889, "shop_domain": DOMAIN}, domain=OTHER)
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert active_shops(app) == {DOMAIN: True, OTHER: True}
    assert rows(app, Delivery) == 0


@pytest.mark.both_databases
def test_uninstall_signed_for_one_shop_cannot_deactivate_another(app, shopify) -> None:
    """app/uninstalled carries the shop object; its myshopify_domain must be the header's shop, or nothing happens."""
    install(app, OTHER)
    shop_object = {"id": 548380009, "name": "Acme", "domain": "www.acme-apparel.example", "myshopify_domain": DOMAIN}
    response = shopify.send("app/uninstalled", shop_object, domain=OTHER)
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert active_shops(app) == {DOMAIN: True, OTHER: True}
    # The shop object's `domain` is the storefront's own domain: the header names the myshopify one.
    assert shopify.send("app/uninstalled", shop_object).get_json()["outcome"] == "deactivated"
    assert active_shops(app) == {DOMAIN: False, OTHER: True}


@pytest.mark.parametrize("topic", ["customers/data_request", "customers/redact"])
def test_customer_request_for_another_shop_is_not_recorded(app, shopify, topic: str) -> None:
    """A customer privacy request whose signed shop_domain is not the header's shop records nothing."""
    install(app, OTHER)
    payload = {"shop_id": 954889, "shop_domain": DOMAIN, "customer": {"id": 191167}, "orders_to_redact": []}
    response = shopify.send(topic, payload, domain=OTHER)
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert rows(app, Delivery) == 0


def test_shop_topic_whose_body_names_no_shop_is_400(app, shopify) -> None:
    """Shopify always names the shop in these bodies; one that does not is refused and changes nothing."""
    response = shopify.send("shop/redact", {"shop_id": 954889})
    assert response.status_code == 400 and "shop_domain" in response.get_json()["error"]["message"]
    assert active_shops(app) == {DOMAIN: True}


@pytest.mark.both_databases
def test_replayed_older_create_does_not_revert_the_images(app, shopify) -> None:
    """A signed create from before the product's last change, replayed under a fresh id, is recorded and ignored."""
    older = copy.deepcopy(PAYLOAD)
    newer = {**copy.deepcopy(PAYLOAD), "updated_at": "2026-11-21T09:00:00-05:00",
             "images": [{"id": 40712392299999, "alt": "new", "src": "https://cdn.shopify.com/s/files/new.jpg"}]}
    assert shopify.send("products/create", newer, event_id="evt-t2").get_json()["outcome"] == "render"
    replay = shopify.send("products/create", older, event_id="evt-replayed").get_json()
    assert replay["outcome"] == "ignored" and replay["reason"].startswith("stale")
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert [image.src for image in session.scalar(select(Product)).images] == [newer["images"][0]["src"]]
        outcomes = {d.delivery_key: d.outcome for d in session.scalars(select(Delivery))}
        assert outcomes == {"shopify:evt-t2": "render", "shopify:evt-replayed": "ignored"}
    assert rows(app, Render) == 1


def test_updated_at_in_another_offset_compares_as_the_same_instant(app, shopify) -> None:
    """Shopify writes the shop's local offset: 19:00-05:00 and 00:00Z the next day are one instant, not older."""
    shopify.send("products/create", PAYLOAD)
    same_instant = {**copy.deepcopy(PAYLOAD), "updated_at": "2026-11-21T00:00:00Z",
                    "images": [{"id": 7, "alt": "", "src": "https://cdn.shopify.com/s/files/other.jpg"}]}
    assert shopify.send("products/update", same_instant).get_json()["outcome"] == "render"
