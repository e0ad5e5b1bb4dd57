"""Backfill jobs: read a shop's catalog into the backfill (collect), and feed its renders a few at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import select

from catalog_service import backfills
from catalog_service.connectors import connector_for
from catalog_service.logs import log_context
from catalog_service.models import Backfill, BackfillStatus, Platform, Shop, utcnow
from catalog_service.schemas import ProductEvent, settings_with_defaults
from catalog_service.services import Services, current
from catalog_service.stores.base import StoreError
from catalog_service.stores.catalog import CatalogFilters, ListingFailed
from catalog_service.stores.shopify import ShopifyStore
from catalog_service.stores.shopify_bulk import ShopifyBulkCatalog
from catalog_service.stores.woocommerce import WooCommerceStore

from .common import retry_or_fail
from .queues import enqueue_render

log = logging.getLogger(__name__)

BULK_POLL_S = 1.0
"""Seconds between looks at a Shopify bulk operation while it lists the catalog."""
BULK_WAIT_S = 3600
"""How long a collect job waits for Shopify's bulk operation before it gives up."""
COLLECT_CHUNK = 500
"""Products written per transaction while collecting: a killed collect loses at most this much work."""


def collect_backfill(backfill_id: int) -> None:
    """RQ entry point: read the backfill's products from its shop, then estimate it (and start it, unless a dry run).

    Collecting again after a crash adds only the products the backfill does not hold yet.
    """
    svc = current()
    try:
        with svc.db.transaction() as session:
            backfill = session.get(Backfill, backfill_id)
            if backfill is None or backfill.status != BackfillStatus.COLLECTING:
                return
            shop = session.get(Shop, backfill.shop_id)
            assert shop is not None
            platform, filters = shop.platform, CatalogFilters.from_dict(backfill.filters)
        svc.db.remove()
        with log_context(shop=backfill.shop_id, job="collect"):
            if platform == Platform.GENERIC:
                with svc.db.transaction() as session:
                    backfills.add_known_products(session, backfill_id)
            try:
                _add_in_chunks(backfill_id, _catalog(backfill_id, platform, filters))
            except StoreError as exc:
                retry_or_fail(exc, lambda message: _collect_failed(backfill_id, message))
                return
            finish_collecting(backfill_id)
    finally:
        svc.db.remove()


def finish_collecting(backfill_id: int, svc: Services | None = None) -> list[int]:
    """Skips, estimate, start (unless a dry run), and the first renders queued; returns their ids."""
    svc = svc or current()
    with svc.db.transaction() as session:
        backfill = session.get(Backfill, backfill_id, with_for_update=True)
        if backfill is None or backfill.status != BackfillStatus.COLLECTING:
            return []
        backfills.collected(session, backfill, backfills.costing_for(session, backfill, svc))
    return feed(backfill_id, svc)


def _catalog(backfill_id: int, platform: Platform, filters: CatalogFilters) -> Iterator[ProductEvent]:
    """The shop's products, read from its platform. A generic shop's are the ones we hold (added above) or those
    sent through the API, so none are read."""
    if platform not in (Platform.SHOPIFY, Platform.WOOCOMMERCE):
        return
    svc = current()
    with svc.db.transaction() as session:
        backfill = session.get(Backfill, backfill_id)
        assert backfill is not None
        shop = session.get(Shop, backfill.shop_id)
        assert shop is not None
        connector = connector_for(shop, svc.config, svc.db)
    try:
        if isinstance(connector, ShopifyStore):
            yield from _shopify_catalog(backfill_id, ShopifyBulkCatalog(connector), filters)
        elif isinstance(connector, WooCommerceStore):
            yield from connector.list_products(filters)
    finally:
        connector.close()


def _shopify_catalog(backfill_id: int, bulk: ShopifyBulkCatalog, filters: CatalogFilters) -> Iterator[ProductEvent]:
    """A bulk operation over the shop's products: started once (its id kept, so a retry polls the same one),
    polled until Shopify has written the result, then read line by line."""
    operation_id = _source_state(backfill_id).get("operation_id")
    if operation_id is None:
        operation_id = bulk.start(filters)
        _save_source_state(backfill_id, operation_id=operation_id)
    deadline = time.monotonic() + BULK_WAIT_S
    try:
        while not (status := bulk.status(operation_id)).done:
            if time.monotonic() > deadline:
                raise ListingFailed("Shopify has not finished listing the catalog after an hour; narrow the filters "
                                    "and start again.", code="TIMEOUT", start_again=True)
            time.sleep(BULK_POLL_S)
    except ListingFailed:
        _save_source_state(backfill_id, operation_id=None)  # the next attempt starts a new operation
        raise
    yield from bulk.read(status.url, filters)


def _source_state(backfill_id: int) -> dict[str, Any]:
    with current().db.transaction() as session:
        backfill = session.get(Backfill, backfill_id)
        return dict(backfill.source_state) if backfill is not None else {}


def _save_source_state(backfill_id: int, **changes: Any) -> None:
    with current().db.transaction() as session:
        backfill = session.get(Backfill, backfill_id)
        if backfill is not None:
            backfill.source_state = {**backfill.source_state, **changes}


def _add_in_chunks(backfill_id: int, events: Iterable[ProductEvent]) -> None:
    svc = current()
    chunk: list[ProductEvent] = []

    def flush() -> None:
        with svc.db.transaction() as session:
            backfill = session.get(Backfill, backfill_id)
            if backfill is not None and backfill.status == BackfillStatus.COLLECTING:
                backfills.add_products(session, backfill, chunk)
        chunk.clear()

    for event in events:
        chunk.append(event)
        if len(chunk) >= COLLECT_CHUNK:
            flush()
    if chunk:
        flush()


def _collect_failed(backfill_id: int, message: str) -> None:
    svc = current()
    with svc.db.transaction() as session:
        backfill = session.get(Backfill, backfill_id)
        if backfill is not None and not backfill.status.is_finished:
            backfill.status, backfill.error, backfill.finished_at = BackfillStatus.FAILED, message, utcnow()


def feed(backfill_id: int, svc: Services | None = None) -> list[int]:
    """Bring one backfill up to date and queue its next renders on the backfill queue; returns their ids."""
    svc = svc or current()
    with svc.db.transaction() as session:
        # The row lock makes two feeders (the sweeper, a render that just finished) take turns.
        backfill = session.get(Backfill, backfill_id, with_for_update=True)
        if backfill is None:
            return []
        # A cancelled backfill still counts the renders it had queued as they finish (backfills.feed queues
        # nothing for a backfill that is not running).
        shop = session.get(Shop, backfill.shop_id)
        assert shop is not None
        budget = settings_with_defaults(shop.settings)["monthly_budget_usd"]
        render_ids = backfills.feed(session, backfill, budget_usd=budget)
    for render_id in render_ids:
        # A render Redis did not take stays queued in the database; the sweeper queues it again.
        enqueue_render(svc.redis, render_id, timeout_s=svc.config.render_timeout_s, backfill=True)
    return render_ids


def feed_all(svc: Services) -> int:
    """Feed every backfill that is running or waiting for the budget: the sweeper's turn. Returns renders queued."""
    with svc.db.transaction() as session:
        ids = list(session.scalars(select(Backfill.id).where(
            Backfill.status.in_([BackfillStatus.RUNNING, BackfillStatus.PAUSED])).order_by(Backfill.id)))
    return sum(len(feed(backfill_id, svc)) for backfill_id in ids)


def progress_of(backfill_id: int) -> dict[str, Any]:
    """The backfill's progress as the API shows it."""
    with current().db.transaction() as session:
        backfill = session.get(Backfill, backfill_id)
        assert backfill is not None
        return backfills.progress(session, backfill)
