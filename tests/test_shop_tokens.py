"""Shopify's expiring tokens against the fake Shopify: one refresh per shop at a time, the refresh token's expiry."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from catalog_service.cli import main
from catalog_service.connectors import connector_for
from catalog_service.models import Shop
from catalog_service.shop_tokens import needs_reauth
from catalog_service.shops import create_shop
from catalog_service.stores.base import AuthRevoked, PushAsset, PushResult, asset_filename
from fakes.shopify_server import FakeShopify
from merchant import sign_in

pytestmark = pytest.mark.both_databases  # database behaviour: on PostgreSQL too

WORKERS = 8


@pytest.fixture
def fake(app, app_config) -> Iterator[FakeShopify]:  # type: ignore[no-untyped-def]
    with FakeShopify(ready_after_polls=0) as shopify:
        shopify.client_secret = app_config["shopify_api_secret"]
        app.extensions["catalog"].config.shopify_api_key = shopify.client_id
        yield shopify


def expiring_shop(app, fake: FakeShopify, *, expires_in: float, refresh_expires_in: float = 80 * 86400) -> int:  # type: ignore[no-untyped-def]
    """A Shopify shop holding the fake's current token pair, the access token expiring in `expires_in` seconds."""
    fake.refresh_tokens.add("shprt_first")
    now = time.time()
    with app.extensions["catalog_db"].transaction() as session:
        shop, _key, _secret = create_shop(session, platform="shopify", domain=fake.shop_domain,
                                          access_token=fake.access_token, api_base_url=fake.url)
        shop.credentials = json.dumps({"refresh_token": "shprt_first", "expires_at": now + expires_in,
                                       "refresh_expires_at": now + refresh_expires_in})
        return shop.id


def asset(n: int) -> PushAsset:
    key = f"{n:02d}" + "ab12cd34ef56" * 5
    return PushAsset(key=key, kind="cutout", filename=asset_filename(str(100 + n), "cutout", "", key, "png"),
                     content_type="image/png", data=b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + f"#{n}".encode())


def stored(app, shop_id: int) -> tuple[str | None, dict[str, object]]:  # type: ignore[no-untyped-def]
    db = app.extensions["catalog_db"]
    with db.transaction() as session:
        shop = session.get(Shop, shop_id)
        pair = shop.access_token, json.loads(shop.credentials)
    db.remove()
    return pair


def test_eight_workers_needing_a_token_at_once_refresh_it_once_and_all_push(app, fake) -> None:
    """Eight threads build the connector as the push job does, the token a minute from expiry: one refresh, 8 pushes."""
    for n in range(WORKERS):
        fake.add_product(100 + n, "Mug")
    shop_id = expiring_shop(app, fake, expires_in=60)
    db, config = app.extensions["catalog_db"], app.extensions["catalog"].config
    start = threading.Barrier(WORKERS)

    def push(n: int) -> PushResult:
        start.wait()
        try:
            with db.transaction() as session:  # as jobs/push.py does: the connector is built in its transaction
                shop = session.get(Shop, shop_id)
                connector = connector_for(shop, config, db)
            db.remove()
            try:
                return connector.push_asset(str(100 + n), asset(n))
            finally:
                connector.close()  # type: ignore[attr-defined]
        finally:
            db.remove()

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(push, range(WORKERS)))

    assert len(fake.token_refreshes) == 1
    assert all(result.created for result in results)
    assert all(len(fake.product_media(100 + n)) == 1 for n in range(WORKERS))
    token, pair = stored(app, shop_id)
    assert fake.valid_tokens == {token} and fake.refresh_tokens == {pair["refresh_token"]}
    assert fake.errors == []


def test_eight_workers_whose_token_shopify_refuses_refresh_it_once(app, fake) -> None:
    """The stored token is revoked (401) though not near expiry: the first 401 refreshes, the other seven reuse it."""
    for n in range(WORKERS):
        fake.add_product(100 + n, "Mug")
    shop_id = expiring_shop(app, fake, expires_in=3000)
    fake.valid_tokens = {"shpat_issued_elsewhere"}
    db, config = app.extensions["catalog_db"], app.extensions["catalog"].config
    with db.transaction() as session:
        connectors = [connector_for(session.get(Shop, shop_id), config, db) for _ in range(WORKERS)]
    db.remove()
    start = threading.Barrier(WORKERS)

    def push(n: int) -> PushResult:
        start.wait()
        try:
            return connectors[n].push_asset(str(100 + n), asset(n))
        finally:
            connectors[n].close()  # type: ignore[attr-defined]
            db.remove()

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(push, range(WORKERS)))

    assert len(fake.token_refreshes) == 1
    assert all(result.created for result in results)
    assert stored(app, shop_id)[0] in fake.valid_tokens


def test_a_refresh_stores_the_refresh_tokens_own_expiry(app, fake) -> None:
    """Shopify's refresh_token_expires_in is kept beside expires_at, in the encrypted credentials."""
    fake.refresh_token_lifetime_s = 60 * 86400
    shop_id = expiring_shop(app, fake, expires_in=30)
    db, config = app.extensions["catalog_db"], app.extensions["catalog"].config
    before = time.time()
    with db.transaction() as session:
        connector_for(session.get(Shop, shop_id), config, db).close()  # type: ignore[attr-defined]
    db.remove()
    token, pair = stored(app, shop_id)
    assert token in fake.valid_tokens and pair["refresh_token"] in fake.refresh_tokens
    assert before + 3600 <= pair["expires_at"] <= time.time() + 3600  # type: ignore[operator]
    assert before + 60 * 86400 <= pair["refresh_expires_at"] <= time.time() + 60 * 86400  # type: ignore[operator]
    assert "needs_reauth" not in pair


def test_a_refused_refresh_marks_the_shop_needs_reauth(app, fake) -> None:
    """Shopify refuses the refresh token: the connector cannot be built and the mark is saved."""
    shop_id = expiring_shop(app, fake, expires_in=30)
    fake.refresh_tokens.clear()  # revoked at Shopify (the merchant uninstalled, or it lapsed)
    db, config = app.extensions["catalog_db"], app.extensions["catalog"].config
    with db.transaction() as session:  # as the push job does: the error is recorded, the transaction commits
        shop = session.get(Shop, shop_id)
        with pytest.raises(AuthRevoked, match="open the app again"):
            connector_for(shop, config, db)
    db.remove()
    assert stored(app, shop_id)[1]["needs_reauth"] is True
    with db.transaction() as session:
        assert needs_reauth(session.get(Shop, shop_id))
    db.remove()


def test_a_shop_whose_refresh_was_refused_waits_without_asking_shopify_again(app, fake) -> None:
    """Once Shopify refused the refresh, pushes fail at once with what to do, and no request reaches Shopify."""
    shop_id = expiring_shop(app, fake, expires_in=30)
    fake.refresh_tokens.clear()
    db, config = app.extensions["catalog_db"], app.extensions["catalog"].config
    with db.transaction() as session:
        with pytest.raises(AuthRevoked):
            connector_for(session.get(Shop, shop_id), config, db)
    db.remove()
    asked = len(fake.requests)
    for _ in range(3):  # the push's retries and the merchant's "Send again" before re-authorising
        with db.transaction() as session:
            with pytest.raises(AuthRevoked, match="open the app"):
                connector_for(session.get(Shop, shop_id), config, db)
        db.remove()
    assert len(fake.requests) == asked


@pytest.mark.parametrize(("lapses_in_days", "marked"), [(3, True), (30, False)])
def test_a_refresh_token_lapsing_within_a_week_shows_on_the_page_and_in_shops_list(
        app, client, fake, worker_env, monkeypatch, lapses_in_days: int, marked: bool) -> None:
    """The merchant sees a banner asking them to open the app; `shops list` marks the shop needs-reauth."""
    shop_id = expiring_shop(app, fake, expires_in=3000, refresh_expires_in=lapses_in_days * 86400)
    sign_in(app, client, shop_id)
    page = client.get(f"/shops/{shop_id}/settings").get_data(as_text=True)
    assert ('id="reauth-banner"' in page) is marked
    assert ("Open the app again" in page) is marked

    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["shops", "list"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if fake.shop_domain in line]
    assert line.endswith("needs-reauth") is marked
