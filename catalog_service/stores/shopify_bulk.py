"""A Shopify shop's whole catalog through a bulk operation: start, poll, read the JSONL line by line.

From shopify.dev's bulk operations guide ("Perform bulk operations with the GraphQL Admin API") and the
Admin GraphQL reference (`bulkOperationRunQuery`, `BulkOperation`, `BulkOperationStatus`,
`BulkOperationErrorCode`, `BulkOperationUserErrorCode`; changelog "Bulk operations group objects default
changed to false", 2026-01; "New collection_id filter added to products query filters", 2024-10):

- `bulkOperationRunQuery(query:, groupObjects:)` starts an operation; up to 5 query operations run at once
  per shop from 2026-01 (`userErrors` code LIMIT_REACHED past that; OPERATION_IN_PROGRESS before 2026-01).
- The operation goes CREATED -> RUNNING -> COMPLETED, or FAILED (`errorCode` ACCESS_DENIED,
  INTERNAL_SERVER_ERROR, TIMEOUT; `partialDataUrl` may hold what was read), CANCELING -> CANCELED, and
  EXPIRED once its result is gone. We poll it by `node(id:)`: with several operations at once,
  `currentBulkOperation` names only the most recent one.
- The result is a JSONL file at `url` (null when nothing matched), valid for days, not forever. Nested
  connections come as their own lines carrying `__parentId`. We ask for `groupObjects: true`, which puts a
  product's media lines directly below it (the default became false in 2026-01): that is what lets `read`
  hand out each product as soon as the next one starts, holding one product at a time.

Products are normalised as `webhooks/shopify.py` normalises a products/create body: the numeric product id,
`descriptionHtml` for body_html, tags as a tuple, images in the product's media order with the image's
ProductImage number as its id (the REST `images[].id` a webhook carries) and its CDN URL as `src`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from catalog_service.schemas import ImageRef, ProductEvent, image_id
from catalog_service.stores.base import RateLimited, StoreError, UpstreamError
from catalog_service.stores.catalog import CatalogFilters, ListingExpired, ListingFailed, ListingTooLarge
from catalog_service.stores.shopify import ShopifyStore

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024**3
"""Bytes of JSONL `read` takes before it stops (ListingTooLarge): generous for a catalog of products and media."""
MAX_LINE_BYTES = 8 * 1024**2
"""One JSONL line (a product with a long description) larger than this is refused, never held."""
CHUNK_BYTES = 64 * 1024
DOWNLOAD_TIMEOUT_S = (10.0, 60.0)
"""Seconds: connecting to the result's storage, and waiting for each next piece of it."""
LIMIT_RETRY_AFTER_S = 60.0
"""Seconds before starting again when the shop already runs as many bulk operations as Shopify allows."""
MAX_IMAGES = 250
MAX_TAGS = 250
RUNNING = frozenset({"CREATED", "RUNNING"})

_PRODUCT_GID = "gid://shopify/Product/"
_IMAGE_GID = re.compile(r"^gid://shopify/ProductImage/(\d+)$")
_GID_TAIL = re.compile(r"/(\d+)(?:\?.*)?$")

# Checked field by field against shopify.dev's Admin GraphQL reference (BulkOperation, Product, MediaImage).
BULK_RUN_QUERY = """
mutation BulkListProducts($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: true) {
    bulkOperation { id status }
    userErrors { code field message }
  }
}
"""

BULK_STATUS_QUERY = """
query BulkListStatus($id: ID!) {
  node(id: $id) {
    ... on BulkOperation {
      id status errorCode objectCount rootObjectCount fileSize url partialDataUrl
    }
  }
}
"""

COLLECTION_BY_HANDLE = """
query CollectionByHandle($handle: String!) {
  collectionByIdentifier(identifier: {handle: $handle}) { id }
}
"""

# The bulk query itself: no pagination arguments, Shopify pages for us. Media other than images (video,
# 3D) come as lines without `image` and are passed over.
PRODUCTS_BULK_QUERY = """
{
  products%s {
    edges {
      node {
        id title descriptionHtml vendor productType tags status createdAt updatedAt
        media {
          edges {
            node {
              id mediaContentType alt
              ... on MediaImage { image { id url altText } }
            }
          }
        }
      }
    }
  }
}
"""


@dataclasses.dataclass(frozen=True)
class BulkStatus:
    """Where a bulk operation is. `url` is None until COMPLETED, and stays None when nothing matched."""

    operation_id: str
    status: str
    url: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    """Products read so far (object_count also counts their media lines)."""
    error_code: str | None = None
    partial_url: str | None = None
    file_size: int | None = None

    @property
    def done(self) -> bool:
        """COMPLETED: `read(url)` may begin (an empty catalog has no url and reads as nothing)."""
        return self.status == "COMPLETED"

    @property
    def running(self) -> bool:
        return self.status in RUNNING


def search_query(filters: CatalogFilters, collection_id: str | None = None) -> str:
    """The `products(query:)` text for the filters, in Shopify's search syntax; '' for no filter.

    collection_id combines with product_type, vendor, status and created_at but not with tag (the changelog
    of 2024-10 lists what it combines with), so with a collection the tag is checked as lines are read.
    """
    terms: list[str] = []
    if collection_id:
        terms.append(f"collection_id:{collection_id}")
    if filters.product_type:
        terms.append(f"product_type:{_quoted(filters.product_type)}")
    if filters.vendor:
        terms.append(f"vendor:{_quoted(filters.vendor)}")
    if filters.tag and not collection_id:
        terms.append(f"tag:{_quoted(filters.tag)}")
    if filters.status != "any":
        terms.append(f"status:{filters.status}")
    if filters.created_since is not None:
        since = filters.created_since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        terms.append(f"created_at:>={_quoted(since)}")  # date values must be quoted
    return " ".join(terms)


def _quoted(value: str) -> str:
    """A search-syntax value in double quotes; backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bulk_query(search: str) -> str:
    """The GraphQL document the bulk operation runs."""
    return PRODUCTS_BULK_QUERY % (f"(query: {json.dumps(search)})" if search else "")


class ShopifyBulkCatalog:
    """Lists one Shopify shop's products through bulk operations; the job layer drives the three steps.

        catalog = ShopifyBulkCatalog(store)
        operation_id = catalog.start(filters)            # once; keep the id
        state = catalog.status(operation_id)             # from a scheduled job, until state.done
        for event in catalog.read(state.url, filters):   # products as they are read
            ...
    """

    def __init__(self, store: ShopifyStore, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 timeout_s: tuple[float, float] = DOWNLOAD_TIMEOUT_S) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.store = store
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"ShopifyBulkCatalog({self.store!r})"

    # -- step 1 --------------------------------------------------------------------------------

    def start(self, filters: CatalogFilters) -> str:
        """Start a bulk operation listing the products the filters select; returns its id (a gid).

        RateLimited when the shop already runs as many bulk operations as Shopify allows (start again
        later); StoreError for a query Shopify refuses; ListingFailed for a collection that is not there.
        """
        collection_id = self._collection_id(filters.collection) if filters.collection else None
        document = bulk_query(search_query(filters, collection_id))
        data = self.store.graphql(BULK_RUN_QUERY, {"query": document})
        payload = data.get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        if errors:
            text = "; ".join(str(e.get("message") or e.get("code") or "unknown error") for e in errors)
            codes = {e.get("code") for e in errors}
            if codes & {"LIMIT_REACHED", "OPERATION_IN_PROGRESS"}:
                raise RateLimited(f"Shopify ({self.store.shop_domain}) is already running as many catalog "
                                  f"listings as it allows for this shop; ours starts when one ends: {text}",
                                  retry_after_s=LIMIT_RETRY_AFTER_S)
            raise StoreError(f"Shopify ({self.store.shop_domain}) refused the catalog listing: {text}")
        operation = payload.get("bulkOperation") or {}
        if not operation.get("id"):
            raise UpstreamError(f"Shopify ({self.store.shop_domain}) started no bulk operation")
        log.info("shop=%s bulk operation %s started", self.store.shop_domain, operation["id"])
        return str(operation["id"])

    def _collection_id(self, collection: str) -> str:
        """The collection's number from a number, a gid, or a handle (looked up)."""
        value = collection.strip()
        if value.isdigit():
            return value
        if value.startswith("gid://shopify/Collection/") and (number := _gid_number(value)):
            return number
        found = (self.store.graphql(COLLECTION_BY_HANDLE, {"handle": value}).get("collectionByIdentifier")
                 or {}).get("id")
        number = _gid_number(found)
        if number is None:
            raise ListingFailed(f"Shopify ({self.store.shop_domain}) has no collection {value!r}: check the "
                                "collection's handle (the last part of its address) or choose another",
                                code="UNKNOWN_COLLECTION")
        return number

    # -- step 2 --------------------------------------------------------------------------------

    def status(self, operation_id: str) -> BulkStatus:
        """Where the operation is. A failed, cancelled or expired operation raises its ListingFailed kind."""
        node = self.store.graphql(BULK_STATUS_QUERY, {"id": operation_id}).get("node")
        if not node or not node.get("status"):
            raise ListingExpired(f"Shopify ({self.store.shop_domain}) no longer knows catalog listing "
                                 f"{operation_id}; start the listing again", code="NOT_FOUND")
        state = BulkStatus(
            operation_id=str(node.get("id") or operation_id), status=str(node["status"]),
            url=node.get("url") or None, object_count=_int(node.get("objectCount")),
            root_object_count=_int(node.get("rootObjectCount")), error_code=node.get("errorCode") or None,
            partial_url=node.get("partialDataUrl") or None,
            file_size=_int(node["fileSize"]) if node.get("fileSize") is not None else None)
        if state.status == "FAILED":
            raise self._failure(state)
        if state.status in ("CANCELED", "CANCELING"):
            raise ListingFailed(f"The catalog listing on Shopify ({self.store.shop_domain}) was cancelled; "
                                "start it again", code="CANCELED", start_again=True, partial_url=state.partial_url)
        if state.status == "EXPIRED":
            raise ListingExpired(f"The catalog listing on Shopify ({self.store.shop_domain}) has expired "
                                 "(Shopify keeps a result for days); start the listing again")
        return state

    def _failure(self, state: BulkStatus) -> ListingFailed:
        code = state.error_code or "UNKNOWN"
        where = f"Shopify ({self.store.shop_domain})"
        if code == "ACCESS_DENIED":
            message = (f"{where} denied the catalog listing: the app lacks access to products; reinstall the app "
                       "and grant it read access to products")
            return ListingFailed(message, code=code, start_again=False, partial_url=state.partial_url)
        if code == "TIMEOUT":
            message = (f"{where} timed out listing the catalog; start again, or narrow the filters "
                       "(a product type, vendor, tag or collection) to list it in parts")
        else:
            message = f"{where} failed listing the catalog ({code}); start the listing again"
        return ListingFailed(message, code=code, start_again=True, partial_url=state.partial_url)

    # -- step 3 --------------------------------------------------------------------------------

    def read(self, url: str | None, filters: CatalogFilters | None = None, *,
             after_product_id: str | None = None) -> Iterator[ProductEvent]:
        """The products of a completed operation's JSONL, each as soon as its lines are read.

        `filters` checks what the search could not (the tag, when a collection was asked for).
        `after_product_id` resumes a read: products up to and including that one are passed over.
        The download streams under a byte cap and timeouts and carries no Shopify token. Errors:
        ListingExpired (the result is gone: start again), ListingTooLarge, UpstreamError (read again).
        """
        if url is None:
            return
        if urlsplit(url).scheme not in ("http", "https"):
            raise StoreError(f"Shopify gave a result address that is not http(s): {url[:80]!r}")
        skipping = after_product_id is not None
        for event in self._products(self._lines(url)):
            if skipping:
                skipping = event.product_id != after_product_id
                continue
            if filters is not None and not filters.has_tag(event.tags):
                continue
            yield event

    def _lines(self, url: str) -> Iterator[bytes]:
        """The JSONL's lines, streamed; never more than one line and one chunk held."""
        try:
            response = self.store.session.get(url, stream=True, timeout=self.timeout_s, allow_redirects=False,
                                              headers={"Accept": "application/jsonl, */*"})
        except requests.Timeout as exc:
            raise UpstreamError("the catalog listing's result did not answer in time; read it again") from exc
        except requests.RequestException as exc:
            raise UpstreamError(f"cannot reach the catalog listing's result: {type(exc).__name__}") from None
        with response:
            status = response.status_code
            if status in (400, 401, 403, 404, 410):
                # A signed storage URL past its expiry answers 400/403; a removed file 404.
                raise ListingExpired(f"the catalog listing's result is gone (HTTP {status}); start the listing "
                                     "again")
            if status >= 500 or status in (408, 429):
                raise UpstreamError(f"the catalog listing's result answered HTTP {status}; read it again")
            if status != 200:
                raise StoreError(f"the catalog listing's result answered HTTP {status}")
            declared = _int(response.headers.get("Content-Length"))
            if declared > self.max_bytes:
                raise self._too_large()
            received = 0
            pending = bytearray()
            try:
                for chunk in response.iter_content(CHUNK_BYTES):
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise self._too_large()
                    pending += chunk
                    start = 0
                    while (end := pending.find(b"\n", start)) != -1:
                        if end > start:
                            yield bytes(pending[start:end])
                        start = end + 1
                    del pending[:start]
                    if len(pending) > MAX_LINE_BYTES:
                        raise ListingFailed(f"a line of the catalog listing is longer than {MAX_LINE_BYTES} "
                                            "bytes; it is not a product we can read", code="LINE_TOO_LONG")
            except requests.RequestException as exc:
                raise UpstreamError(f"reading the catalog listing broke off ({type(exc).__name__}); "
                                    "read it again") from None
            if pending.strip():
                yield bytes(pending)

    def _too_large(self) -> ListingTooLarge:
        return ListingTooLarge(f"the catalog listing is larger than {self.max_bytes} bytes; narrow the filters "
                               "to list the catalog in parts, or raise the limit")

    def _products(self, lines: Iterator[bytes]) -> Iterator[ProductEvent]:
        """Join each product line with the media lines below it (grouped output), one product at a time."""
        product: dict[str, Any] | None = None
        media: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
            except ValueError:
                raise ListingFailed(f"line {number} of the catalog listing is not JSON", code="BAD_LINE") from None
            if not isinstance(row, dict):
                raise ListingFailed(f"line {number} of the catalog listing is not an object", code="BAD_LINE")
            parent = row.get("__parentId")
            if parent is None:
                if product is not None:
                    yield _event(product, media)
                product, media = row, []
                continue
            if product is None or parent != product.get("id"):
                # Grouped output puts children right below their parent; anything else cannot be streamed.
                raise ListingFailed("the catalog listing's lines are not grouped under their products; start "
                                    "the listing again", code="UNGROUPED", start_again=True)
            if len(media) < MAX_IMAGES and isinstance(row.get("image"), dict):
                media.append(row)
        if product is not None:
            yield _event(product, media)


def _event(product: dict[str, Any], media: list[dict[str, Any]]) -> ProductEvent:
    """A product line and its media lines as the ProductEvent a products/create webhook would become."""
    gid = str(product.get("id") or "")
    if not gid.startswith(_PRODUCT_GID) or not gid[len(_PRODUCT_GID):].isdigit():
        raise ListingFailed(f"the catalog listing names a product {gid[:80]!r} that is not a Shopify product",
                            code="BAD_LINE")
    raw_tags = product.get("tags") or []
    tags = tuple(str(tag).strip() for tag in raw_tags if str(tag).strip()) if isinstance(raw_tags, list) else ()
    images: list[ImageRef] = []
    for position, item in enumerate(media):
        image = item["image"]
        src = str(image.get("url") or "")
        if urlsplit(src).scheme not in ("http", "https") or len(src) > 2048:
            continue
        match = _IMAGE_GID.match(str(image.get("id") or ""))
        # The ProductImage number is the REST image id webhooks carry; without one, the media's own number.
        raw_id = match.group(1) if match else _gid_number(item.get("id"))
        alt = item.get("alt") or image.get("altText") or ""
        images.append(ImageRef(external_id=image_id(raw_id, position), src=src, alt=str(alt)[:1000]))
    return ProductEvent(
        action="create",
        product_id=gid[len(_PRODUCT_GID):],
        title=str(product.get("title") or "")[:1000],
        description=str(product.get("descriptionHtml") or "")[:500_000],
        product_type=str(product.get("productType") or "")[:255],
        vendor=str(product.get("vendor") or "")[:255],
        tags=tags[:MAX_TAGS],
        images=tuple(images),
        updated_at=_datetime(product.get("updatedAt")),
    )


def _datetime(value: Any) -> dt.datetime | None:
    """Shopify's ISO 8601 DateTime (Z or an offset) as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _gid_number(value: Any) -> str | None:
    """The number that ends a gid (`gid://shopify/Kind/123` -> "123"); None when there is none."""
    match = _GID_TAIL.search(str(value or ""))
    return match.group(1) if match else None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
