"""Listing a Shopify catalog through a bulk operation, against the fake Shopify on loopback.

The fake validates the bulk query against its schema, runs it over its products, and serves the JSONL
the way Shopify writes it: one line per object, media lines carrying `__parentId`.
"""

import datetime as dt
import json
import tracemalloc

import pytest

from catalog_service.stores.base import RateLimited, StoreError
from catalog_service.stores.catalog import CatalogFilters, ListingExpired, ListingFailed, ListingTooLarge
from catalog_service.stores.shopify import ShopifyStore
from catalog_service.stores.shopify_bulk import ShopifyBulkCatalog
from fakes.shopify_server import FakeShopify


@pytest.fixture
def shop():
    with FakeShopify() as fake:
        yield fake
        assert fake.errors == []


@pytest.fixture
def catalog(shop):
    store = ShopifyStore(shop_domain=shop.shop_domain, access_token=shop.access_token, api_base_url=shop.url,
                         sleep=lambda s: None, timeout_s=5.0)
    with store:
        yield ShopifyBulkCatalog(store)


def run(catalog, filters=None, polls=10):
    """Start, then poll as the scheduled job would, until the operation completes; returns its last status."""
    operation_id = catalog.start(filters or CatalogFilters())
    seen = []
    for _ in range(polls):
        state = catalog.status(operation_id)
        seen.append(state.status)
        if state.done:
            return state, seen
    raise AssertionError(f"never completed: {seen}")


def test_two_thousand_products_come_out_with_their_images_in_bounded_memory(shop, catalog):
    """The whole catalog is read line by line: every product once, with its images in order, never all held."""
    shop.add_catalog(2000, images=3, description_html="<p>" + "A sturdy ceramic mug. " * 40 + "</p>",
                     vendor="Acme", tags=["kitchen", "sale"])
    state, seen = run(catalog)
    assert seen[0] == "RUNNING" and seen[-1] == "COMPLETED"
    assert state.root_object_count == 2000 and state.object_count == 8000
    assert state.file_size > 3_000_000

    tracemalloc.start()
    try:
        count = 0
        first = last = None
        for event in catalog.read(state.url):
            count += 1
            first = first or event
            last = event
            assert len(event.images) == 3
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2000
    assert peak < state.file_size / 4, f"reading held {peak} bytes of a {state.file_size}-byte file"

    # Normalised as the products/create webhook would be: the numbers, the REST image ids, URLs in order.
    media = shop.product_media(10_001)
    assert first.action == "create" and first.product_id == "10001" and last.product_id == "12000"
    assert first.vendor == "Acme" and first.tags == ("kitchen", "sale") and first.title == "Product 10001"
    assert [image.src for image in first.images] == [m.cdn_url for m in media]
    assert [image.external_id for image in first.images] == [m.image_id.rsplit("/", 1)[1] for m in media]
    assert first.images[0].alt == "Product 10001 view 0"
    assert first.updated_at == dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    # The download never carried the shop's token (the fake records a violation in `errors`).


def test_the_filters_reach_the_bulk_query_and_select_the_products(shop, catalog):
    shop.add_product(1, "Mug", product_type="Mugs", vendor="Acme", tags=["sale"], created_at="2026-03-02T00:00:00Z")
    shop.add_product(2, "Old mug", product_type="Mugs", vendor="Acme", tags=["sale"],
                     created_at="2025-12-01T00:00:00Z")
    shop.add_product(3, "Draft mug", product_type="Mugs", vendor="Acme", tags=["sale"], status="DRAFT",
                     created_at="2026-03-02T00:00:00Z")
    shop.add_product(4, "Plate", product_type="Plates", vendor="Acme", tags=["sale"],
                     created_at="2026-03-02T00:00:00Z")
    shop.add_product(5, "Mug, no tag", product_type="Mugs", vendor="Acme", created_at="2026-03-02T00:00:00Z")
    for number in range(1, 6):
        shop.add_merchant_media(number, filename=f"p{number}.jpg")
    filters = CatalogFilters(product_type="Mugs", vendor="Acme", tag="sale",
                             created_since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    state, _ = run(catalog, filters)

    assert [event.product_id for event in catalog.read(state.url, filters)] == ["1"]
    query = shop.bulk_queries[-1]
    for term in ('product_type:\\"Mugs\\"', 'vendor:\\"Acme\\"', 'tag:\\"sale\\"', "status:active",
                 'created_at:>=\\"2026-01-01T00:00:00Z\\"'):
        assert term in query


def test_a_collection_by_handle_is_looked_up_and_the_tag_checked_while_reading(shop, catalog):
    for number, tags in ((1, ["sale"]), (2, []), (3, ["sale"])):
        shop.add_product(number, f"P{number}", tags=tags)
        shop.add_merchant_media(number, filename=f"p{number}.jpg")
    collection = shop.add_collection("summer", [1, 2])
    filters = CatalogFilters(collection="summer", tag="sale")
    state, _ = run(catalog, filters)

    assert f"collection_id:{collection.rsplit('/', 1)[1]}" in shop.bulk_queries[-1]
    assert [event.product_id for event in catalog.read(state.url, filters)] == ["1"]
    with pytest.raises(ListingFailed, match="no collection 'winter'") as caught:
        catalog.start(CatalogFilters(collection="winter"))
    assert caught.value.code == "UNKNOWN_COLLECTION"


def test_an_empty_result_has_no_url_and_reads_as_nothing(shop, catalog):
    state, _ = run(catalog, CatalogFilters(vendor="Nobody"))
    assert state.url is None and state.root_object_count == 0
    assert list(catalog.read(state.url)) == []


def test_a_failed_operation_is_a_typed_error_saying_what_to_do(shop, catalog):
    shop.add_catalog(4)
    shop.fail_next_bulk("TIMEOUT")
    operation_id = catalog.start(CatalogFilters())
    assert catalog.status(operation_id).running
    with pytest.raises(ListingFailed, match="narrow the filters") as caught:
        catalog.status(operation_id)
    assert caught.value.code == "TIMEOUT" and caught.value.start_again and caught.value.partial_url

    shop.fail_next_bulk("ACCESS_DENIED")
    operation_id = catalog.start(CatalogFilters())
    catalog.status(operation_id)
    with pytest.raises(ListingFailed, match="reinstall") as caught:
        catalog.status(operation_id)
    assert caught.value.code == "ACCESS_DENIED" and not caught.value.start_again


def test_an_expired_operation_or_result_asks_for_a_new_listing(shop, catalog):
    shop.add_catalog(3)
    state, _ = run(catalog)
    shop.expire_result_url(state.operation_id)  # the signed URL ran out: storage answers 403
    with pytest.raises(ListingExpired, match="start the listing again"):
        list(catalog.read(state.url))
    shop.expire_bulk(state.operation_id)
    with pytest.raises(ListingExpired) as caught:
        catalog.status(state.operation_id)
    assert caught.value.start_again
    with pytest.raises(ListingExpired, match="no longer knows"):
        catalog.status("gid://shopify/BulkOperation/1")


def test_user_errors_on_the_mutation_are_typed(shop, catalog):
    """Past Shopify's limit of bulk queries at once for a shop, ours is asked to wait (retryable)."""
    for _ in range(5):
        catalog.start(CatalogFilters())
    with pytest.raises(RateLimited, match="starts when one ends") as caught:
        catalog.start(CatalogFilters())
    assert caught.value.retryable and caught.value.retry_after_s > 0


def test_a_read_resumes_after_a_product_and_stops_at_the_byte_cap(shop, catalog):
    shop.add_catalog(5)
    state, _ = run(catalog)
    assert [e.product_id for e in catalog.read(state.url, after_product_id="10003")] == ["10004", "10005"]
    small = ShopifyBulkCatalog(catalog.store, max_bytes=1000)
    with pytest.raises(ListingTooLarge, match="narrow the filters"):
        list(small.read(state.url))


def test_ungrouped_lines_are_refused_rather_than_joined_wrong(shop, catalog):
    """Our mutation asks for grouped output; a result whose children are not below their parent cannot stream."""
    shop.add_catalog(2)
    operation_id = catalog.start(CatalogFilters())
    shop.bulk_operations[operation_id].group_objects = False
    state = catalog.status(operation_id)
    while not state.done:
        state = catalog.status(operation_id)
    assert json.loads(shop.bulk_results[operation_id.rsplit("/", 1)[1]].splitlines()[1]).get("__parentId") is None
    with pytest.raises(ListingFailed) as caught:
        list(catalog.read(state.url))
    assert caught.value.code == "UNGROUPED"


def test_the_mutation_asks_for_grouped_output(shop, catalog):
    catalog.start(CatalogFilters())
    request = next(r for r in shop.graphql_requests if "bulkOperationRunQuery" in r.query)
    assert "groupObjects: true" in request.query
    assert shop.bulk_operations[next(iter(shop.bulk_operations))].group_objects is True


def test_a_result_address_that_is_not_http_is_refused(catalog):
    with pytest.raises(StoreError, match="not http"):
        list(catalog.read("file:///etc/passwd"))
