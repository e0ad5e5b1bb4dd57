"""The StoreConnector seam: one module per shop platform, each pushing our assets onto a product."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Protocol, Self

import requests


class StoreError(RuntimeError):
    """The shop did not take the asset. `retryable` says whether trying again later can help."""

    retryable = False


class AuthRevoked(StoreError):
    """Our credentials for the shop no longer work; the merchant must reinstall or reconnect."""


class NotFound(StoreError):
    """The product is gone from the shop."""


class RateLimited(StoreError):
    """The shop asked us to slow down."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamError(StoreError):
    """The shop failed (5xx, timeout); transient."""

    retryable = True


class NotSupported(StoreError):
    """This platform does not let us do that (take an image off a product, for one); permanent."""


@dataclasses.dataclass(frozen=True)
class PushAsset:
    """One of our assets on its way to a shop product. `key` is stable across retries."""

    key: str
    kind: str  # cutout | white | scene
    filename: str
    content_type: str
    data: bytes
    alt: str = ""


@dataclasses.dataclass(frozen=True)
class PushResult:
    """Where the shop keeps the asset now."""

    external_id: str
    url: str = ""
    created: bool = True  # False when the asset was already there (idempotent retry)


class StoreConnector(Protocol):
    """A shop platform's connector. Every method is on every connector; the flags say which optional
    abilities work, and a method whose ability is missing raises NotSupported."""

    platform: str
    can_delete: bool
    """delete_asset works: a newer render's images can replace ours, a rejected one can be taken off."""
    pushes_together: bool
    """push_all sends a render's assets in one message, all taken or none; otherwise they go one by one."""

    def push_asset(self, product_id: str, asset: PushAsset) -> PushResult:
        """Put the asset on the product, once: a second call with the same key creates nothing."""
        ...

    def push_all(self, product_id: str, assets: Sequence[PushAsset]) -> list[PushResult]:
        """Put all the assets on the product; the results in the order given."""
        ...

    def existing_assets(self, product_id: str) -> dict[str, str]:
        """Our assets already on the product: our key -> the shop's id."""
        ...

    def delete_asset(self, product_id: str, external_id: str) -> bool:
        """Take one of our assets off the product (never the merchant's); False when it was not there."""
        ...

    def close(self) -> None:
        """Release what the connector holds (its HTTP session); the push job calls it when done."""
        ...


class BaseConnector:
    """What a connector does when it says nothing else: pushes one by one, cannot delete, holds nothing."""

    platform: str
    can_delete = False
    pushes_together = False

    def push_asset(self, product_id: str, asset: PushAsset) -> PushResult:
        raise NotImplementedError

    def push_all(self, product_id: str, assets: Sequence[PushAsset]) -> list[PushResult]:
        return [self.push_asset(product_id, asset) for asset in assets]

    def delete_asset(self, product_id: str, external_id: str) -> bool:
        raise NotSupported(f"{self.platform} does not let us take images off a product; "
                           "remove it in the shop's admin.")

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class OwnsSession(BaseConnector):
    """For connectors that make their own HTTP session: close() it, or use the connector in a `with`."""

    _session_to_close: requests.Session | None = None

    def close(self) -> None:
        """Close the HTTP session, when the connector made it."""
        if self._session_to_close is not None:
            self._session_to_close.close()


# Every file we push carries this marker in its name, so when the shop tells us about the product's
# new images (Shopify and WooCommerce both send an update webhook after our own push) intake can tell
# our images from the merchant's and never renders again because of its own output.
_OUR_MARKER = re.compile(r"-cs[0-9a-f]{8}(?![0-9a-f])")


def asset_filename(product_id: str, kind: str, preset: str, content_key: str, ext: str) -> str:
    """The name a pushed asset has in the shop: readable, and marked as ours."""
    suffix = f"-{preset}" if preset else ""
    # Starting with a letter or digit: a name led by "-" or "_" is refused by stores that take plain names only.
    safe_product = re.sub(r"[^A-Za-z0-9_-]+", "-", product_id).strip("-_")[:40] or "product"
    return f"{safe_product}-{kind}{suffix}-cs{content_key[:8]}.{ext}"


def is_our_filename(url_or_name: str) -> bool:
    """Whether an image URL or file name is one we pushed (the platform may add suffixes like -1 or _abc)."""
    path = url_or_name.split("?", 1)[0].split("#", 1)[0]
    return bool(_OUR_MARKER.search(path.rsplit("/", 1)[-1]))


# Earlier versions ended the alt text of every Shopify media they made with ` [cs:<asset key>]`. Alt text is
# for people (screen readers, search engines), so nothing is added to it now; images pushed back then are
# still recognised by the tag they carry.
_OLD_ALT_TAG = re.compile(r" ?\[cs:([A-Za-z0-9._/-]{1,100})\]$")


def key_from_old_alt(alt: str | None) -> str | None:
    """The asset key in an alt text an earlier version tagged; None when the alt text carries no tag."""
    match = _OLD_ALT_TAG.search(alt or "")
    return match.group(1) if match else None
