"""Shopify's OAuth install against the fake Shopify: consent redirect, callback checks, tokens, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select, text

from catalog_service.models import Shop
from fakes.shopify_server import FakeShopify

CLIENT_ID = "catalog-client-id"


@pytest.fixture
def shopify(app, app_config):  # type: ignore[no-untyped-def]
    with FakeShopify() as fake:
        fake.client_id, fake.client_secret = CLIENT_ID, app_config["shopify_api_secret"]
        config = app.extensions["catalog"].config
        config.shopify_api_key, config.shopify_admin_url = CLIENT_ID, fake.url
        yield fake


def install(client, shop: str):  # type: ignore[no-untyped-def]
    response = client.get(f"/shopify/install?shop={shop}")
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["Location"]).query)


def signed(query: dict[str, str], secret: str) -> str:
    message = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    return urlencode({**query, "hmac": hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()})


def callback_query(shopify, state: str, shop: str, **overrides) -> dict[str, str]:  # type: ignore[no-untyped-def]
    query = {"code": shopify.issue_code(), "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZmFrZQ", "shop": shop,
             "state": state, "timestamp": str(int(time.time()))}
    query.update(overrides)
    return query


def test_install_redirects_to_the_consent_screen(client, shopify, app) -> None:
    """The merchant is sent to the shop's authorize page with our client id, scopes, callback and a state."""
    params = install(client, shopify.shop_domain)
    assert params["client_id"] == [CLIENT_ID]
    assert params["scope"] == ["read_products,write_products,write_files"]
    assert params["redirect_uri"] == ["http://localhost:8000/shopify/callback"]
    assert len(params["state"][0]) >= 24


@pytest.mark.parametrize("shop", ["evil.com", "x.myshopify.com.evil.com", "-x.myshopify.com", ""])
def test_install_refuses_anything_but_a_shop_domain(client, shopify, shop: str) -> None:
    """Only name.myshopify.com, anchored."""
    assert client.get(f"/shopify/install?shop={shop}").status_code == 400


def test_callback_stores_encrypted_tokens_and_subscribes_webhooks(client, shopify, app, app_config) -> None:
    """A good callback: the code is exchanged for an expiring token pair, kept encrypted; four webhooks."""
    state = install(client, shopify.shop_domain)["state"][0]
    query = callback_query(shopify, state, shopify.shop_domain)
    response = client.get(f"/shopify/callback?{signed(query, app_config['shopify_api_secret'])}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["installed"] and body["api_key"].startswith("cs_")
    assert {w["topic"] for w in shopify.webhooks} == {"PRODUCTS_CREATE", "PRODUCTS_UPDATE", "PRODUCTS_DELETE",
                                                       "APP_UNINSTALLED"}
    assert {w["uri"] for w in shopify.webhooks} == {"http://localhost:8000/webhooks/shopify"}
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        shop = session.scalar(select(Shop))
        assert shop.access_token in shopify.valid_tokens
        stored = json.loads(shop.credentials)
        assert stored["refresh_token"] in shopify.refresh_tokens and stored["expires_at"] > time.time() + 3000
        assert stored["refresh_expires_at"] > time.time() + 89 * 86400  # Shopify's refresh_token_expires_in
        raw = session.execute(text("SELECT access_token, credentials FROM shops")).one()
        assert shop.access_token not in raw[0] and stored["refresh_token"] not in raw[1]


@pytest.mark.parametrize(
    ("tamper", "status"),
    [("hmac", 401), ("state", 403), ("timestamp", 401), ("shop", 403)],
)
def test_tampered_callbacks_are_refused_and_nothing_is_stored(client, shopify, app, app_config, tamper: str,
                                                               status: int) -> None:
    """A forged signature, an unknown state, a stale timestamp or another shop's state: refused, no shop made."""
    state = install(client, shopify.shop_domain)["state"][0]
    query = callback_query(shopify, state, shopify.shop_domain)
    if tamper == "state":
        query["state"] = "not-the-state-we-issued"
    elif tamper == "timestamp":
        query["timestamp"] = str(int(time.time()) - 3600)
    elif tamper == "shop":
        query["shop"] = "another-shop.myshopify.com"
    encoded = signed(query, app_config["shopify_api_secret"])
    if tamper == "hmac":
        encoded = signed(query, "a-different-secret")
    assert client.get(f"/shopify/callback?{encoded}").status_code == status
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalars(select(Shop)).all() == []
    assert shopify.webhooks == []


@pytest.mark.parametrize("bad_hmac", ["é" * 64, "٣" * 64, "%FF"], ids=["accented", "arabic-digits", "not-utf8"])
def test_a_non_ascii_callback_hmac_is_refused(client, shopify, app, app_config, bad_hmac: str) -> None:
    """An hmac with non-ASCII characters (or bytes that are not UTF-8) is a wrong signature: 401, no shop made."""
    state = install(client, shopify.shop_domain)["state"][0]
    query = callback_query(shopify, state, shopify.shop_domain)
    encoded = signed(query, app_config["shopify_api_secret"]).rsplit("&hmac=", 1)[0]
    value = bad_hmac if bad_hmac.startswith("%") else urlencode({"hmac": bad_hmac}).split("=", 1)[1]
    response = client.get(f"/shopify/callback?{encoded}&hmac={value}")
    assert response.status_code == 401 and "hmac" in response.get_json()["error"]["message"]
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalars(select(Shop)).all() == []


def test_a_state_works_once(client, shopify, app_config) -> None:
    """Replaying a used callback is refused."""
    state = install(client, shopify.shop_domain)["state"][0]
    query = callback_query(shopify, state, shopify.shop_domain)
    url = f"/shopify/callback?{signed(query, app_config['shopify_api_secret'])}"
    assert client.get(url).status_code == 200
    assert client.get(url).status_code == 403


def test_install_without_app_credentials_is_503(client, app) -> None:
    """An operator who has not configured the Shopify app gets a clear 503."""
    app.extensions["catalog"].config.shopify_api_key = ""
    response = client.get("/shopify/install?shop=x.myshopify.com")
    assert response.status_code == 503 and "CATALOG_SHOPIFY_API_KEY" in response.get_json()["error"]["message"]


def test_a_reinstall_clears_needs_reauth(client, shopify, app, app_config) -> None:
    """A shop marked needs_reauth (its refresh was refused) is whole again once the merchant installs again."""
    from catalog_service.shop_tokens import needs_reauth

    for _ in range(2):
        state = install(client, shopify.shop_domain)["state"][0]
        query = callback_query(shopify, state, shopify.shop_domain)
        assert client.get(f"/shopify/callback?{signed(query, app_config['shopify_api_secret'])}").status_code == 200
        db = app.extensions["catalog_db"]
        with db.transaction() as session:
            shop = session.scalar(select(Shop))
            assert not needs_reauth(shop)
            shop.credentials = json.dumps({**json.loads(shop.credentials), "needs_reauth": True})
        with db.transaction() as session:
            assert needs_reauth(session.scalar(select(Shop)))
        db.remove()
