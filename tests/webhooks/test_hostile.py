"""Anything a sender can put in a request gets a 4xx with a reason, never a 5xx, on every backend."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import pytest
from sqlalchemy import func, select

from catalog_service.models import Delivery, Product

DOMAIN = "hostile.myshopify.com"
GOOD = {"id": 5, "title": "Mug", "images": [{"id": 1, "src": "https://cdn.example.com/a.jpg"}]}


@pytest.fixture
def send(app, client, app_config):  # type: ignore[no-untyped-def]
    from catalog_service.shops import create_shop

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            create_shop(session, platform="shopify", domain=DOMAIN)
    secret = app_config["shopify_api_secret"].encode()

    def post(body: bytes):  # type: ignore[no-untyped-def]
        return client.post("/webhooks/shopify", data=body, content_type="application/json", headers={
            "X-Shopify-Topic": "products/create", "X-Shopify-Shop-Domain": DOMAIN,
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode(),
        })

    return post


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b'"just a string"',
        b"\xff\xfe not utf-8",
        json.dumps({**GOOD, "title": "nul \u0000 inside"}).encode(),
        json.dumps({**GOOD, "title": "lone surrogate \ud800 inside"}).encode(),
        json.dumps({**GOOD, "images": [{"src": "https://cdn.example.com/a.jpg", "alt": "\udfff"}]}).encode(),
        json.dumps({**GOOD, "vendor": "x" * 10_000}).encode(),
        json.dumps({**GOOD, "id": 10**40}).encode(),
        json.dumps({**GOOD, "id": -3}).encode(),
        json.dumps({**GOOD, "id": True}).encode(),
        json.dumps({**GOOD, "images": "https://cdn.example.com/a.jpg"}).encode(),
        json.dumps({**GOOD, "images": [{"src": "http://" + "a" * 5000 + ".com/x.jpg"}]}).encode(),
        json.dumps({**GOOD, "images": [{"src": None}]}).encode(),
        json.dumps({**GOOD, "tags": {"a": 1}}).encode(),
        b'{"id": 5, "title": ' + b'"' + "é".encode() * 3000 + b'"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"id": 1e400}',
    ],
)
def test_hostile_body_gets_400_and_nothing_is_written(app, send, body: bytes) -> None:
    """Signed garbage: 400 with a message, no delivery recorded, the service still answers after."""
    response = send(body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]["message"]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert send(json.dumps(GOOD).encode()).status_code == 200


@pytest.mark.both_databases
def test_unicode_in_every_text_field_round_trips(app, send) -> None:
    """Every text field keeps any script and emoji exactly."""
    text = "Ünïcödé ✓ 漢字 עברית 🧪"
    payload = {"id": 77, "title": text, "body_html": f"<p>{text}</p>", "vendor": text, "product_type": text,
               "tags": f"{text}, b", "images": [{"id": 1, "src": "https://cdn.example.com/%E2%9C%93.jpg", "alt": text}]}
    assert send(json.dumps(payload).encode()).status_code == 200
    with app.app_context():
        product = app.extensions["catalog_db"].session().scalar(select(Product))
        assert (product.title, product.vendor, product.product_type) == (text, text, text)
        assert product.tags == [text, "b"] and product.images[0].alt == text
