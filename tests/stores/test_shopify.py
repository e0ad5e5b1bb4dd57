"""ShopifyStore against a fake Shopify on loopback (GraphQL validated against the schema we use)."""

import json

import pytest
import requests

from catalog_service.stores.base import (
    AuthRevoked,
    NotFound,
    PushAsset,
    RateLimited,
    StoreError,
    UpstreamError,
    asset_filename,
)
from catalog_service.stores.shopify import (
    MEDIA_NODE_QUERY,
    PRODUCT_MEDIA_QUERY,
    PRODUCT_UPDATE_MEDIA,
    STAGED_UPLOADS_CREATE,
    ShopifyStore,
)
from fakes.shopify_server import FakeShopify

PRODUCT = 1001


@pytest.fixture
def shop():
    with FakeShopify() as fake:
        fake.add_product(PRODUCT, "Ceramic mug")
        yield fake
        assert fake.errors == []


class Sleeps(list):
    """An injected sleep that records the waits instead of sleeping."""

    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


def make_store(shop, sleeps, **overrides):
    options = {
        "shop_domain": shop.shop_domain,
        "access_token": shop.access_token,
        "api_base_url": shop.url,
        "sleep": sleeps,
        "timeout_s": 5.0,
    }
    options.update(overrides)
    return ShopifyStore(**options)


@pytest.fixture
def store(shop, sleeps):
    with make_store(shop, sleeps) as connector:
        yield connector


def make_asset(n=0, *, data=None):
    key = f"{n:02d}" + "ab12cd34ef56" * 5
    return PushAsset(
        key=key,
        kind="cutout",
        filename=asset_filename(str(PRODUCT), "cutout", "", key, "png"),
        content_type="image/png",
        data=data if data is not None else b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + f"#{n}".encode(),
        alt="Ceramic mug, cutout",
    )


def test_push_uploads_once_with_the_merchants_alt_text_only(shop, store):
    """A first push uploads the bytes and leaves exactly one new media, its alt text the words for people only."""
    asset = make_asset()
    result = store.push_asset(str(PRODUCT), asset)

    media = shop.product_media(PRODUCT)
    assert result.created is True
    assert [m.id for m in media] == [result.external_id]
    assert media[0].alt == "Ceramic mug, cutout"
    assert media[0].current_status == "READY"
    assert [u.data for u in shop.uploads] == [asset.data]
    assert shop.uploads[0].field_order[-1] == "file"
    assert result.url.startswith(shop.url + "/cdn/files/" + asset.filename)


def test_second_push_of_the_same_asset_creates_nothing(shop, store):
    """Pushing the same asset again answers created=False with the same media and uploads nothing."""
    asset = make_asset()
    first = store.push_asset(str(PRODUCT), asset)
    second = store.push_asset(str(PRODUCT), asset)

    assert second.created is False
    assert second.external_id == first.external_id
    assert len(shop.product_media(PRODUCT)) == 1
    assert len(shop.uploads) == 1
    assert shop.operations().count("stagedUploadsCreate") == 1


def test_push_after_a_crash_finds_the_earlier_media(shop, sleeps):
    """A new ShopifyStore (the job crashed before recording) finds the earlier upload on the product."""
    asset = make_asset()
    first = make_store(shop, sleeps).push_asset(str(PRODUCT), asset)
    again = make_store(shop, sleeps).push_asset(str(PRODUCT), asset)

    assert again.created is False
    assert again.external_id == first.external_id
    assert len(shop.product_media(PRODUCT)) == 1
    assert len(shop.uploads) == 1


def test_merchant_edited_alt_still_recognised_by_file_name(shop, store):
    """When the merchant rewrites the alt text, our marked file name still prevents a duplicate."""
    asset = make_asset()
    first = store.push_asset(str(PRODUCT), asset)
    shop.product_media(PRODUCT)[0].alt = "A lovely mug"

    again = store.push_asset(str(PRODUCT), asset)

    assert again.created is False and again.external_id == first.external_id
    assert len(shop.product_media(PRODUCT)) == 1


def test_different_assets_get_their_own_media(shop, store):
    """Two assets with different keys become two media."""
    one = store.push_asset(str(PRODUCT), make_asset(1))
    two = store.push_asset(str(PRODUCT), make_asset(2))

    assert one.external_id != two.external_id
    assert len(shop.product_media(PRODUCT)) == 2


def test_throttled_request_waits_then_succeeds(shop, store, sleeps):
    """A THROTTLED answer makes the store wait (computed from the cost bucket) and try again."""
    shop.throttle(1)
    result = store.push_asset(str(PRODUCT), make_asset())

    assert result.created is True
    throttle_waits = [s for s in sleeps if s not in (0.5, 1.0)]
    assert len(throttle_waits) == 1
    # requested cost minus the 10 points left, at 100 points a second
    first = shop.graphql_requests[1]
    requested = 10 + 2 * first.query.count("{")
    assert throttle_waits[0] == pytest.approx((requested - 10) / 100)


def test_http_429_is_retried_after_retry_after(shop, store, sleeps):
    """HTTP 429 is waited out for Retry-After seconds, then the request succeeds."""
    shop.http_error(429, retry_after=3)
    result = store.push_asset(str(PRODUCT), make_asset())

    assert result.created is True
    assert sleeps[0] == 3.0
    assert len(shop.product_media(PRODUCT)) == 1


def test_http_503_is_retried(shop, store, sleeps):
    """HTTP 503 is retried like a throttle."""
    shop.http_error(503)
    assert store.push_asset(str(PRODUCT), make_asset()).created is True
    assert sleeps[0] == 2.0


def test_persistent_throttle_raises_rate_limited(shop, sleeps):
    """A shop that keeps throttling gives RateLimited after max_throttle_waits waits."""
    store = make_store(shop, sleeps, max_throttle_waits=3)
    shop.throttle(100)

    with pytest.raises(RateLimited) as caught:
        store.push_asset(str(PRODUCT), make_asset())

    assert caught.value.retryable is True
    assert caught.value.retry_after_s > 0
    assert len(sleeps) == 3
    assert len(shop.graphql_requests) == 4
    assert shop.product_media(PRODUCT) == []


def test_persistent_429_raises_rate_limited(shop, sleeps):
    """A shop that keeps answering 429 gives RateLimited carrying its Retry-After."""
    store = make_store(shop, sleeps, max_throttle_waits=2)
    shop.http_error(429, n=10, retry_after=7)

    with pytest.raises(RateLimited) as caught:
        store.push_asset(str(PRODUCT), make_asset())

    assert caught.value.retry_after_s == 7.0
    assert sleeps == [7.0, 7.0]


def test_401_with_refresh_retries_with_the_new_token(shop, sleeps):
    """On 401 the store asks refresh_token() once and carries on with the new token."""
    shop.rotate_token("shpat_fresh_token_2")
    calls = []

    def refresh():
        calls.append(1)
        return "shpat_fresh_token_2"

    store = make_store(shop, sleeps, refresh_token=refresh)
    result = store.push_asset(str(PRODUCT), make_asset())

    assert result.created is True
    assert calls == [1]
    assert shop.graphql_requests[0].token == shop.access_token
    assert {r.token for r in shop.graphql_requests[1:]} == {"shpat_fresh_token_2"}


def test_401_without_refresh_raises_auth_revoked_without_the_token(shop, sleeps, caplog):
    """On 401 with no way to refresh: AuthRevoked, and the token is in neither message nor log."""
    token = "shpat_secret_do_not_leak_42"
    store = make_store(shop, sleeps, access_token=token)

    with caplog.at_level("DEBUG"):
        with pytest.raises(AuthRevoked) as caught:
            store.push_asset(str(PRODUCT), make_asset())

    assert caught.value.retryable is False
    assert token not in str(caught.value)
    assert token not in repr(store)
    assert token not in caplog.text


def test_refresh_that_fails_raises_auth_revoked(shop, sleeps):
    """A refresh_token() that returns None (refresh refused) gives AuthRevoked."""
    shop.rotate_token("shpat_other")
    store = make_store(shop, sleeps, refresh_token=lambda: None)
    with pytest.raises(AuthRevoked):
        store.existing_assets(str(PRODUCT))


def test_user_errors_raise_store_error_with_shopify_message(shop, store):
    """userErrors on productUpdate become a permanent StoreError keeping Shopify's message."""
    shop.user_errors("productUpdate", "Media limit reached for this product", field=["media"])

    with pytest.raises(StoreError) as caught:
        store.push_asset(str(PRODUCT), make_asset())

    assert "Media limit reached for this product" in str(caught.value)
    assert caught.value.retryable is False
    assert not isinstance(caught.value, NotFound)
    assert shop.product_media(PRODUCT) == []


def test_unknown_product_raises_not_found(shop, store):
    """A product the shop does not have gives NotFound before anything is uploaded."""
    with pytest.raises(NotFound):
        store.push_asset("999", make_asset())
    with pytest.raises(NotFound):
        store.existing_assets("999")
    assert shop.uploads == []


def test_product_deleted_between_check_and_update_raises_not_found(shop, store):
    """productUpdate's 'Product does not exist' userError becomes NotFound."""
    shop.user_errors("productUpdate", "Product does not exist", field=["id"])
    with pytest.raises(NotFound):
        store.push_asset(str(PRODUCT), make_asset())


def test_failed_media_raises_permanent_error_with_shopify_message(shop, store):
    """Media that Shopify could not process gives a non-retryable UpstreamError with its reason."""
    shop.fail_next_media("Image is corrupt")

    with pytest.raises(UpstreamError) as caught:
        store.push_asset(str(PRODUCT), make_asset())

    assert "Image is corrupt" in str(caught.value)
    assert caught.value.retryable is False
    # A second push finds the failed media instead of piling up more.
    with pytest.raises(UpstreamError):
        store.push_asset(str(PRODUCT), make_asset())
    assert len(shop.product_media(PRODUCT)) == 1


def test_slow_processing_gives_retryable_error_then_idempotent_success(sleeps):
    """Media still processing after the bounded polls gives a retryable error; the retry finds it READY."""
    with FakeShopify(ready_after_polls=50) as shop:
        shop.add_product(PRODUCT)
        store = make_store(shop, sleeps)
        with pytest.raises(UpstreamError) as caught:
            store.push_asset(str(PRODUCT), make_asset())
        assert caught.value.retryable is True
        assert len(sleeps) == 10

        shop.product_media(PRODUCT)[0].polls_left = 0
        result = store.push_asset(str(PRODUCT), make_asset())
        assert result.created is False
        assert len(shop.product_media(PRODUCT)) == 1
        assert shop.errors == []


def test_existing_assets_lists_ours_only(shop, store):
    """existing_assets maps our file-name markers (the key's first 8 hex digits) to media gids, never the
    merchant's media."""
    shop.add_merchant_media(PRODUCT, alt="Front view", filename="mug-front.jpg")
    one, two = make_asset(1), make_asset(2)
    first = store.push_asset(str(PRODUCT), one)
    second = store.push_asset(str(PRODUCT), two)

    assert store.existing_assets(str(PRODUCT)) == {one.key[:8]: first.external_id, two.key[:8]: second.external_id}


def legacy_alt(alt, key):
    """The alt text of a media we pushed before the machine tag was dropped: the words, then ` [cs:<key>]`."""
    return f"{alt} [cs:{key}]"


def test_media_pushed_with_the_old_alt_tag_is_still_ours(shop, store):
    """Media an earlier version tagged in its alt text (under a file name Shopify renamed) is found by a push
    (nothing uploaded again), listed by existing_assets and may be taken off."""
    asset = make_asset()
    merchant = shop.add_merchant_media(PRODUCT, alt="Front view", filename="mug-front.jpg")
    old = shop.add_merchant_media(PRODUCT, alt=legacy_alt("Ceramic mug, cutout", asset.key), filename="IMG_7731.png")

    again = store.push_asset(str(PRODUCT), asset)

    assert again.created is False and again.external_id == old
    assert shop.uploads == []
    assert store.existing_assets(str(PRODUCT)) == {asset.key[:8]: old}
    assert store.delete_asset(str(PRODUCT), old) is True
    assert [m.id for m in shop.product_media(PRODUCT)] == [merchant]


def test_an_old_tag_naming_another_asset_is_not_this_one(shop, store):
    """A media whose old alt tag names another key is not taken for this asset, even with a similar file name."""
    other, asset = make_asset(1), make_asset(2)
    shop.add_merchant_media(PRODUCT, alt=legacy_alt("mug", other.key), filename=asset.filename)

    result = store.push_asset(str(PRODUCT), asset)

    assert result.created is True
    assert len(shop.product_media(PRODUCT)) == 2


def test_delete_asset_detaches_ours_only(shop, store):
    """delete_asset detaches our media from the product and refuses the merchant's."""
    merchant = shop.add_merchant_media(PRODUCT, alt="Front view", filename="mug-front.jpg")
    ours = store.push_asset(str(PRODUCT), make_asset())

    store.delete_asset(str(PRODUCT), ours.external_id)
    assert [m.id for m in shop.product_media(PRODUCT)] == [merchant]
    assert ours.external_id in shop.files  # detached, not destroyed
    detach = [r for r in shop.graphql_requests if "fileUpdate" in r.query][0]
    assert detach.variables == {"files": [{"id": ours.external_id,
                                           "referencesToRemove": [f"gid://shopify/Product/{PRODUCT}"]}]}

    store.delete_asset(str(PRODUCT), ours.external_id)  # already gone: fine
    with pytest.raises(StoreError):
        store.delete_asset(str(PRODUCT), merchant)
    assert [m.id for m in shop.product_media(PRODUCT)] == [merchant]


def test_upstream_500_is_a_retryable_error(shop, store):
    """A 5xx other than 503 is an UpstreamError (retryable), not waited on."""
    shop.http_error(500)
    with pytest.raises(UpstreamError) as caught:
        store.push_asset(str(PRODUCT), make_asset())
    assert caught.value.retryable is True


def test_unreachable_shop_is_a_retryable_error(sleeps):
    """A connection refused is an UpstreamError."""
    with FakeShopify() as shop:
        url = shop.url
    store = ShopifyStore(shop_domain="x.myshopify.com", access_token="t", api_base_url=url, sleep=sleeps, timeout_s=2)
    with pytest.raises(UpstreamError):
        store.existing_assets("1")


def test_a_long_alt_text_is_cut_to_shopifys_limit_with_nothing_added(shop, store):
    """An alt text past Shopify's 512 characters is cut to fit, and nothing of ours is appended."""
    asset = make_asset()
    store.push_asset(str(PRODUCT), PushAsset(**{**asset.__dict__, "alt": "x" * 600}))

    assert shop.product_media(PRODUCT)[0].alt == "x" * 512


@pytest.mark.parametrize("document", [PRODUCT_MEDIA_QUERY, MEDIA_NODE_QUERY, STAGED_UPLOADS_CREATE,
                                      PRODUCT_UPDATE_MEDIA])
def test_our_documents_validate_against_the_fake_schema(shop, document):
    """Each document the store sends passes the fake's schema validation."""
    from graphql import parse, validate

    from fakes.shopify_server import SCHEMA

    assert validate(SCHEMA, parse(document)) == []


def test_misspelt_field_is_rejected_by_the_fake(shop):
    """A document with a misspelt field gets a GraphQL validation error, as Shopify would answer."""
    query = "query { product(id: \"gid://shopify/Product/1001\") { id medias(first: 5) { nodes { id } } } }"
    response = requests.post(shop.url + shop.graphql_path, json={"query": query},
                             headers={"X-Shopify-Access-Token": shop.access_token}, timeout=5)

    body = response.json()
    assert response.status_code == 200
    assert "data" not in body
    assert "Cannot query field 'medias' on type 'Product'" in json.dumps(body["errors"])


def test_fake_upload_target_wants_the_file_last(shop, store):
    """The fake's upload target refuses a form whose file does not come after the parameters."""
    target = store._staged_target(make_asset())
    params = [(p["name"], (None, p["value"])) for p in target["parameters"]]
    response = requests.post(target["url"], files=[("file", ("a.png", b"x", "image/png"))] + params, timeout=5)

    assert response.status_code == 400
    assert shop.uploads == []
    shop.errors.clear()


def test_a_file_name_without_our_marker_is_refused_before_any_upload(shop, store):
    """The file-name marker is how a retry finds the media: an asset named without it is refused, nothing sent."""
    asset = make_asset()
    with pytest.raises(StoreError) as caught:
        store.push_asset(str(PRODUCT), PushAsset(**{**asset.__dict__, "filename": "mug-cutout.png"}))

    assert caught.value.retryable is False
    assert shop.uploads == [] and shop.product_media(PRODUCT) == []
