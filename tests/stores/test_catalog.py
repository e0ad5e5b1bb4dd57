"""The listing's shared types: filters that refuse nonsense, survive a round trip, and say what each shop is asked."""

import datetime as dt

import pytest

from catalog_service.stores.catalog import CatalogFilters, ListingExpired, ListingFailed, woocommerce_status
from catalog_service.stores.shopify_bulk import bulk_query, search_query

SINCE = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def test_defaults_list_active_products_of_any_kind():
    filters = CatalogFilters()
    assert filters.status == "active"
    assert (filters.product_type, filters.vendor, filters.tag, filters.collection) == ("", "", "", "")
    assert filters.created_since is None and filters.without_our_images is False


@pytest.mark.parametrize("bad", [
    {"status": "published"},
    {"created_since": dt.datetime(2026, 3, 1)},  # naive: which instant is meant?
    {"tag": "x" * 256},
    {"vendor": "a\x00b"},
])
def test_nonsense_filters_are_refused(bad):
    with pytest.raises(ValueError):
        CatalogFilters(**bad)


def test_filters_survive_a_round_trip_through_json_and_refuse_unknown_keys():
    filters = CatalogFilters(product_type=" Mugs ", tag="sale", status="any", created_since=SINCE,
                             without_our_images=True)
    assert filters.product_type == "Mugs"  # trimmed
    assert CatalogFilters.from_dict(filters.to_dict()) == filters
    with pytest.raises(ValueError, match="unknown filter"):
        CatalogFilters.from_dict({"tags": "sale"})


def test_the_tag_check_ignores_case():
    assert CatalogFilters(tag="Sale").has_tag(("new", "sale"))
    assert not CatalogFilters(tag="Sale").has_tag(("new",))
    assert CatalogFilters().has_tag(())


def test_statuses_in_woocommerce_terms():
    assert [woocommerce_status(s) for s in ("active", "draft", "archived", "any")] == [
        "publish", "draft", "private", "any"]


def test_shopify_search_text_quotes_values_and_dates_in_utc():
    filters = CatalogFilters(product_type='12" plates', vendor="Acme", tag="sale", created_since=SINCE)
    assert search_query(filters) == ('product_type:"12\\" plates" vendor:"Acme" tag:"sale" status:active '
                                     'created_at:>="2026-03-01T07:30:00Z"')
    assert search_query(CatalogFilters(status="any")) == ""


def test_with_a_collection_the_tag_is_left_to_the_reader():
    """collection_id does not combine with tag in Shopify's search, so the tag is checked as lines are read."""
    text = search_query(CatalogFilters(tag="sale", collection="summer"), collection_id="42")
    assert text == "collection_id:42 status:active"


def test_the_bulk_document_embeds_the_search_as_a_graphql_string():
    document = bulk_query('vendor:"Acme"')
    assert 'products(query: "vendor:\\"Acme\\"")' in document
    assert "__parentId" not in document and "media" in document
    assert "products {" in bulk_query("")


def test_listing_errors_say_whether_a_new_listing_can_help():
    expired = ListingExpired("gone")
    assert expired.start_again and not expired.retryable and expired.code == "EXPIRED"
    failed = ListingFailed("denied", code="ACCESS_DENIED")
    assert not failed.start_again and failed.partial_url is None
