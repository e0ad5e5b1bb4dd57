"""The StoreConnector seam: one module per shop platform, each pushing our assets onto a product."""

from __future__ import annotations

import dataclasses
from typing import Protocol


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
    platform: str

    def push_asset(self, product_id: str, asset: PushAsset) -> PushResult:
        """Put the asset on the product, once: a second call with the same key creates nothing."""
        ...

    def existing_assets(self, product_id: str) -> dict[str, str]:
        """Our assets already on the product: our key -> the shop's id."""
        ...
