"""A shop's existing catalog through the backfill, end to end: the API starts it, the collect job reads the shop
(a Shopify bulk operation, WooCommerce's paged listing), a worker renders each product once and pushes its images."""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from catalog_service.models import Asset, AssetKind, Backfill, Product, PushStatus, Render, Shop
from catalog_service.schemas import settings_with_defaults
from catalog_service.shops import create_shop
from catalog_service.stores.catalog import CatalogFilters
from catalog_service.stores.shopify import ShopifyStore
from catalog_service.stores.shopify_bulk import ShopifyBulkCatalog
from catalog_service.stores.woocommerce import PAGE_SIZE
from fakes.openai_server import FakeOpenAI
from fakes.shopify_server import FakeShopify
from fakes.woocommerce_server import UPLOADS, FakeWooCommerce
from fakes.woocommerce_server import _Handler as WooHandler
from jobs.backfill import feed
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NO_SCENES = {"scene_presets": [], "cutout": {"enabled": True, "white": True}}
"""Cutout and white variant only: two images a product, no scene."""


def small_photo() -> bytes:
    """A product photo small enough that a cutout takes little time (the model works at 320 px anyway)."""
    image = Image.open(FIXTURES / "rocket.jpg")
    image.thumbnail((400, 400))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


PHOTO = small_photo()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def shopify() -> Iterator[FakeShopify]:
    with FakeShopify(ready_after_polls=0) as fake:
        yield fake


def shopify_shop(app, fake: FakeShopify, **settings: Any) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """A Shopify shop on the fake with these settings over the defaults; (shop id, API key)."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            shop, key, _secret = create_shop(session, platform="shopify", domain=fake.shop_domain,
                                             access_token=fake.access_token, api_base_url=fake.url)
            shop.settings = settings_with_defaults({**shop.settings, **settings})
            return shop.id, key


def shopify_catalog(fake: FakeShopify, image_server, count: int, *, first_number: int = 10_001,  # type: ignore[no-untyped-def]
                    **fields: Any) -> list[int]:
    """`count` products in the fake shop, each with one photo its CDN (the image server) really serves."""
    gids = fake.add_catalog(count, images=1, first_number=first_number, **fields)
    for gid in gids:
        for media in fake.products[gid].media_list:
            media.cdn_url = image_server.serve(f"/cdn/{media.filename}", PHOTO, "image/jpeg")
    return [int(gid.rsplit("/", 1)[-1]) for gid in gids]


def settings_of(app, shop_id: int, **changes: Any) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            shop = session.get(Shop, shop_id)
            shop.settings = settings_with_defaults({**shop.settings, **changes})


def renders_per_product(app, shop_id: int) -> Counter[str]:  # type: ignore[no-untyped-def]
    """How many backfill renders each product (by its shop's id) got."""
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        rows = session.execute(select(Product.external_id).join(Render, Render.product_id == Product.id)
                               .where(Render.shop_id == shop_id, Render.trigger == "backfill")).scalars()
        return Counter(rows)


@pytest.mark.slow  # real cutouts on a worker
def test_a_shopify_catalog_is_read_by_a_bulk_operation_and_every_product_rendered_and_pushed_once(
        app, client, redis, shopify, image_server, model_session) -> None:
    shop_id, key = shopify_shop(app, shopify, **NO_SCENES)
    numbers = shopify_catalog(shopify, image_server, 5)
    shopify_catalog(shopify, image_server, 2, first_number=20_001, status="DRAFT")  # active only by default

    created = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key), json={"dry_run": False})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["status"] == "collecting"  # the catalog is read by a job
    run_jobs(app, redis)

    shown = client.get(f"/api/v1/shops/{shop_id}/backfills/{created.get_json()['id']}", headers=bearer(key)).get_json()
    assert (shown["status"], shown["total"], shown["done"], shown["failed"], shown["remaining"]) == ("done", 5, 5, 0, 0)
    assert shown["estimate"]["products"] == 5 and shown["estimate"]["images"] == 5
    assert shopify.operations().count("bulkOperationRunQuery") == 1
    assert "status:active" in shopify.bulk_queries[0]
    assert renders_per_product(app, shop_id) == {str(number): 1 for number in numbers}
    for number in numbers:  # the merchant's photo, then our cutout and white variant, once
        assert len(shopify.product_media(number)) == 3, number
    assert shopify.errors == []


def test_the_filters_reach_the_bulk_query_and_only_matching_products_are_taken(
        app, client, redis, shopify, image_server) -> None:
    """A dry run: the filters go into Shopify's search; the estimate counts what matched, nothing is rendered."""
    shop_id, key = shopify_shop(app, shopify, **NO_SCENES)
    shopify_catalog(shopify, image_server, 3, product_type="Mug", vendor="Acme", tags=["sale"],
                    created_at="2026-06-01T00:00:00Z")
    shopify_catalog(shopify, image_server, 2, first_number=20_001, product_type="Mug", vendor="Other",
                    tags=["sale"], created_at="2026-06-01T00:00:00Z")
    shopify_catalog(shopify, image_server, 2, first_number=30_001, product_type="Mug", vendor="Acme",
                    tags=["sale"], created_at="2025-01-01T00:00:00Z")
    filters = {"product_type": "Mug", "vendor": "Acme", "tag": "sale", "created_since": "2026-05-01T00:00:00+00:00"}

    created = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key),
                          json={"dry_run": True, "filters": filters})
    run_jobs(app, redis)

    query = shopify.bulk_queries[0]
    for term in ('product_type:\\"Mug\\"', 'vendor:\\"Acme\\"', 'tag:\\"sale\\"', "status:active",
                 'created_at:>=\\"2026-05-01T00:00:00Z\\"'):
        assert term in query, query
    shown = client.get(f"/api/v1/shops/{shop_id}/backfills/{created.get_json()['id']}", headers=bearer(key)).get_json()
    assert (shown["status"], shown["total"], shown["estimate"]["products"]) == ("ready", 3, 3)
    assert renders_per_product(app, shop_id) == {}  # a dry run spends nothing


def test_a_failed_bulk_operation_ends_the_backfill_failed_with_shopifys_reason(
        app, client, redis, shopify, image_server) -> None:
    shop_id, key = shopify_shop(app, shopify, **NO_SCENES)
    shopify_catalog(shopify, image_server, 2)
    shopify.fail_next_bulk("ACCESS_DENIED")

    created = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key), json={"dry_run": False})
    run_jobs(app, redis)

    shown = client.get(f"/api/v1/shops/{shop_id}/backfills/{created.get_json()['id']}", headers=bearer(key)).get_json()
    assert shown["status"] == "failed"
    assert "denied the catalog listing" in shown["error"] and "read access to products" in shown["error"]
    assert renders_per_product(app, shop_id) == {}
    # A failed backfill does not block the next one.
    again = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key), json={"dry_run": True})
    assert again.status_code == 201


def test_an_expired_bulk_operation_ends_the_backfill_failed_saying_to_start_again(
        app, client, redis, shopify, image_server) -> None:
    """A collect job that comes back to its operation after Shopify dropped the result (days later)."""
    shop_id, key = shopify_shop(app, shopify, **NO_SCENES)
    shopify_catalog(shopify, image_server, 2)
    store = ShopifyStore(shop_domain=shopify.shop_domain, access_token=shopify.access_token,
                         api_base_url=shopify.url, sleep=lambda _s: None)
    operation_id = ShopifyBulkCatalog(store).start(CatalogFilters())
    shopify.expire_bulk(operation_id)
    created = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key), json={"dry_run": False})
    backfill_id = created.get_json()["id"]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Backfill, backfill_id).source_state = {"operation_id": operation_id}

    run_jobs(app, redis)

    shown = client.get(f"/api/v1/shops/{shop_id}/backfills/{backfill_id}", headers=bearer(key)).get_json()
    assert shown["status"] == "failed"
    assert "expired" in shown["error"] and "start the listing again" in shown["error"]
    assert shopify.operations().count("bulkOperationRunQuery") == 1  # ours above; the job started none


class ServingWooCommerce(FakeWooCommerce):
    """The fake WooCommerce, also serving its media files at their `src` (as a WordPress site does), so a
    worker can fetch the product photos the listing names."""

    def __init__(self) -> None:
        super().__init__()

        class Handler(WooHandler):
            def do_GET(self) -> None:  # noqa: N802
                fake: FakeWooCommerce = self.server.fake  # type: ignore[attr-defined]
                path = self.path.split("?", 1)[0]
                if not path.startswith(UPLOADS):
                    return self._serve()
                media = next((m for m in fake.media.values() if UPLOADS + m.file_name == path), None)
                data = media.data if media is not None and media.data else b""
                self.send_response(200 if data else 404)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True
                return None

        self.handler = Handler


@pytest.mark.slow  # real cutouts on a worker
def test_a_woocommerce_catalog_is_read_page_by_page(app, client, redis, image_server, model_session) -> None:
    """More products than a page: both pages read; the type filter (checked on our side) keeps two, rendered and
    pushed once each."""
    with ServingWooCommerce() as fake:
        mugs = fake.add_term("categories", "Mugs")
        fake.add_catalog(PAGE_SIZE + 1, images=1)
        wanted = fake.add_catalog(2, images=1, category_ids=[mugs])
        for media in fake.media.values():
            media.data = PHOTO
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                shop, key, _secret = create_shop(
                    session, platform="woocommerce", domain="shop.example.com", api_base_url=fake.url,
                    credentials={"consumer_key": fake.consumer_key, "consumer_secret": fake.consumer_secret,
                                 "wp_user": fake.wp_user, "wp_app_password": fake.wp_app_password})
                shop.settings = settings_with_defaults({**shop.settings, **NO_SCENES})
                shop_id = shop.id

        created = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key),
                              json={"dry_run": False, "filters": {"product_type": "Mugs"}})
        run_jobs(app, redis)

        shown = client.get(f"/api/v1/shops/{shop_id}/backfills/{created.get_json()['id']}",
                           headers=bearer(key)).get_json()
        listed = fake.requests_to("GET", "/wp-json/wc/v3/products")
        assert sorted(r.query.get("page") for r in listed if r.path == "/wp-json/wc/v3/products") == ["1", "2"]
        assert (shown["status"], shown["total"], shown["done"]) == ("done", 2, 2)
        assert renders_per_product(app, shop_id) == {str(product): 1 for product in wanted}
        for product in wanted:
            assert len(fake.images_of(product)) == 3  # the merchant's photo, our cutout and white variant
        assert fake.errors == []


@pytest.fixture
def fake_openai(monkeypatch) -> Iterator[FakeOpenAI]:  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
        yield fake


def scene_products(app, shop_id: int) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Scenes made per product (by its shop's id)."""
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        rows = session.execute(
            select(Product.external_id).join(Render, Render.product_id == Product.id)
            .join(Asset, Asset.render_id == Render.id)
            .where(Render.shop_id == shop_id, Asset.kind == AssetKind.SCENE)).scalars()
        return Counter(rows)


@pytest.mark.slow  # real cutouts on a worker
def test_the_monthly_budget_pauses_the_backfill_and_raising_it_resumes(
        app, client, redis, shopify, image_server, model_session, fake_openai) -> None:
    """GPT Image scenes: the budget covers some products; the backfill pauses saying so, every product it did has its
    scene, and after the merchant raises the budget the next feed finishes it."""
    # Direct calls, so the scenes come within the run (tests/jobs/test_batches.py covers the Batch API's budget).
    app.extensions["catalog"].config.openai_batch = False
    shop_id, key = shopify_shop(app, shopify, provider="openai", scene_presets=["kitchen-counter"],
                                cutout={"enabled": True, "white": False})
    numbers = shopify_catalog(shopify, image_server, 5)
    url = f"/api/v1/shops/{shop_id}/backfills"
    backfill_id = client.post(url, headers=bearer(key), json={"dry_run": True}).get_json()["id"]
    run_jobs(app, redis)
    per_product = client.get(f"{url}/{backfill_id}", headers=bearer(key)).get_json()["estimate"]["usd_per_product"]
    assert per_product > 0
    settings_of(app, shop_id, monthly_budget_usd=round(1.5 * per_product, 6))

    started = client.post(f"{url}/{backfill_id}/start", headers=bearer(key)).get_json()
    assert started["queued"] == 1  # one product fits in the budget: the feeder queues no more than fit
    run_jobs(app, redis)

    paused = client.get(f"{url}/{backfill_id}", headers=bearer(key)).get_json()
    assert paused["status"] == "paused", paused
    assert "budget" in paused["pause_reason"]
    assert (paused["done"], paused["remaining"]) == (1, 4)
    assert set(scene_products(app, shop_id).values()) == {1}  # no product was done without its scene
    assert len(scene_products(app, shop_id)) == paused["done"]

    settings_of(app, shop_id, monthly_budget_usd=100.0)
    feed(backfill_id, app.extensions["catalog"])  # the sweeper's turn
    run_jobs(app, redis)

    shown = client.get(f"{url}/{backfill_id}", headers=bearer(key)).get_json()
    assert (shown["status"], shown["done"], shown["pause_reason"]) == ("done", 5, None)
    assert scene_products(app, shop_id) == {str(number): 1 for number in numbers}
    assert math.isclose(shown["cost_usd"], sum(_scene_costs(app, shop_id)), abs_tol=1e-4)


def _scene_costs(app, shop_id: int) -> list[float]:  # type: ignore[no-untyped-def]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        return list(session.scalars(select(Asset.cost_usd).where(Asset.shop_id == shop_id)))


@pytest.mark.slow  # real cutouts on a worker
def test_only_products_without_our_images_skips_those_we_already_did(
        app, client, redis, shopify, image_server, model_session) -> None:
    """After a first backfill, new settings would redo everything; the filter keeps it to the products that
    carry none of our images yet (two new ones)."""
    shop_id, key = shopify_shop(app, shopify, **NO_SCENES)
    first = shopify_catalog(shopify, image_server, 3)
    url = f"/api/v1/shops/{shop_id}/backfills"
    client.post(url, headers=bearer(key), json={"dry_run": False})
    run_jobs(app, redis)
    newer = shopify_catalog(shopify, image_server, 2, first_number=20_001)
    settings_of(app, shop_id, brand_color="#aa3300")  # a different fingerprint for every product

    second = client.post(url, headers=bearer(key), json={"dry_run": False, "filters": {"without_our_images": True}})
    run_jobs(app, redis)

    shown = client.get(f"{url}/{second.get_json()['id']}", headers=bearer(key)).get_json()
    assert (shown["status"], shown["total"], shown["skipped"], shown["done"]) == ("done", 5, 3, 2)
    assert renders_per_product(app, shop_id) == {**{str(n): 1 for n in first}, **{str(n): 1 for n in newer}}
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert set(session.scalars(select(Asset.push_status).where(Asset.shop_id == shop_id))) == {PushStatus.PUSHED}


@pytest.mark.slow  # real cutouts on a worker
def test_renders_queued_before_a_cancel_are_counted_when_they_finish(
        app, client, shop, redis, image_server, model_session) -> None:
    """Cancel drops what was not queued; the renders already queued finish and the backfill counts them, so it
    shows nothing left to do and what they cost."""
    shop_id, key, _secret = shop
    settings_of(app, shop_id, **NO_SCENES)
    src = image_server.serve("/photo.jpg", PHOTO, "image/jpeg")
    products = [{"id": str(n), "title": f"Mug {n}", "images": [{"id": str(n), "src": src}]} for n in range(5)]
    url = f"/api/v1/shops/{shop_id}/backfills"
    backfill_id = client.post(url, headers=bearer(key), json={"dry_run": False, "products": products}).get_json()["id"]

    cancelled = client.post(f"{url}/{backfill_id}/cancel", headers=bearer(key)).get_json()
    assert (cancelled["status"], cancelled["queued"], cancelled["skipped"]) == ("cancelled", 2, 3)
    run_jobs(app, redis)

    shown = client.get(f"{url}/{backfill_id}", headers=bearer(key)).get_json()
    assert (shown["status"], shown["done"], shown["queued"], shown["remaining"]) == ("cancelled", 2, 0, 0)
    assert sum(renders_per_product(app, shop_id).values()) == 2
