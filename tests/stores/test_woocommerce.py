"""WooCommerceStore against a fake WooCommerce + WordPress REST API on loopback."""

import hashlib

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
from catalog_service.stores.woocommerce import WooCommerceStore, marker_of
from fakes.woocommerce_server import FakeWooCommerce


@pytest.fixture
def shop():
    with FakeWooCommerce() as fake:
        yield fake
        assert fake.errors == []


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


@pytest.fixture
def product(shop):
    """A product with the merchant's two images: a featured one and a gallery one."""
    front = shop.add_media("mug-front.jpg", b"front", alt="Front")
    side = shop.add_media("mug-side.jpg", b"side", alt="Side")
    return shop.add_product(images=[front, side])


def make_store(shop, session, **overrides):
    options = dict(base_url=shop.url, consumer_key=shop.consumer_key, consumer_secret=shop.consumer_secret,
                   wp_user=shop.wp_user, wp_app_password=shop.wp_app_password, session=session, timeout_s=5)
    options.update(overrides)
    return WooCommerceStore(**options)


def make_asset(product_id, kind="scene", n=0, *, preset="kitchen"):
    data = f"png bytes {kind} {n}".encode()
    key = hashlib.sha256(data).hexdigest()
    return PushAsset(key=key, kind=kind, filename=asset_filename(str(product_id), kind, preset, key, "png"),
                     content_type="image/png", data=data, alt=f"Blue mug, {kind}")


def test_push_appends_ours_after_the_merchants_images(shop, session, product):
    """One push: merchant's images keep their ids and order, ours is last with our bytes and alt text."""
    merchant = shop.images_of(product)
    asset = make_asset(product)

    result = make_store(shop, session).push_asset(str(product), asset)

    images = shop.images_of(product)
    assert result.created is True
    assert images[:2] == merchant and len(images) == 3
    ours = shop.media[images[2]]
    assert result.external_id == str(ours.id)
    assert ours.data == asset.data and ours.alt_text == asset.alt
    assert marker_of(result.url) == asset.key[:8]
    upload = shop.uploads()[0]
    assert upload.headers["content-disposition"] == f'attachment; filename="{asset.filename}"'
    assert upload.headers["content-type"] == "image/png"
    put = shop.requests_to("PUT", f"/wp-json/wc/v3/products/{product}")[0].json()
    assert put["images"][:2] == [{"id": merchant[0]}, {"id": merchant[1]}]


def test_push_again_creates_nothing(shop, session, product):
    """A second push of the same asset answers created=False and neither uploads nor changes the images."""
    store = make_store(shop, session)
    asset = make_asset(product)
    first = store.push_asset(str(product), asset)
    images = shop.images_of(product)
    uploads = len(shop.uploads())

    again = store.push_asset(str(product), asset)

    assert again.created is False and again.external_id == first.external_id
    assert shop.images_of(product) == images
    assert len(shop.uploads()) == uploads
    assert len(shop.requests_to("PUT", "/wp-json/wc/v3/products/")) == 1


def test_crash_between_upload_and_product_put_reuses_the_upload(shop, session, product):
    """Upload done, product PUT lost: a new store object reuses the earlier upload, one media item, one image."""
    asset = make_asset(product)
    merchant = shop.images_of(product)
    shop.fail_next(1, status=500, path_prefix="/wp-json/wc/v3/products/", method="PUT")
    with pytest.raises(UpstreamError):
        make_store(shop, session).push_asset(str(product), asset)
    assert shop.images_of(product) == merchant
    assert len(shop.uploads()) == 1
    media_before = len(shop.media)

    result = make_store(shop, session).push_asset(str(product), asset)

    assert result.created is True
    assert len(shop.media) == media_before  # nothing uploaded twice
    ours = [m for m in shop.media.values() if marker_of(m.file_name) == asset.key[:8]]
    assert len(ours) == 1 and result.external_id == str(ours[0].id)
    assert shop.images_of(product)[2:] == [ours[0].id]
    assert ours[0].alt_text == asset.alt


def test_without_application_password_the_store_downloads_our_url(shop, session, product):
    """No application password: {"src": public URL, "name": filename} is appended and nothing is uploaded."""
    asset = make_asset(product)
    public = f"https://catalog.example.com/assets/{asset.key}/{asset.filename}?sig=abc"
    store = make_store(shop, session, wp_user=None, wp_app_password=None, public_asset_url=lambda a: public)

    result = store.push_asset(str(product), asset)

    assert shop.downloads == [public]
    assert shop.uploads() == []
    put = shop.requests_to("PUT", "/wp-json/wc/v3/products/")[0].json()
    assert put["images"][-1] == {"src": public, "name": asset.filename, "alt": asset.alt}
    images = shop.images_of(product)
    assert len(images) == 3 and result.external_id == str(images[2])
    assert store.push_asset(str(product), asset).created is False
    assert shop.downloads == [public]


def test_consumer_key_on_media_is_auth_revoked_naming_the_app_password(shop, session, product):
    """A consumer key given as the application password: the fake's 401 becomes AuthRevoked, secrets left out."""
    store = make_store(shop, session, wp_user=shop.consumer_key, wp_app_password=shop.consumer_secret)

    with pytest.raises(AuthRevoked) as caught:
        store.push_asset(str(product), make_asset(product))

    message = str(caught.value)
    assert "application password" in message
    assert shop.consumer_secret not in message and shop.consumer_key not in message
    assert shop.requests_to("GET", "/wp-json/wp/v2/media")[0].status == 401


def test_wrong_consumer_secret_is_auth_revoked_naming_the_consumer_key(shop, session, product):
    """A revoked consumer key: AuthRevoked naming the consumer key, with WooCommerce's message, no secret."""
    store = make_store(shop, session, consumer_secret="cs_revoked_value")

    with pytest.raises(AuthRevoked) as caught:
        store.existing_assets(str(product))

    assert "consumer key" in str(caught.value) and "Consumer secret is invalid." in str(caught.value)
    assert "cs_revoked_value" not in str(caught.value)
    assert shop.requests[0].query["consumer_key"] == shop.consumer_key  # plain http: query parameters


def test_missing_product_is_not_found(shop, session):
    """A product id the shop does not have raises NotFound (permanent)."""
    with pytest.raises(NotFound) as caught:
        make_store(shop, session).push_asset("999999", make_asset(999999))
    assert caught.value.retryable is False


def test_429_is_rate_limited_with_retry_after(shop, session, product):
    """A 429 with Retry-After raises RateLimited carrying the delay."""
    shop.fail_next(1, status=429, retry_after="7")
    with pytest.raises(RateLimited) as caught:
        make_store(shop, session).push_asset(str(product), make_asset(product))
    assert caught.value.retry_after_s == 7.0 and caught.value.retryable is True


def test_500_is_retryable_upstream_error(shop, session, product):
    """A 5xx raises a retryable UpstreamError, and the retry then succeeds."""
    store = make_store(shop, session)
    shop.fail_next(1, status=503)
    with pytest.raises(UpstreamError) as caught:
        store.push_asset(str(product), make_asset(product))
    assert caught.value.retryable is True
    assert store.push_asset(str(product), make_asset(product)).created is True


def test_unreachable_shop_is_upstream_error_without_the_secret(session):
    """A connection refused on plain http raises UpstreamError whose text holds no consumer secret."""
    with FakeWooCommerce() as fake:
        url = fake.url
    store = WooCommerceStore(base_url=url, consumer_key="ck_x", consumer_secret="cs_topsecret", session=session,
                             timeout_s=2)
    with pytest.raises(UpstreamError) as caught:
        store.existing_assets("1")
    assert "cs_topsecret" not in str(caught.value) and caught.value.__cause__ is None


def test_other_4xx_keeps_the_wordpress_message(shop, session, product):
    """A 400 from WooCommerce is a permanent StoreError carrying WordPress's message."""
    store = make_store(shop, session)
    with pytest.raises(StoreError) as caught:
        store._put_images(str(product), [{"id": 424242}])
    assert "#424242 is an invalid image ID." in str(caught.value) and caught.value.retryable is False


def test_existing_assets_lists_ours_only(shop, session, product):
    """existing_assets maps our marker (the key's first 8 hex digits) to image ids, never the merchant's."""
    store = make_store(shop, session)
    cutout, scene = make_asset(product, "cutout"), make_asset(product, "scene")
    ids = {a.key[:8]: store.push_asset(str(product), a).external_id for a in (cutout, scene)}

    assert store.existing_assets(str(product)) == ids


def test_delete_asset_removes_ours_only(shop, session, product):
    """delete_asset takes our image off, keeps the merchant's in order, and refuses a merchant image."""
    store = make_store(shop, session)
    merchant = shop.images_of(product)
    cutout = store.push_asset(str(product), make_asset(product, "cutout"))
    scene = store.push_asset(str(product), make_asset(product, "scene"))

    assert store.delete_asset(str(product), cutout.external_id) is True

    assert shop.images_of(product) == [*merchant, int(scene.external_id)]
    assert store.delete_asset(str(product), cutout.external_id) is False
    with pytest.raises(StoreError):
        store.delete_asset(str(product), str(merchant[0]))
    assert shop.images_of(product)[:2] == merchant


def test_register_webhooks_creates_three_once(shop, session):
    """register_webhooks creates one active webhook per topic, and a second call creates none."""
    store = make_store(shop, session)
    url_for = lambda topic: f"https://catalog.example.com/webhooks/woocommerce/7?t={topic}"  # noqa: E731

    ids = store.register_webhooks(url_for, "whsec")
    again = store.register_webhooks(url_for, "whsec")

    assert len(ids) == 3 and again == ids
    assert sorted(h["topic"] for h in shop.webhooks.values()) == ["product.created", "product.deleted",
                                                                   "product.updated"]
    assert all(h["status"] == "active" and h["secret"] == "whsec" for h in shop.webhooks.values())
    assert len(shop.requests_to("POST", "/wp-json/wc/v3/webhooks")) == 3


def test_register_webhooks_switches_a_disabled_one_back_on(shop, session):
    """A webhook WooCommerce disabled after failed deliveries is reactivated, not duplicated."""
    store = make_store(shop, session)
    url_for = lambda topic: "https://catalog.example.com/webhooks/woocommerce/7"  # noqa: E731
    ids = store.register_webhooks(url_for, "whsec")
    shop.webhooks[ids[1]]["status"] = "disabled"

    assert store.register_webhooks(url_for, "whsec") == ids
    assert shop.webhooks[ids[1]]["status"] == "active" and len(shop.webhooks) == 3


class _Recorder(requests.adapters.BaseAdapter):
    """A transport that records prepared requests and answers an empty product."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def send(self, request, **kwargs):
        self.sent.append((request, kwargs))
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        response.headers["Content-Type"] = "application/json"
        response._content = b'{"id": 5, "images": []}'
        return response

    def close(self):
        pass


def test_https_uses_basic_auth_and_a_timeout(session):
    """Over https the consumer key goes in Basic auth, never the query string, and every call has a timeout."""
    recorder = _Recorder()
    session.mount("https://", recorder)
    store = WooCommerceStore(base_url="https://shop.example.com/", consumer_key="ck_a", consumer_secret="cs_b",
                             session=session, timeout_s=3)

    assert store.existing_assets("5") == {}

    request, kwargs = recorder.sent[0]
    assert request.url == "https://shop.example.com/wp-json/wc/v3/products/5"
    assert request.headers["Authorization"].startswith("Basic ") and kwargs["timeout"] == 3
