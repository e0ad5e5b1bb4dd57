"""Listing a WooCommerce catalog page by page, against the fake WooCommerce REST API on loopback."""

import datetime as dt

import pytest
import requests

from catalog_service.stores.base import NotSupported, UpstreamError
from catalog_service.stores.catalog import CatalogFilters, ListingFailed
from catalog_service.stores.woocommerce import WooCommerceStore
from fakes.woocommerce_server import FakeWooCommerce


@pytest.fixture
def shop():
    with FakeWooCommerce() as fake:
        yield fake
        assert fake.errors == []


@pytest.fixture
def store(shop):
    with requests.Session() as session:
        yield WooCommerceStore(base_url=shop.url, consumer_key=shop.consumer_key,
                               consumer_secret=shop.consumer_secret, session=session, timeout_s=5)


def test_every_page_is_read_and_every_product_comes_out_once(shop, store):
    made = shop.add_catalog(250, images=2)
    pages = list(store.list_pages(CatalogFilters()))
    assert [(p.page, p.total_pages, p.total) for p in pages] == [(1, 3, 250), (2, 3, 250), (3, 3, 250)]
    listed = [event.product_id for event in store.list_products(CatalogFilters())]
    assert listed == [str(i) for i in made]  # by id, each once
    calls = shop.requests_to("GET", "/wp-json/wc/v3/products")
    assert {c.query["per_page"] for c in calls} == {"100"} and {c.query["orderby"] for c in calls} == {"id"}


def test_a_product_is_normalised_as_its_webhook_would_be(shop, store):
    front = shop.add_media("mug-front.jpg", alt="Front")
    side = shop.add_media("mug-side.jpg")
    cups = shop.add_term("categories", "Cups")
    sale = shop.add_term("tags", "Sale")
    product = shop.add_product("Blue mug", images=[front, side], description="<p>Blue</p>", category_ids=[cups],
                               tag_ids=[sale], date_modified_gmt="2026-02-03T04:05:06")
    (event,) = store.list_products(CatalogFilters())
    assert event.action == "create" and event.product_id == str(product)
    assert (event.title, event.description, event.product_type, event.tags) == ("Blue mug", "<p>Blue</p>", "Cups",
                                                                                 ("Sale",))
    assert [(i.external_id, i.alt) for i in event.images] == [(str(front), "Front"), (str(side), "")]
    assert event.images[0].src.endswith("/mug-front.jpg")
    assert event.updated_at == dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)


def test_status_and_creation_date_filters_apply(shop, store):
    new = shop.add_catalog(3, date_created_gmt="2026-03-02T00:00:00")
    shop.add_catalog(2, date_created_gmt="2025-12-01T00:00:00")
    shop.add_catalog(2, status="draft", date_created_gmt="2026-03-02T00:00:00")
    since = dt.datetime(2026, 3, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # 00:00 UTC
    listed = [e.product_id for e in store.list_products(CatalogFilters(created_since=since))]
    assert listed == [str(i) for i in new]
    call = shop.requests_to("GET", "/wp-json/wc/v3/products")[-1]
    assert (call.query["status"], call.query["after"], call.query["dates_are_gmt"]) == (
        "publish", "2026-03-01T00:00:00", "true")
    assert len(list(store.list_products(CatalogFilters(status="any")))) == 7
    assert len(list(store.list_products(CatalogFilters(status="draft")))) == 2


def test_tag_and_category_names_are_resolved_to_ids(shop, store):
    sale = shop.add_term("tags", "Summer Sale")
    cups = shop.add_term("categories", "Cups")
    wanted = shop.add_catalog(2, tag_ids=[sale], category_ids=[cups])
    shop.add_catalog(2, tag_ids=[sale])
    listed = [e.product_id for e in store.list_products(CatalogFilters(tag="summer-sale", collection="Cups"))]
    assert listed == [str(i) for i in wanted]
    call = shop.requests_to("GET", "/wp-json/wc/v3/products")[-1]
    assert (call.query["tag"], call.query["category"]) == (str(sale), str(cups))
    with pytest.raises(ListingFailed, match="no product tag named 'winter'"):
        list(store.list_products(CatalogFilters(tag="winter")))


def test_product_type_is_checked_and_vendor_refused(shop, store):
    mugs, plates = shop.add_term("categories", "Mugs"), shop.add_term("categories", "Plates")
    wanted = shop.add_catalog(2, category_ids=[mugs])
    shop.add_catalog(2, category_ids=[plates])
    assert [e.product_id for e in store.list_products(CatalogFilters(product_type="mugs"))] == [str(i) for i in wanted]
    with pytest.raises(NotSupported, match="no vendor"):
        list(store.list_products(CatalogFilters(vendor="Acme")))


def test_a_transient_failure_is_retried_a_few_times_then_raised(shop, store):
    shop.add_catalog(150)
    waits = []
    shop.fail_next(2, status=503, path_prefix="/wp-json/wc/v3/products", method="GET")
    assert len(list(store.list_products(CatalogFilters(), sleep=waits.append))) == 150
    assert waits == [2.0, 4.0]
    shop.fail_next(3, status=500, path_prefix="/wp-json/wc/v3/products", method="GET")
    with pytest.raises(UpstreamError):
        list(store.list_products(CatalogFilters(), sleep=waits.append))


def test_a_listing_resumes_from_a_page(shop, store):
    made = shop.add_catalog(230)
    listed = [e.product_id for e in store.list_products(CatalogFilters(), start_page=3)]
    assert listed == [str(i) for i in made[200:]]
