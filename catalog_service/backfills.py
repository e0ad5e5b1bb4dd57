"""A shop's existing catalog in one action: collect the products, estimate, then feed renders a few at a time.

The database decides everything: each product is a BackfillItem whose status moves pending -> queued -> done
(or failed, skipped) in the same transaction that creates or reads its render, so a killed worker, a flushed
Redis or a restart resumes the backfill without doing any product twice. Redis only carries the renders the
feeder queued (jobs/backfill.py); the feeder keeps at most FEED_DEPTH of them per backfill, so shops take turns
on the backfill queue, and webhook and manual renders, on their own queue, go first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import math
from collections.abc import Iterable
from typing import Any

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .intake import insert_render, upsert_product
from .models import (
    Asset,
    Backfill,
    BackfillItem,
    BackfillItemStatus,
    BackfillStatus,
    Product,
    PushStatus,
    ReferenceImage,
    Render,
    RenderStatus,
    Shop,
    SourceImage,
    utcnow,
)
from .pipeline import BatchingProvider
from .scenes import presets_for
from .scenes.base import ProviderError, SceneRequest
from .schemas import ProductEvent, preset_from_settings, settings_with_defaults
from .services import Services
from .shop_settings import spent_this_month
from .stores.catalog import CatalogFilters

FEED_DEPTH = 2
"""Backfill renders queued at once per backfill: enough to keep a worker busy, small enough that shops alternate."""
MAX_PRODUCTS_PER_CALL = 5000
"""Products a generic shop may send in one call."""
DEFAULT_SECONDS_PER_PRODUCT = 3.0
"""Time per product for the estimate before this service has measured any render."""
MAX_REFERENCES_PRICED = 8
"""Reference photos counted into a scene's estimate (a render hands at most this many to a scene)."""
THROUGHPUT_SAMPLE = 50
"""Recent renders whose durations measure the throughput."""

_ACTIVE_ITEMS = (BackfillItemStatus.PENDING, BackfillItemStatus.QUEUED)
_FINISHED_RENDERS = (RenderStatus.SUCCEEDED, RenderStatus.PARTIAL, RenderStatus.FAILED, RenderStatus.CANCELLED)


class BackfillError(Exception):
    """What was asked cannot be done to this backfill now (`status` is the HTTP status that says so)."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def matches(filters: CatalogFilters, event: ProductEvent) -> bool:
    """Whether a product passes the filters that can be checked on the product itself (a generic shop's products,
    which no platform filtered)."""
    if filters.product_type and event.product_type.casefold() != filters.product_type.casefold():
        return False
    if filters.vendor and event.vendor.casefold() != filters.vendor.casefold():
        return False
    return filters.has_tag(event.tags)


@dataclasses.dataclass(frozen=True)
class Costing:
    """What one product of this backfill costs and takes, worked out by the caller from the shop's provider."""

    scenes: int
    usd_per_product: float
    batch: bool = False  # scenes at the Batch API's half price
    provider: str = "compositor"
    model: str = ""
    quality: str = ""


def costing_for(session: Session, backfill: Backfill, services: Services) -> Costing:
    """What one product of this backfill costs at the shop's provider, model and quality, scene by scene."""
    shop = session.get(Shop, backfill.shop_id)
    assert shop is not None
    settings = settings_with_defaults(shop.settings)
    provider_name = settings["provider"] or services.config.scene_provider
    custom = {p["name"]: preset_from_settings(p, settings["image_ratio"]) for p in settings["presets"]}
    presets = presets_for(list(backfill.scenes) or settings["scene_presets"], provider=provider_name,
                          brand_color=settings["brand_color"], custom=custom, image_ratio=settings["image_ratio"])
    references = tuple(services.storage.get(key) for key in session.scalars(
        select(ReferenceImage.storage_key).where(ReferenceImage.shop_id == shop.id).order_by(ReferenceImage.id)
        .limit(MAX_REFERENCES_PRICED)))
    try:
        provider = services.provider(settings["provider"])
    except ProviderError:
        return Costing(scenes=0, usd_per_product=0.0, provider=provider_name)  # it makes no scene: none is paid
    # Backfill scenes on OpenAI wait for a batch, at the Batch API's price (jobs/batches.py).
    batching = provider if services.config.openai_batch and isinstance(provider, BatchingProvider) else None
    usd, made = 0.0, 0
    for preset in presets:
        if preset.style == "reference" and not references:
            continue  # not made without a reference photo
        request = SceneRequest(cutout_png=_placeholder_cutout(), preset=preset, references=references,
                               model=settings["model"])
        try:
            usd += batching.estimate_cost(request, batch=True) if batching else provider.estimate_cost(request)
        except ProviderError:
            continue  # a preset the provider refuses is not made, so it costs nothing
        made += 1
    paid = provider_name == "openai"
    return Costing(scenes=made, usd_per_product=usd, provider=provider_name, batch=batching is not None and made > 0,
                   model=(settings["model"] or services.config.openai_model) if paid else "",
                   quality=",".join(sorted({preset.quality for preset in presets})) if paid else "")


@functools.cache
def _placeholder_cutout() -> bytes:
    """A small transparent PNG standing in for a cutout when only the price of a scene is asked."""
    out = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(out, "PNG")
    return out.getvalue()


def create(session: Session, shop: Shop, *, filters: dict[str, Any], scenes: list[str], dry_run: bool) -> Backfill:
    """A new backfill, collecting. Only one backfill per shop may be unfinished at a time."""
    unfinished = session.scalar(select(Backfill.id).where(
        Backfill.shop_id == shop.id,
        Backfill.status.in_([BackfillStatus.COLLECTING, BackfillStatus.RUNNING, BackfillStatus.PAUSED])))
    if unfinished is not None:
        raise BackfillError(f"Backfill {unfinished} of this shop is still under way: pause, finish or cancel it "
                            "before starting another.")
    backfill = Backfill(shop_id=shop.id, filters=filters, scenes=scenes, dry_run=dry_run)
    session.add(backfill)
    session.flush()
    return backfill


def add_products(session: Session, backfill: Backfill, events: Iterable[ProductEvent]) -> int:
    """Record the shop's products and make each one an item of the backfill (once); returns how many were new
    to it. Filters a source could not apply are applied here."""
    if backfill.status not in (BackfillStatus.COLLECTING, BackfillStatus.READY):
        raise BackfillError("Products can be added only before the backfill starts.")
    filters = CatalogFilters.from_dict(backfill.filters)
    known = set(session.scalars(select(BackfillItem.product_id).where(BackfillItem.backfill_id == backfill.id)))
    added = 0
    for event in events:
        if not matches(filters, event):
            continue
        upserted = upsert_product(session, backfill.shop_id, event)
        if upserted is None:
            continue  # an older copy of a product we already hold newer: keep ours
        product_id = upserted[0]
        if product_id in known:
            continue
        known.add(product_id)
        session.add(BackfillItem(backfill_id=backfill.id, product_id=product_id))
        added += 1
    session.flush()
    return added


def add_known_products(session: Session, backfill_id: int) -> int:
    """Make every product we hold for the shop (not deleted, passing the filters) an item of the backfill: a
    generic shop's catalog as its webhooks told us about it."""
    backfill = session.get(Backfill, backfill_id)
    assert backfill is not None
    filters = CatalogFilters.from_dict(backfill.filters)
    known = set(session.scalars(select(BackfillItem.product_id).where(BackfillItem.backfill_id == backfill.id)))
    added = 0
    for product in session.scalars(select(Product).where(Product.shop_id == backfill.shop_id,
                                                         Product.deleted.is_(False)).order_by(Product.id)):
        event = ProductEvent(action="create", product_id=product.external_id, product_type=product.product_type,
                             vendor=product.vendor, tags=tuple(product.tags))
        if product.id in known or not matches(filters, event):
            continue
        session.add(BackfillItem(backfill_id=backfill.id, product_id=product.id))
        added += 1
    session.flush()
    return added


def collected(session: Session, backfill: Backfill, costing: Costing, *, now: dt.datetime | None = None) -> None:
    """Collection is over: skip what needs no work, write the estimate; a backfill that is not a dry run starts."""
    shop = session.get(Shop, backfill.shop_id)
    assert shop is not None
    _mark_skips(session, backfill, shop)
    backfill.estimate = estimate(session, backfill, costing)
    backfill.status = BackfillStatus.READY
    if not backfill.dry_run:
        start(session, backfill, now=now)


def estimate(session: Session, backfill: Backfill, costing: Costing) -> dict[str, Any]:
    """Products, images, scenes, cost and time for what this backfill still has to do, before anything is spent."""
    counts = item_counts(session, backfill.id)
    todo = counts["pending"] + counts["queued"]
    images = session.scalar(
        select(func.count(SourceImage.id)).join(BackfillItem, BackfillItem.product_id == SourceImage.product_id)
        .where(BackfillItem.backfill_id == backfill.id, BackfillItem.status.in_(_ACTIVE_ITEMS))) or 0
    seconds = seconds_per_product(session)
    return {
        "products": todo, "images": int(images), "scenes": todo * costing.scenes,
        "cost_usd": round(todo * costing.usd_per_product, 4),
        "usd_per_product": round(costing.usd_per_product, 6),
        "provider": costing.provider, "model": costing.model, "quality": costing.quality,
        "batch_price": costing.batch, "seconds_per_product": round(seconds, 2), "time_s": round(todo * seconds),
    }


def seconds_per_product(session: Session) -> float:
    """The median time of this service's recent renders: the measured throughput of one worker."""
    rows = session.execute(
        select(Render.started_at, Render.finished_at)
        .where(Render.status.in_([RenderStatus.SUCCEEDED, RenderStatus.PARTIAL]), Render.finished_at.is_not(None),
               Render.started_at.is_not(None))
        .order_by(Render.id.desc()).limit(THROUGHPUT_SAMPLE)).all()
    durations = sorted((finished - started).total_seconds() for started, finished in rows if started and finished)
    if not durations:
        return DEFAULT_SECONDS_PER_PRODUCT
    return max(0.05, durations[len(durations) // 2])


def start(session: Session, backfill: Backfill, *, now: dt.datetime | None = None) -> None:
    if backfill.status != BackfillStatus.READY:
        raise BackfillError(f"Only a backfill that is ready can start; this one is {backfill.status.value}.")
    backfill.status, backfill.started_at = BackfillStatus.RUNNING, now or utcnow()
    backfill.dry_run = False


def pause(session: Session, backfill: Backfill, *, reason: str | None = None) -> None:
    """Pause: renders already queued finish, no more are queued."""
    if backfill.status != BackfillStatus.RUNNING:
        raise BackfillError(f"Only a running backfill can be paused; this one is {backfill.status.value}.")
    backfill.status, backfill.pause_reason = BackfillStatus.PAUSED, reason


def resume(session: Session, backfill: Backfill) -> None:
    if backfill.status != BackfillStatus.PAUSED:
        raise BackfillError(f"Only a paused backfill can be resumed; this one is {backfill.status.value}.")
    backfill.status, backfill.pause_reason = BackfillStatus.RUNNING, None


def cancel(session: Session, backfill: Backfill, *, now: dt.datetime | None = None) -> None:
    """Cancel: products not yet queued are dropped; renders already queued finish (they may be paid already)."""
    if backfill.status.is_finished:
        raise BackfillError(f"This backfill is already {backfill.status.value}.")
    backfill.status, backfill.finished_at = BackfillStatus.CANCELLED, now or utcnow()
    session.query(BackfillItem).filter(
        BackfillItem.backfill_id == backfill.id, BackfillItem.status == BackfillItemStatus.PENDING,
    ).update({BackfillItem.status: BackfillItemStatus.SKIPPED}, synchronize_session=False)


def feed(session: Session, backfill: Backfill, *, budget_usd: float | None = None,
         now: dt.datetime | None = None) -> list[int]:
    """Bring the backfill up to date and queue its next products: returns the render ids to enqueue after commit.

    Items whose render finished are marked done or failed; the backfill ends when none is left. A running
    backfill gets new renders up to FEED_DEPTH queued, unless the next product would pass the shop's monthly
    budget: then it pauses, saying so, and the next feed after the budget is raised or the month turns
    resumes it.
    """
    now = now or utcnow()
    _reconcile(session, backfill)
    if backfill.status == BackfillStatus.PAUSED and backfill.pause_reason == BUDGET_PAUSE:
        if _budget_allows(session, backfill, budget_usd, now):
            backfill.status, backfill.pause_reason = BackfillStatus.RUNNING, None
    if backfill.status != BackfillStatus.RUNNING:
        return []
    counts = item_counts(session, backfill.id)
    if counts["pending"] == 0 and counts["queued"] == 0:
        backfill.status, backfill.finished_at = BackfillStatus.DONE, now
        return []
    # A render waiting for its scenes' batch holds no worker: it does not count toward the queue depth, so the
    # next products go on making their cutouts meanwhile (the budget still counts it, below).
    room = FEED_DEPTH - counts["queued"] + _waiting(session, backfill.id)
    if room <= 0 or counts["pending"] == 0:
        return []
    # Queue only what the budget still covers: a render queued past it would skip its paid scenes and count as done.
    affordable = _affordable(session, backfill, budget_usd, now, queued=counts["queued"])
    if affordable is not None and affordable < 1:
        backfill.status, backfill.pause_reason = BackfillStatus.PAUSED, BUDGET_PAUSE
        return []
    if affordable is not None:
        room = min(room, affordable)
    items = session.scalars(
        select(BackfillItem).where(BackfillItem.backfill_id == backfill.id,
                                   BackfillItem.status == BackfillItemStatus.PENDING)
        .order_by(BackfillItem.id).limit(room).with_for_update(skip_locked=True)).all()
    options: dict[str, Any] = {"backfill_id": backfill.id}
    if backfill.scenes:
        options["scenes"] = list(backfill.scenes)
    render_ids = []
    for item in items:
        render_id = insert_render(session, backfill.shop_id, item.product_id, trigger="backfill", options=options)
        item.status, item.render_id = BackfillItemStatus.QUEUED, render_id
        render_ids.append(render_id)
    session.flush()
    return render_ids


BUDGET_PAUSE = ("Paused at this month's budget: raise the monthly budget in Settings to go on now, or it goes on "
                "by itself when the month turns.")


def _budget_allows(session: Session, backfill: Backfill, budget_usd: float | None, now: dt.datetime,
                   *, queued: int = 0) -> bool:
    """Whether one more product (besides those queued) fits in what the shop may still spend this month."""
    affordable = _affordable(session, backfill, budget_usd, now, queued=queued)
    return affordable is None or affordable >= 1


def _affordable(session: Session, backfill: Backfill, budget_usd: float | None, now: dt.datetime,
                *, queued: int = 0) -> int | None:
    """How many more products (besides those queued) fit in what the shop may still spend this month, at the
    estimated price of one; None when nothing limits them (no budget, or products that cost nothing)."""
    per_product = float(backfill.estimate.get("usd_per_product") or 0.0)
    if budget_usd is None or per_product <= 0:
        return None
    spent = spent_this_month(session, backfill.shop_id, now)
    # The tolerance keeps a budget of exactly n products from reading as n - 1 after float rounding.
    return max(0, math.floor((budget_usd - spent) / per_product + 1e-9) - queued)


def _waiting(session: Session, backfill_id: int) -> int:
    """The backfill's queued items whose render waits for a batch."""
    return int(session.scalar(
        select(func.count(BackfillItem.id)).join(Render, Render.id == BackfillItem.render_id)
        .where(BackfillItem.backfill_id == backfill_id, BackfillItem.status == BackfillItemStatus.QUEUED,
               Render.status == RenderStatus.WAITING)) or 0)


def _reconcile(session: Session, backfill: Backfill) -> None:
    """Queued items whose render has finished become done or failed, with what the render cost."""
    rows = session.execute(
        select(BackfillItem, Render.status)
        .join(Render, Render.id == BackfillItem.render_id)
        .where(BackfillItem.backfill_id == backfill.id, BackfillItem.status == BackfillItemStatus.QUEUED,
               Render.status.in_(_FINISHED_RENDERS))).all()
    for item, status in rows:
        item.status = (BackfillItemStatus.DONE if status in (RenderStatus.SUCCEEDED, RenderStatus.PARTIAL)
                       else BackfillItemStatus.FAILED)
        item.cost_usd = float(session.scalar(
            select(func.coalesce(func.sum(Asset.cost_usd), 0.0)).where(Asset.render_id == item.render_id)) or 0.0)
    # An item whose render row is gone (deleted with its product) cannot finish: it failed.
    session.query(BackfillItem).filter(
        BackfillItem.backfill_id == backfill.id, BackfillItem.status == BackfillItemStatus.QUEUED,
        BackfillItem.render_id.is_(None),
    ).update({BackfillItem.status: BackfillItemStatus.FAILED}, synchronize_session=False)
    session.flush()


def _mark_skips(session: Session, backfill: Backfill, shop: Shop) -> None:
    """Skip products with no photo, those done before with the same photos and settings, and (when the filter
    asks) those already carrying our images. Every other item gets its fingerprint."""
    settings = settings_with_defaults(shop.settings)
    filters = CatalogFilters.from_dict(backfill.filters)
    items = session.scalars(select(BackfillItem).where(
        BackfillItem.backfill_id == backfill.id, BackfillItem.status == BackfillItemStatus.PENDING)).all()
    for item in items:
        product = session.get(Product, item.product_id)
        assert product is not None
        item.fingerprint = fingerprint(product, settings, backfill.scenes)
        if not product.images:
            item.status = BackfillItemStatus.SKIPPED
        elif filters.without_our_images and _has_our_images(session, product.id):
            item.status = BackfillItemStatus.SKIPPED
        elif session.scalar(select(BackfillItem.id).where(
                BackfillItem.product_id == product.id, BackfillItem.fingerprint == item.fingerprint,
                BackfillItem.status == BackfillItemStatus.DONE, BackfillItem.id != item.id).limit(1)) is not None:
            item.status = BackfillItemStatus.SKIPPED
    session.flush()


def _has_our_images(session: Session, product_id: int) -> bool:
    return session.scalar(
        select(Asset.id).join(Render, Render.id == Asset.render_id)
        .where(Render.product_id == product_id, Asset.push_status == PushStatus.PUSHED).limit(1)) is not None


def fingerprint(product: Product, settings: dict[str, Any], scenes: list[str]) -> str:
    """What a product's render depends on: its photos and the settings that shape what is made."""
    shaping = {key: settings.get(key) for key in (
        "cutout", "brand_color", "provider", "model", "presets", "image_ratio", "alt_template")}
    shaping["scenes"] = list(scenes) or settings.get("scene_presets")
    photos = [(image.external_id, image.src) for image in product.images]
    text = json.dumps({"photos": photos, "settings": shaping}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_counts(session: Session, backfill_id: int) -> dict[str, int]:
    counts = {status.value: 0 for status in BackfillItemStatus}
    for status, count in session.execute(
            select(BackfillItem.status, func.count()).where(BackfillItem.backfill_id == backfill_id)
            .group_by(BackfillItem.status)).all():
        counts[BackfillItemStatus(status).value] = count
    return counts


def progress(session: Session, backfill: Backfill) -> dict[str, Any]:
    """The backfill as the API and the page show it."""
    counts = item_counts(session, backfill.id)
    remaining = counts["pending"] + counts["queued"]
    cost = session.scalar(select(func.coalesce(func.sum(BackfillItem.cost_usd), 0.0))
                          .where(BackfillItem.backfill_id == backfill.id)) or 0.0
    seconds = float(backfill.estimate.get("seconds_per_product") or DEFAULT_SECONDS_PER_PRODUCT)
    running = backfill.status in (BackfillStatus.RUNNING, BackfillStatus.COLLECTING)
    return {
        "id": backfill.id, "shop_id": backfill.shop_id, "status": backfill.status.value,
        "dry_run": backfill.dry_run, "filters": backfill.filters, "scenes": backfill.scenes,
        "total": sum(counts.values()), "done": counts["done"], "failed": counts["failed"],
        "skipped": counts["skipped"], "queued": counts["queued"], "remaining": remaining,
        "cost_usd": round(float(cost), 4), "estimate": backfill.estimate or None,
        "eta_s": round(remaining * seconds) if running else None,
        "pause_reason": backfill.pause_reason, "error": backfill.error,
        "created_at": backfill.created_at.isoformat() if backfill.created_at else None,
        "started_at": backfill.started_at.isoformat() if backfill.started_at else None,
        "finished_at": backfill.finished_at.isoformat() if backfill.finished_at else None,
    }
