"""ShopifyStore: pushes our assets onto a Shopify product through the GraphQL Admin API.

One push is: look for our earlier upload of this asset on the product; if absent,
`stagedUploadsCreate` (POST form) -> upload the bytes to the target -> `productUpdate(media: ...)`
-> follow the new media until READY or FAILED (bounded).

Idempotency marker: the file name. Every media we create is uploaded under `base.asset_filename`,
whose `-cs<8 hex>` marker ends the stem; Shopify keeps it in the media's `originalSource` URL (readable
while the media is still PROCESSING, when `image` is still null) and in its CDN URL (it may add `_<hex>`
or `-1`; the marker is searched for). A crash after `productUpdate` leaves a media the next push finds
by that name. The alt text is the merchant's words only: it is what screen readers read and search
engines index, so no machine tag goes into it. Media an earlier version made carries ` [cs:<asset key>]`
at the end of its alt text; that tag is still read (`base.key_from_old_alt`), so those images stay ours.

Never logged or put in a message: the access token. It is sent only to the shop's GraphQL
endpoint (redirects are not followed, so it cannot travel on to another host), never to the
staged upload target.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from catalog_service.stores.base import (
    AuthRevoked,
    NotFound,
    OwnsSession,
    PushAsset,
    PushResult,
    RateLimited,
    StoreError,
    UpstreamError,
    is_our_filename,
    key_from_old_alt,
)

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2026-10"
MAX_THROTTLE_WAIT_S = 60.0
"""Seconds: the longest single wait for Shopify's cost bucket to refill, or a Retry-After we honour."""
DEFAULT_RETRY_AFTER_S = 2.0
"""Seconds: the wait after a 429 or 503 that names no Retry-After."""
MEDIA_POLLS = 10
"""How many times a new media's status is read before the push gives up on it for now."""
MEDIA_POLL_DELAYS_S = (0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0, 5.0, 5.0)
"""Seconds before each status read (27.5 s in all): processing a product image takes seconds."""
MAX_MEDIA_PAGES = 4
"""Pages of 250 media read per product; Shopify allows 250 media on a product."""
ALT_MAX_CHARS = 512
"""Shopify's limit on a media's alt text."""

_SHOP_DOMAIN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")
_NOT_FOUND_WORDS = re.compile(r"does not exist|doesn't exist|not found|could not be found|couldn't be found", re.I)
_PRODUCT_GID = "gid://shopify/Product/"

# The GraphQL documents, checked field by field against shopify.dev's Admin API reference.
MEDIA_FIELDS = """
  id
  alt
  mediaContentType
  status
  mediaErrors { code details message }
  ... on MediaImage { image { url } originalSource { url } }
"""

PRODUCT_MEDIA_QUERY = """
query ProductMedia($id: ID!, $after: String) {
  product(id: $id) {
    id
    media(first: 250, after: $after) {
      nodes {%s}
      pageInfo { hasNextPage endCursor }
    }
  }
}
""" % MEDIA_FIELDS

MEDIA_NODE_QUERY = """
query MediaStatus($id: ID!) {
  node(id: $id) {
    id
    ... on Media {%s}
  }
}
""" % MEDIA_FIELDS

STAGED_UPLOADS_CREATE = """
mutation StagedUploadsCreate($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}
"""

PRODUCT_UPDATE_MEDIA = """
mutation ProductAddMedia($product: ProductUpdateInput!, $media: [CreateMediaInput!]) {
  productUpdate(product: $product, media: $media) {
    product { id }
    userErrors { field message }
  }
}
"""

FILE_UPDATE_DETACH = """
mutation FileDetach($files: [FileUpdateInput!]!) {
  fileUpdate(files: $files) {
    files { id }
    userErrors { code field message }
  }
}
"""

FILE_DELETE = """
mutation FileDelete($fileIds: [ID!]!) {
  fileDelete(fileIds: $fileIds) {
    deletedFileIds
    userErrors { code field message }
  }
}
"""


class MediaFailed(UpstreamError):
    """Shopify accepted the upload but could not process the image (media status FAILED).

    Permanent: the same bytes fail the same way, and the failed media stays on the product
    under our marked file name, so a retry would only find it again. A regenerate makes new bytes.
    """

    retryable = False


_MARKER = re.compile(r"-cs([0-9a-f]{8})(?![0-9a-f])")
"""base._OUR_MARKER with its 8 hex digits captured."""


def _marker(media: dict[str, Any]) -> str | None:
    """The 8 hex digits that mark a media as ours: from its file name, else from an earlier version's alt tag."""
    found = _MARKER.findall(_media_filename(media))
    if found:
        return str(found[-1])  # the last wins: ours ends the stem, a product id in front could look like one
    old_key = key_from_old_alt(media.get("alt"))
    return old_key[:8] if old_key else None


def product_gid(product_id: str) -> str:
    """`gid://shopify/Product/<n>` from a number or a gid; StoreError (permanent) for anything else."""
    value = str(product_id).strip()
    if value.startswith(_PRODUCT_GID):
        value = value[len(_PRODUCT_GID):]
    if not value.isdigit():
        raise StoreError(f"not a Shopify product id: {product_id!r}")
    return _PRODUCT_GID + value


def _media_filename(media: dict[str, Any]) -> str:
    """The file name Shopify serves the media under, '' while it has none."""
    for field in ("image", "originalSource"):
        url = (media.get(field) or {}).get("url") or ""
        if url:
            return url.split("?", 1)[0].rsplit("/", 1)[-1]
    return ""


def _stem(filename: str) -> str:
    return filename.rsplit(".", 1)[0]


def _errors_text(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        field = ".".join(str(f) for f in (error.get("field") or []))
        message = str(error.get("message") or error.get("code") or "unknown error")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


class ShopifyStore(OwnsSession):
    """Pushes assets to one Shopify shop's products."""

    platform = "shopify"
    can_delete = True

    def __init__(
        self,
        *,
        shop_domain: str,
        access_token: str,
        api_version: str = DEFAULT_API_VERSION,
        api_base_url: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = 20.0,
        max_throttle_waits: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        refresh_token: Callable[[], str | None] | None = None,
    ) -> None:
        if api_base_url is None and not _SHOP_DOMAIN.match(shop_domain):
            raise ValueError(f"not a myshopify.com domain: {shop_domain!r}")
        if not access_token:
            raise ValueError("an access token is required")
        if max_throttle_waits < 0 or timeout_s <= 0:
            raise ValueError("max_throttle_waits must be >= 0 and timeout_s > 0")
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.base_url = (api_base_url or f"https://{shop_domain}").rstrip("/")
        self.endpoint = f"{self.base_url}/admin/api/{api_version}/graphql.json"
        self.timeout_s = timeout_s
        self.max_throttle_waits = max_throttle_waits
        self._token = access_token
        self._session = session or requests.Session()
        self._session_to_close = self._session if session is None else None
        self._sleep = sleep
        self._refresh_token = refresh_token

    def __repr__(self) -> str:  # no token in reprs, tracebacks or logs
        return f"ShopifyStore(shop_domain={self.shop_domain!r}, api_version={self.api_version!r})"

    # -- the StoreConnector interface ---------------------------------------------------------

    def push_asset(self, product_id: str, asset: PushAsset) -> PushResult:
        """Put the asset on the product once; a second call with the same key creates nothing."""
        if not is_our_filename(asset.filename):
            # Without the marker a retry could not find this media, and would add it a second time.
            raise StoreError(f"filename {asset.filename!r} lacks our -cs<8 hex> marker; use asset_filename()")
        gid = product_gid(product_id)
        earlier = self._find_ours(gid, asset)
        if earlier is not None:
            media = self._await_media(earlier, gid)
            log.info("shop=%s product=%s key=%s media=%s already there", self.shop_domain, gid, asset.key, media["id"])
            return PushResult(external_id=media["id"], url=self._media_url(media), created=False)

        target = self._staged_target(asset)
        self._upload(target, asset)
        data = self._graphql(PRODUCT_UPDATE_MEDIA, {
            "product": {"id": gid},
            "media": [{
                "originalSource": target["resourceUrl"],
                "alt": asset.alt[:ALT_MAX_CHARS].rstrip(),
                "mediaContentType": "IMAGE",
            }],
        })
        payload = data.get("productUpdate") or {}
        self._raise_user_errors(payload.get("userErrors") or [], f"productUpdate on {gid}")
        if payload.get("product") is None:
            raise NotFound(f"product {gid} not found")
        created = self._find_ours(gid, asset)
        if created is None:
            raise UpstreamError(f"productUpdate on {gid} succeeded but the new media is not on the product")
        media = self._await_media(created, gid)
        log.info("shop=%s product=%s key=%s media=%s created", self.shop_domain, gid, asset.key, media["id"])
        return PushResult(external_id=media["id"], url=self._media_url(media), created=True)

    def existing_assets(self, product_id: str) -> dict[str, str]:
        """Our media on the product: marker (the key's first 8 hex digits) -> media gid, never the merchant's.

        The shop keeps only what the file name carries, so, as with WooCommerce, that is what comes back.
        """
        found: dict[str, str] = {}
        for media in self._product_media(product_gid(product_id)):
            token = _marker(media)
            if token is not None:
                found.setdefault(token, media["id"])
        return found

    def delete_asset(self, product_id: str, external_id: str) -> bool:
        """Take one of our media off the product (detach; the file stays in the shop's Files).

        Media that is not ours is refused; media already gone is fine (a retried delete): False.
        """
        gid = product_gid(product_id)
        media = next((m for m in self._product_media(gid) if m.get("id") == external_id), None)
        if media is None:
            log.info("shop=%s product=%s media=%s already gone", self.shop_domain, gid, external_id)
            return False
        if _marker(media) is None:
            raise StoreError(f"media {external_id} on {gid} is not one of ours; not removing it")
        status = media.get("status")
        if status == "FAILED":
            # fileUpdate needs a READY file; a failed one of ours is useless, so delete it.
            data = self._graphql(FILE_DELETE, {"fileIds": [external_id]})
            self._raise_user_errors((data.get("fileDelete") or {}).get("userErrors") or [], "fileDelete")
            return True
        if status != "READY":
            raise UpstreamError(f"media {external_id} is {status}; it can be removed once READY")
        data = self._graphql(FILE_UPDATE_DETACH, {"files": [{"id": external_id, "referencesToRemove": [gid]}]})
        self._raise_user_errors((data.get("fileUpdate") or {}).get("userErrors") or [], "fileUpdate")
        log.info("shop=%s product=%s media=%s detached", self.shop_domain, gid, external_id)
        return True

    # -- steps ---------------------------------------------------------------------------------

    def _product_media(self, gid: str) -> list[dict[str, Any]]:
        """All media on the product; NotFound when the product is not there."""
        media: list[dict[str, Any]] = []
        after = None
        for _ in range(MAX_MEDIA_PAGES):
            data = self._graphql(PRODUCT_MEDIA_QUERY, {"id": gid, "after": after})
            product = data.get("product")
            if product is None:
                raise NotFound(f"product {gid} not found")
            connection = product.get("media") or {}
            media.extend(connection.get("nodes") or [])
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                break
            after = page.get("endCursor")
        return media

    def _find_ours(self, gid: str, asset: PushAsset) -> dict[str, Any] | None:
        """Our earlier media of this asset: by our marked file name, else by an earlier version's alt tag."""
        media = self._product_media(gid)
        stem = _stem(asset.filename)
        for item in media:
            name = _media_filename(item)
            # Shopify may add `_<hex>` or `-1` to a name it has seen before.
            if name and key_from_old_alt(item.get("alt")) in (None, asset.key) and _stem(name).startswith(stem):
                return item
        for item in media:
            if key_from_old_alt(item.get("alt")) == asset.key:
                return item
        return None

    def _staged_target(self, asset: PushAsset) -> dict[str, Any]:
        data = self._graphql(STAGED_UPLOADS_CREATE, {"input": [{
            "resource": "IMAGE",
            "filename": asset.filename,
            "mimeType": asset.content_type,
            "httpMethod": "POST",
        }]})
        payload = data.get("stagedUploadsCreate") or {}
        self._raise_user_errors(payload.get("userErrors") or [], "stagedUploadsCreate")
        targets = payload.get("stagedTargets") or []
        if not targets or not targets[0].get("url") or not targets[0].get("resourceUrl"):
            raise UpstreamError("stagedUploadsCreate returned no upload target")
        return targets[0]

    def _upload(self, target: dict[str, Any], asset: PushAsset) -> None:
        """Send the bytes to the staged target as it asks: a POST form (parameters, then the file)."""
        params = [(p["name"], p["value"]) for p in target.get("parameters") or []]
        try:
            # No Shopify token here: the target is a storage bucket, not the shop.
            response = self._session.post(
                target["url"],
                files=[(name, (None, value)) for name, value in params]
                + [("file", (asset.filename, asset.data, asset.content_type))],
                timeout=self.timeout_s,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise UpstreamError("staged upload timed out") from exc
        except requests.RequestException as exc:
            raise UpstreamError(f"staged upload failed: {type(exc).__name__}") from exc
        if 200 <= response.status_code < 300:
            return
        detail = f"staged upload answered HTTP {response.status_code}: {response.text[:200]}"
        # A 5xx, 408 or 429 is the bucket's trouble; any other 4xx means the upload itself was refused.
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise UpstreamError(detail)
        raise StoreError(detail)

    def _await_media(self, media: dict[str, Any], gid: str) -> dict[str, Any]:
        """Follow the media until READY (returned) or FAILED (MediaFailed); bounded."""
        for attempt in range(MEDIA_POLLS + 1):
            status = media.get("status")
            if status == "READY":
                return media
            if status == "FAILED":
                reasons = _errors_text(media.get("mediaErrors") or []) or "no reason given"
                raise MediaFailed(f"Shopify could not process media {media['id']} on {gid}: {reasons}")
            if attempt == MEDIA_POLLS:
                break
            self._sleep(MEDIA_POLL_DELAYS_S[min(attempt, len(MEDIA_POLL_DELAYS_S) - 1)])
            node = self._graphql(MEDIA_NODE_QUERY, {"id": media["id"]}).get("node")
            if node is None:
                raise UpstreamError(f"media {media['id']} on {gid} disappeared while processing")
            media = node
        # The media is on the product under our marked file name: a retry finds it and waits again.
        raise UpstreamError(f"media {media['id']} on {gid} is still {media.get('status')}")

    @staticmethod
    def _media_url(media: dict[str, Any]) -> str:
        return ((media.get("image") or {}).get("url")) or ""

    @staticmethod
    def _raise_user_errors(errors: list[dict[str, Any]], what: str) -> None:
        if not errors:
            return
        text = _errors_text(errors)
        if any(_NOT_FOUND_WORDS.search(str(e.get("message") or "")) for e in errors):
            raise NotFound(f"{what}: {text}")
        raise StoreError(f"{what}: {text}")

    # -- transport -----------------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """The HTTP session: it carries no credential (the token goes on each GraphQL request only)."""
        return self._session

    def graphql(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        """One GraphQL document's `data`, with this connector's throttling, token refresh and error mapping."""
        return self._graphql(document, variables)

    def _graphql(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        """POST one GraphQL document; waits out throttling (bounded), refreshes the token once on 401."""
        waits = 0
        refreshed = False
        while True:
            try:
                response = self._session.post(
                    self.endpoint,
                    json={"query": document, "variables": variables},
                    headers={"X-Shopify-Access-Token": self._token, "Accept": "application/json"},
                    timeout=self.timeout_s,
                    allow_redirects=False,
                )
            except requests.Timeout as exc:
                raise UpstreamError(f"Shopify ({self.shop_domain}) timed out") from exc
            except requests.RequestException as exc:
                raise UpstreamError(f"cannot reach Shopify ({self.shop_domain}): {type(exc).__name__}") from exc

            status = response.status_code
            if status == 401:
                if self._refresh_token is not None and not refreshed:
                    refreshed = True
                    new_token = self._refresh_token()
                    if new_token:
                        self._token = new_token
                        log.info("shop=%s access token refreshed after 401", self.shop_domain)
                        continue
                raise AuthRevoked(f"Shopify ({self.shop_domain}) refused our access token (HTTP 401)")
            if status == 403:
                raise AuthRevoked(f"Shopify ({self.shop_domain}) denied access (HTTP 403); the app may lack a scope")
            if status in (429, 503):
                wait = self._retry_after(response)
                if waits >= self.max_throttle_waits:
                    raise RateLimited(f"Shopify ({self.shop_domain}) answered HTTP {status}", retry_after_s=wait)
                waits += 1
                log.info("shop=%s HTTP %s wait_s=%.2f attempt=%s", self.shop_domain, status, wait, waits)
                self._sleep(wait)
                continue
            if status >= 500:
                raise UpstreamError(f"Shopify ({self.shop_domain}) answered HTTP {status}")
            if status != 200:
                raise StoreError(f"Shopify ({self.shop_domain}) answered HTTP {status}: {response.text[:200]}")
            try:
                body = response.json()
            except ValueError as exc:
                raise UpstreamError(f"Shopify ({self.shop_domain}) answered with something other than JSON") from exc
            if not isinstance(body, dict):
                raise UpstreamError(f"Shopify ({self.shop_domain}) answered with an unexpected JSON shape")

            errors = body.get("errors") or []
            if isinstance(errors, str):  # older error shape: {"errors": "message"}
                errors = [{"message": errors}]
            codes = {((e.get("extensions") or {}).get("code")) for e in errors if isinstance(e, dict)}
            if "THROTTLED" in codes:
                wait = self._throttle_wait(body)
                if waits >= self.max_throttle_waits:
                    raise RateLimited(f"Shopify ({self.shop_domain}) throttled the request", retry_after_s=wait)
                waits += 1
                log.info("shop=%s THROTTLED wait_s=%.2f attempt=%s", self.shop_domain, wait, waits)
                self._sleep(wait)
                continue
            if errors:
                text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
                if codes & {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}:
                    raise UpstreamError(f"Shopify ({self.shop_domain}) failed: {text}")
                if "ACCESS_DENIED" in codes:
                    raise AuthRevoked(f"Shopify ({self.shop_domain}) denied access: {text}")
                raise StoreError(f"Shopify ({self.shop_domain}) refused the request: {text}")
            data = body.get("data")
            if not isinstance(data, dict):
                raise UpstreamError(f"Shopify ({self.shop_domain}) answered without data")
            return data

    @staticmethod
    def _retry_after(response: requests.Response) -> float:
        try:
            value = float(response.headers.get("Retry-After", ""))
        except ValueError:
            value = DEFAULT_RETRY_AFTER_S
        return min(max(value, 0.0), MAX_THROTTLE_WAIT_S)

    @staticmethod
    def _throttle_wait(body: dict[str, Any]) -> float:
        """Seconds until the cost bucket holds what the query asked for: missing points / restore rate."""
        cost = (body.get("extensions") or {}).get("cost") or {}
        throttle = cost.get("throttleStatus") or {}
        try:
            requested = float(cost.get("requestedQueryCost") or 0)
            available = float(throttle.get("currentlyAvailable") or 0)
            restore = float(throttle.get("restoreRate") or 0)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER_S
        if restore <= 0:
            return DEFAULT_RETRY_AFTER_S
        missing = max(requested - available, 1.0)
        return min(max(missing / restore, 0.1), MAX_THROTTLE_WAIT_S)
