"""WooCommerceStore: pushes our assets onto WooCommerce products through the shop's REST API.

Two credentials, two route families (see /work/shared/API-NOTES.md, "WooCommerce and WordPress"):

- `wc/v3` routes (products, webhooks) take the WooCommerce consumer key and secret: HTTP Basic over
  https, or the `consumer_key`/`consumer_secret` query parameters on a plain-http base URL.
- `POST /wp-json/wp/v2/media` (uploading bytes) takes a WordPress application password (Basic, a user
  with `upload_files`). Consumer keys get a 401 there since WooCommerce 11.1. Without an application
  password we append `{"src": <public URL>}` to the product instead, and the store downloads the file.

Idempotency. WooCommerce has no field of ours on a product image, so the shop-side identity of an asset
is the marker in its file name, `-cs<8 hex>` (`base.asset_filename`: the first 8 hex digits of the content
key). An image on the product is this asset when the marker in its `src` file name or in its `name`
(the attachment title) is the asset's marker. Both are looked at because WordPress renames files
(`-1`, `-scaled`, `-1024x1024` suffixes; the marker survives, it is searched for, not compared) and a
merchant may retitle an image (then `src` still carries it), and an image added by `src` is named after
the URL it was downloaded from (then our `name` carries it). A push is therefore:

1. GET the product; an image with our marker already there -> `created=False` with its id.
2. With an application password: look for an earlier upload of the same file in the media library
   (`GET /wp/v2/media?search=cs<hex>`, same file stem and marker) and reuse it, so a crash between the
   upload and the product PUT never leaves two copies; else upload it. Then set alt text and title.
3. PUT the product's images: the current ones BY ID, in their order (index 0 stays the featured image),
   plus ours at the end. WooCommerce replaces the whole list with what it is sent.

`existing_assets` can only give back what the shop keeps: the 8 hex digits of the marker, which are the
first 8 of the push job's content key (`key[:8]`). WooCommerce has no compare-and-set on a product, so two
pushes to one product at the same moment can lose one image; the push job sends a render's assets one
after another, and a lost image is found missing (and pushed again) on the next run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from catalog_service.schemas import ImageRef, ProductEvent, image_id
from catalog_service.stores.base import (
    AuthRevoked,
    NotFound,
    NotSupported,
    OwnsSession,
    PushAsset,
    PushResult,
    RateLimited,
    StoreError,
    UpstreamError,
)
from catalog_service.stores.catalog import CatalogFilters, ListingFailed, woocommerce_status

WC_PREFIX = "/wp-json/wc/v3"
WP_PREFIX = "/wp-json/wp/v2"
DEFAULT_TOPICS = ("product.created", "product.updated", "product.deleted")
PAGE_SIZE = 100  # the REST API's largest per_page
MAX_PAGES = 50  # bound on paging through webhooks or media search results
DEFAULT_RETRY_AFTER_S = 1.0
MAX_MESSAGE_CHARS = 300
MAX_IMAGES = 250  # as many images (and tags) as the webhook takes on a product
MAX_LIST_PAGES = 100_000  # bound on a catalog listing's pages of PAGE_SIZE products
LIST_ATTEMPTS = 3  # tries of one listing page before its transient error is raised
LIST_RETRY_DELAY_S = 2.0  # seconds before a listing page's second try (then twice that)
MAX_LIST_WAIT_S = 30.0  # the longest Retry-After a listing waits out in place

# The same marker as base._OUR_MARKER, with the 8 hex digits captured.
_MARKER = re.compile(r"-cs([0-9a-f]{8})(?![0-9a-f])")


def marker_of(url_or_name: str | None) -> str | None:
    """The 8 hex digits of our marker in a URL's file name or an image name; None when it is not ours.

    The last marker wins: ours ends the stem, a product id in front of it could look like one too.
    """
    if not url_or_name:
        return None
    path = str(url_or_name).split("?", 1)[0].split("#", 1)[0]
    found = _MARKER.findall(path.rsplit("/", 1)[-1])
    return found[-1] if found else None


def _stem(filename: str) -> str:
    return filename.rsplit(".", 1)[0] if "." in filename else filename


class WooCommerceStore(OwnsSession):
    """Pushes assets onto WooCommerce products; one instance per shop."""

    platform = "woocommerce"
    can_delete = True

    def __init__(
        self,
        *,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        wp_user: str | None = None,
        wp_app_password: str | None = None,
        public_asset_url: Callable[[PushAsset], str] | None = None,
        session: requests.Session | None = None,
        timeout_s: float = 20.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not consumer_key or not consumer_secret:
            raise ValueError("consumer_key and consumer_secret are required")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._consumer = (consumer_key, consumer_secret)
        self._wp_auth = (wp_user, wp_app_password) if wp_user and wp_app_password else None
        self.public_asset_url = public_asset_url
        self.timeout_s = timeout_s
        self.session = session if session is not None else requests.Session()
        self._session_to_close = self.session if session is None else None

    @property
    def can_upload(self) -> bool:
        """Whether pushes upload bytes (application password) rather than hand the store a URL."""
        return self._wp_auth is not None

    # the StoreConnector interface

    def push_asset(self, product_id: str, asset: PushAsset) -> PushResult:
        """Put the asset on the product once; a retry (even after a crash mid-push) creates nothing new."""
        product_id = _product_id(product_id)
        token = marker_of(asset.filename)
        if token is None:
            raise StoreError(f"filename {asset.filename!r} lacks our -cs<8 hex> marker; use asset_filename()")
        images = self._get_product(product_id).get("images") or []
        for image in images:
            if _is_ours_for(image, token):
                return PushResult(external_id=str(image["id"]), url=str(image.get("src") or ""), created=False)

        current = [{"id": image["id"]} for image in images if _image_id(image)]
        if self._wp_auth is not None:
            media = self._find_upload(asset, token) or self._upload(asset)
            self._describe_media(media, asset)
            ours: dict[str, Any] = {"id": media["id"]}
        else:
            if self.public_asset_url is None:
                raise StoreError("no application password and no public asset URL: cannot push to WooCommerce")
            ours = {"src": self.public_asset_url(asset), "name": asset.filename}
        if asset.alt:
            ours["alt"] = asset.alt  # WooCommerce only sets a non-empty alt
        updated = self._put_images(product_id, [*current, ours])
        for image in updated.get("images") or []:
            if _is_ours_for(image, token) or ("id" in ours and _image_id(image) == ours["id"]):
                return PushResult(external_id=str(image["id"]), url=str(image.get("src") or ""), created=True)
        raise StoreError(f"product {product_id}: WooCommerce took the images but {asset.filename} is not among them")

    def existing_assets(self, product_id: str) -> dict[str, str]:
        """Our images on the product: marker (the content key's first 8 hex digits) -> image id."""
        found: dict[str, str] = {}
        for image in self._get_product(_product_id(product_id)).get("images") or []:
            token = marker_of(image.get("src")) or marker_of(image.get("name"))
            if token and _image_id(image):
                found.setdefault(token, str(image["id"]))
        return found

    def delete_asset(self, product_id: str, external_id: str) -> bool:
        """Take one of our images off the product (the media item stays in the library).

        Returns False when it was not there. Refuses, permanently, an image that is not ours: the
        merchant's images are never removed.
        """
        product_id = _product_id(product_id)
        images = self._get_product(product_id).get("images") or []
        target = [image for image in images if str(image.get("id")) == str(external_id)]
        if not target:
            return False
        if not (marker_of(target[0].get("src")) or marker_of(target[0].get("name"))):
            raise StoreError(f"product {product_id}: image {external_id} is the merchant's, not ours; not removing it")
        keep = [{"id": image["id"]} for image in images if _image_id(image) and str(image["id"]) != str(external_id)]
        self._put_images(product_id, keep)
        return True

    def register_webhooks(
        self,
        delivery_url_for: Callable[[str], str],
        secret: str,
        topics: Iterable[str] = DEFAULT_TOPICS,
    ) -> list[int]:
        """Make sure each topic has a webhook to our URL; returns their ids, one per topic, in order.

        A webhook already there for the topic and URL is kept (and switched back on when WooCommerce
        disabled it after failed deliveries) instead of being created twice.
        """
        existing = self._list_webhooks()
        ids: list[int] = []
        for topic in topics:
            url = delivery_url_for(topic)
            match = next((hook for hook in existing if hook.get("topic") == topic and hook.get("delivery_url") == url),
                         None)
            if match is not None:
                if match.get("status") != "active":
                    self._request("PUT", f"{WC_PREFIX}/webhooks/{int(match['id'])}", json={"status": "active"})
                ids.append(int(match["id"]))
                continue
            created = self._request("POST", f"{WC_PREFIX}/webhooks", json={
                "name": f"Catalog service: {topic}", "topic": topic, "delivery_url": url,
                "secret": secret, "status": "active",
            })
            existing.append(created)
            ids.append(int(created["id"]))
        return ids

    # listing the catalog (a backfill)

    def list_products(self, filters: CatalogFilters, *, start_page: int = 1,
                      sleep: Callable[[float], None] = time.sleep) -> Iterator[ProductEvent]:
        """The shop's products the filters select, as ProductEvents (action "create"), page by page.

        `GET /wp-json/wc/v3/products` (WooCommerce REST v3 "List all products": `per_page` up to 100,
        `page`, `status`, `after` with `dates_are_gmt` (created after), `tag` and `category` by id, `orderby`/`order`;
        the `X-WP-Total` and `X-WP-TotalPages` headers). Ordered by id, so products added while it runs come
        last rather than shifting pages. Each page is retried a few times on a transient failure before the
        error is raised; `start_page` resumes a listing that stopped (`CatalogPage.page` says where).
        """
        for page in self.list_pages(filters, start_page=start_page, sleep=sleep):
            yield from page.products

    def list_pages(self, filters: CatalogFilters, *, start_page: int = 1,
                   sleep: Callable[[float], None] = time.sleep) -> Iterator[CatalogPage]:
        """As list_products, one page at a time with the shop's totals (for a progress bar and resuming).

        What the endpoint cannot filter is checked here: the product type (our product type is a product's
        first category, as the webhook makes it). WooCommerce products have no vendor: a vendor filter is
        refused (NotSupported) rather than ignored. The collection filter names a product category.
        """
        if filters.vendor:
            raise NotSupported("WooCommerce products have no vendor; remove the vendor filter "
                               "(a category can be chosen as the collection)")
        if start_page < 1:
            raise ValueError("start_page must be 1 or more")
        params: dict[str, Any] = {"per_page": PAGE_SIZE, "orderby": "id", "order": "asc",
                                  "status": woocommerce_status(filters.status)}
        if filters.created_since is not None:
            # Without dates_are_gmt, `after` is read in the site's time zone (WC_REST_CRUD_Controller's
            # collection parameters); in UTC it means the same instant on every site.
            params["after"] = filters.created_since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            params["dates_are_gmt"] = "true"
        if filters.tag:
            params["tag"] = self._term_id("tags", filters.tag)
        if filters.collection:
            params["category"] = self._term_id("categories", filters.collection)
        page = start_page
        while True:
            headers: dict[str, str] = {}
            batch = self._with_retries(functools.partial(
                self._request, "GET", f"{WC_PREFIX}/products", params={**params, "page": page},
                what="product list", headers_out=headers), sleep)
            if not isinstance(batch, list):
                raise UpstreamError("WooCommerce answered the product list with something that is not a list")
            total_pages = _header_int(headers, "X-WP-TotalPages")
            products = tuple(event for raw in batch if (event := product_event(raw)) is not None
                             and _type_matches(event, filters))
            yield CatalogPage(page=page, total_pages=total_pages, total=_header_int(headers, "X-WP-Total"),
                              products=products)
            # Without the headers (a proxy removed them), a short page is the last one.
            last = page >= total_pages if total_pages else len(batch) < PAGE_SIZE
            if last or not batch or page >= MAX_LIST_PAGES:
                return
            page += 1

    def _term_id(self, taxonomy: str, value: str) -> int:
        """A product tag's or category's id from its id, slug or name (`GET /products/<taxonomy>?search=`)."""
        if value.isdigit():
            return int(value)
        wanted = value.casefold()
        for page in range(1, MAX_PAGES + 1):
            batch = self._request("GET", f"{WC_PREFIX}/products/{taxonomy}", what=f"product {taxonomy}",
                                  params={"search": value, "per_page": PAGE_SIZE, "page": page})
            if not isinstance(batch, list):
                raise UpstreamError(f"WooCommerce answered the product {taxonomy} with something that is not a list")
            for term in batch:
                if wanted in (str(term.get("name") or "").casefold(), str(term.get("slug") or "").casefold()):
                    return int(term["id"])
            if len(batch) < PAGE_SIZE:
                break
        kind = "tag" if taxonomy == "tags" else "category"
        raise ListingFailed(f"the shop has no product {kind} named {value!r}; check its name or slug in "
                            f"WooCommerce > Products > {'Tags' if kind == 'tag' else 'Categories'}",
                            code=f"UNKNOWN_{kind.upper()}")

    @staticmethod
    def _with_retries(call: Callable[[], Any], sleep: Callable[[float], None]) -> Any:
        """The call, tried again after a transient failure (5xx, timeout, 429) up to LIST_ATTEMPTS times."""
        for attempt in range(1, LIST_ATTEMPTS + 1):
            try:
                return call()
            except (UpstreamError, RateLimited) as exc:
                if attempt == LIST_ATTEMPTS:
                    raise
                wait = exc.retry_after_s if isinstance(exc, RateLimited) else LIST_RETRY_DELAY_S * attempt
                sleep(min(wait, MAX_LIST_WAIT_S))
        raise AssertionError("unreachable")

    # WooCommerce and WordPress calls

    def _get_product(self, product_id: str) -> dict[str, Any]:
        return self._request("GET", f"{WC_PREFIX}/products/{product_id}", what=f"product {product_id}")

    def _put_images(self, product_id: str, images: list[dict[str, Any]]) -> dict[str, Any]:
        return self._request("PUT", f"{WC_PREFIX}/products/{product_id}", json={"images": images},
                             what=f"product {product_id}")

    def _list_webhooks(self) -> list[dict[str, Any]]:
        hooks: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            batch = self._request("GET", f"{WC_PREFIX}/webhooks", params={"per_page": PAGE_SIZE, "page": page})
            if not isinstance(batch, list):
                raise UpstreamError("WooCommerce answered the webhook list with something that is not a list")
            hooks.extend(batch)
            if len(batch) < PAGE_SIZE:
                break
        return hooks

    def _find_upload(self, asset: PushAsset, token: str) -> dict[str, Any] | None:
        """An earlier upload of this very file (same stem and marker), the oldest if there are several."""
        stem = _stem(asset.filename)
        candidates = []
        for page in range(1, MAX_PAGES + 1):
            batch = self._request("GET", f"{WP_PREFIX}/media", wp=True, params={
                "search": f"cs{token}", "per_page": PAGE_SIZE, "page": page, "orderby": "id", "order": "asc",
            })
            if not isinstance(batch, list):
                raise UpstreamError("WordPress answered the media search with something that is not a list")
            for item in batch:
                file_name = str(item.get("source_url") or "").split("?", 1)[0].rsplit("/", 1)[-1]
                # WordPress may have added -1, -scaled... after our stem; never before it.
                if marker_of(file_name) == token and file_name.startswith(stem) and _image_id(item):
                    candidates.append(item)
            if len(batch) < PAGE_SIZE:
                break
        return min(candidates, key=lambda item: int(item["id"])) if candidates else None

    def _upload(self, asset: PushAsset) -> dict[str, Any]:
        """POST the raw bytes to the media library (WP_REST_Attachments_Controller::upload_from_data)."""
        return self._request("POST", f"{WP_PREFIX}/media", wp=True, data=asset.data, headers={
            "Content-Type": asset.content_type,
            "Content-Disposition": f'attachment; filename="{asset.filename}"',
        }, what=f"upload of {asset.filename}")

    def _describe_media(self, media: dict[str, Any], asset: PushAsset) -> None:
        """Alt text and title (our stem, with the marker) on the media item, when they differ."""
        title = media.get("title")
        raw_title = title.get("raw", title.get("rendered")) if isinstance(title, dict) else title
        changes: dict[str, str] = {}
        if asset.alt and media.get("alt_text") != asset.alt:
            changes["alt_text"] = asset.alt
        if raw_title != _stem(asset.filename):
            changes["title"] = _stem(asset.filename)
        if changes:
            media.update(self._request("POST", f"{WP_PREFIX}/media/{int(media['id'])}", wp=True, json=changes,
                                       what=f"media {media['id']}"))

    def _request(self, method: str, path: str, *, wp: bool = False, params: dict[str, Any] | None = None,
                 what: str = "", headers_out: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """One call, with the right credential, a timeout, and every failure mapped to the StoreError family."""
        params = dict(params or {})
        if wp:
            if self._wp_auth is None:
                raise StoreError("a WordPress application password is needed for the media library")
            auth: tuple[str, str] | None = self._wp_auth
        elif self._https:
            auth = self._consumer
        else:
            auth = None
            params.update(consumer_key=self._consumer[0], consumer_secret=self._consumer[1])
        label = f"{method} {path}"  # never the full URL: on plain http it carries the consumer secret
        # Failures are raised `from None`: requests' messages hold the URL, and on http the URL holds the secret.
        try:
            response = self.session.request(method, self.base_url + path, params=params or None, auth=auth,
                                            timeout=self.timeout_s, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise UpstreamError(f"{label}: the shop did not answer within {self.timeout_s:g}s") from None
        except requests.RequestException as exc:
            raise UpstreamError(f"{label}: cannot reach the shop ({type(exc).__name__})") from None
        with response:
            if headers_out is not None:  # the listing reads its paging headers
                headers_out.update(response.headers)
            return self._answer(response, label, wp=wp, what=what)

    def _answer(self, response: requests.Response, label: str, *, wp: bool, what: str) -> Any:
        status = response.status_code
        body = _json_or_none(response)
        code, message = _wp_error(body)
        detail = f"{message} ({code})" if code else message
        if 200 <= status < 300:
            if body is None:
                raise UpstreamError(f"{label}: HTTP {status} without a JSON body (a cache or security plugin?)")
            return body
        if status in (401, 403):
            credential = ("the WordPress application password (media uploads)" if wp
                          else "the WooCommerce consumer key")
            raise AuthRevoked(f"{label}: the shop refused {credential}: HTTP {status} {detail}".strip())
        if status == 404:
            raise NotFound(f"{label}: {what or 'resource'} not found: {detail}".strip())
        if status == 429:
            raise RateLimited(f"{label}: rate limited: {detail}".strip(), _retry_after_s(response))
        if status >= 500:
            raise UpstreamError(f"{label}: the shop failed: HTTP {status} {detail}".strip())
        if 300 <= status < 400:
            raise StoreError(f"{label}: HTTP {status} redirect to {response.headers.get('Location', '?')!r}; "
                             "set the shop's base URL to where it redirects")
        raise StoreError(f"{label}: HTTP {status} {detail}".strip())


@dataclasses.dataclass(frozen=True)
class CatalogPage:
    """One page of a WooCommerce listing: its number, the shop's totals (0 when not sent), its products."""

    page: int
    total_pages: int
    total: int
    products: tuple[ProductEvent, ...]


def product_event(raw: Any) -> ProductEvent | None:
    """A product of the REST list as the ProductEvent its product.created webhook would become.

    As `webhooks/woocommerce.py`: name, description (else the short one), the first category's name as the
    product type, tag names, images with their attachment ids in order, `date_modified_gmt` as UTC. An image
    whose `src` is not an http(s) URL is left out (a webhook would refuse the whole body); a product without
    a numeric id is None.
    """
    if not isinstance(raw, dict) or isinstance(raw.get("id"), bool) or not isinstance(raw.get("id"), int) \
            or raw["id"] < 1:
        return None
    categories = [str(term.get("name") or "") for term in raw.get("categories") or [] if isinstance(term, dict)]
    tags = tuple(str(term.get("name") or "") for term in raw.get("tags") or []
                 if isinstance(term, dict) and term.get("name"))
    images = []
    for position, image in enumerate((raw.get("images") or [])[:MAX_IMAGES]):
        src = str(image.get("src") or "") if isinstance(image, dict) else ""
        if urlsplit(src).scheme not in ("http", "https") or len(src) > 2048:
            continue
        images.append(ImageRef(external_id=image_id(image.get("id"), position), src=src,
                               alt=str(image.get("alt") or "")[:1000]))
    return ProductEvent(
        action="create",
        product_id=str(raw["id"]),
        title=str(raw.get("name") or "")[:1000],
        description=str(raw.get("description") or raw.get("short_description") or "")[:500_000],
        product_type=next((name for name in categories if name), "")[:255],
        tags=tags[:MAX_IMAGES],
        images=tuple(images),
        updated_at=_gmt(raw.get("date_modified_gmt")),
    )


def _gmt(value: Any) -> dt.datetime | None:
    """WooCommerce's `*_gmt` dates are UTC written without an offset."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _type_matches(event: ProductEvent, filters: CatalogFilters) -> bool:
    if filters.product_type and event.product_type.casefold() != filters.product_type.casefold():
        return False
    return True


def _header_int(headers: dict[str, str], name: str) -> int:
    for key, value in headers.items():
        if key.lower() == name.lower():
            try:
                return max(0, int(value))
            except ValueError:
                return 0
    return 0


def _product_id(product_id: str | int) -> str:
    text = str(product_id)
    if not text.isdigit():
        raise NotFound(f"WooCommerce product ids are numbers, got {product_id!r}")
    return text


def _image_id(image: dict[str, Any]) -> int:
    """The attachment id of an image entry; 0 for none (older APIs list a placeholder with id 0)."""
    try:
        return int(image.get("id") or 0)
    except (TypeError, ValueError):
        return 0


def _is_ours_for(image: dict[str, Any], token: str) -> bool:
    return bool(_image_id(image)) and token in (marker_of(image.get("src")), marker_of(image.get("name")))


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def _wp_error(body: Any) -> tuple[str, str]:
    """WordPress's error shape: {"code", "message", "data": {"status"}}; the message kept, bounded."""
    if isinstance(body, dict):
        return str(body.get("code") or ""), str(body.get("message") or "")[:MAX_MESSAGE_CHARS]
    return "", ""


def _retry_after_s(response: requests.Response, now: float | None = None) -> float:
    """Retry-After as seconds (a number or an HTTP date); a default when absent or unreadable."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return DEFAULT_RETRY_AFTER_S
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

