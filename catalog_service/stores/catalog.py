"""Listing a shop's existing catalog: the filters, the listing's errors, and how the listing is consumed.

A listing is an iterator of `ProductEvent` (action "create"), normalised exactly as the platform's product
webhook would be (`webhooks/shopify.py`, `webhooks/woocommerce.py`), so the backfill feeds each one to the
same intake. Products come out as they are read: nothing here holds the whole catalog in memory, so a
caller counts by consuming, and may stop early.

Who lists what:
- Shopify (`stores/shopify_bulk.py: ShopifyBulkCatalog`): a bulk operation in three steps the job layer
  drives (`start(filters)`, `status(id)` until done, `read(url)`), so no call blocks while Shopify works.
- WooCommerce (`WooCommerceStore.list_products(filters)`): the paged products endpoint, read page by page.

Errors are the `StoreError` family of `stores/base.py` plus the listing kinds below. `retryable` keeps its
meaning (the same call may work later); `start_again` says that a NEW listing may work where this one cannot
(an expired result, a cancelled or timed-out operation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

from catalog_service.schemas import ProductEvent
from catalog_service.stores.base import StoreError

STATUSES = ("active", "draft", "archived", "any")
"""Product statuses a listing can ask for. Shopify names them ACTIVE, DRAFT, ARCHIVED; WooCommerce's
publish, draft (and pending), private: see `woocommerce_status`."""
MAX_FILTER_CHARS = 255
"""A product type, vendor, tag or collection longer than this is not one: both platforms cap them near it."""

ProductListing = Iterator[ProductEvent]
"""What a listing gives: products as they are read, each a ProductEvent with action "create"."""


@dataclasses.dataclass(frozen=True)
class CatalogFilters:
    """Which of a shop's existing products a backfill takes. Empty text means "any".

    `collection` is Shopify's: a collection id (number or gid) or its handle. On WooCommerce it names a
    product category (id, slug or name), the nearest thing WooCommerce has. `without_our_images` is only
    carried: whether a product already has our images is known from our database, not the shop.
    """

    product_type: str = ""
    vendor: str = ""
    tag: str = ""
    collection: str = ""
    status: str = "active"
    created_since: dt.datetime | None = None
    without_our_images: bool = False

    def __post_init__(self) -> None:
        for name in ("product_type", "vendor", "tag", "collection"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"filter {name} must be text")
            value = value.strip()
            if len(value) > MAX_FILTER_CHARS or "\x00" in value:
                raise ValueError(f"filter {name} must be at most {MAX_FILTER_CHARS} characters of text")
            object.__setattr__(self, name, value)
        if self.status not in STATUSES:
            raise ValueError(f"filter status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.created_since is not None and (
                not isinstance(self.created_since, dt.datetime) or self.created_since.utcoffset() is None):
            raise ValueError("filter created_since must be a date and time with its time zone")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a job's arguments or a database column; `from_dict` reads it back."""
        data = dataclasses.asdict(self)
        data["created_since"] = self.created_since.isoformat() if self.created_since else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CatalogFilters:
        """The filters `to_dict` wrote (unknown keys refused, so a typo is not silently "any")."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(unknown)}")
        values = dict(data)
        since = values.get("created_since")
        if isinstance(since, str):
            values["created_since"] = dt.datetime.fromisoformat(since)
        return cls(**values)

    def has_tag(self, tags: tuple[str, ...]) -> bool:
        """Whether a product with these tags passes the tag filter (case-insensitive, as both shops compare)."""
        return not self.tag or self.tag.casefold() in {tag.casefold() for tag in tags}


def woocommerce_status(status: str) -> str:
    """The WooCommerce `status` parameter for a filter status: active is `publish`, archived is `private`."""
    return {"active": "publish", "draft": "draft", "archived": "private", "any": "any"}[status]


class ListingFailed(StoreError):
    """The shop could not list its catalog. `code` is the platform's (Shopify's errorCode); `start_again`
    says whether a new listing may succeed; `partial_url`, when the shop kept what it had read."""

    retryable = False

    def __init__(self, message: str, *, code: str = "", start_again: bool = False,
                 partial_url: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.start_again = start_again
        self.partial_url = partial_url


class ListingExpired(ListingFailed):
    """The listing's result is no longer there (Shopify keeps it for days, not forever): list again."""

    def __init__(self, message: str, *, code: str = "EXPIRED") -> None:
        super().__init__(message, code=code, start_again=True)


class ListingTooLarge(ListingFailed):
    """The result is larger than the byte cap we read; the operator can raise the cap or narrow the filters."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="TOO_LARGE", start_again=False)
