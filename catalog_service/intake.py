"""ProductEvent -> Render: dedupe the delivery, upsert the product, decide, create the Render.

All of it happens in the caller's transaction; the caller enqueues after commit, so a job never
points at a row that was rolled back, and a committed Render whose message is lost is found again
in the database.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import (
    Asset, Delivery, Product, ReferenceImage, Render, RenderStatus, Shop, SourceImage, UsageRecord, utcnow,
)
from .schemas import ProductEvent, settings_with_defaults
from .storage import AssetStorage
from .stores.base import is_our_filename


@dataclasses.dataclass(frozen=True)
class IntakeResult:
    outcome: str  # duplicate | ignored | deleted | render
    render_id: int | None = None
    reason: str = ""


DUPLICATE = IntakeResult("duplicate", reason="this delivery was already received")


def record_delivery(
    session: Session, shop: Shop, *, delivery_key: str, topic: str, product_id: str | None = None
) -> Delivery | None:
    """The Delivery row for a webhook, or None when this delivery was already received."""
    delivery = Delivery(
        shop_id=shop.id, platform=shop.platform, delivery_key=delivery_key[:255], topic=topic[:64],
        product_external_id=product_id,
    )
    try:
        # The unique key is the dedupe: a savepoint lets a duplicate fail alone, not the whole transaction.
        with session.begin_nested():
            session.add(delivery)
            session.flush()
    except IntegrityError:
        return None
    return delivery


def accept(session: Session, shop: Shop, event: ProductEvent, *, delivery_key: str, topic: str) -> IntakeResult:
    """Record one product webhook and act on it once. A repeated delivery_key is a no-op."""
    delivery = record_delivery(session, shop, delivery_key=delivery_key, topic=topic, product_id=event.product_id)
    if delivery is None:
        return DUPLICATE
    result = _decide_and_apply(session, shop, event)
    delivery.outcome = result.outcome
    delivery.render_id = result.render_id
    return result


def accept_shop_event(session: Session, shop: Shop, *, delivery_key: str, topic: str) -> IntakeResult:
    """A webhook about the shop rather than a product (uninstall, privacy requests)."""
    delivery = record_delivery(session, shop, delivery_key=delivery_key, topic=topic)
    if delivery is None:
        return DUPLICATE
    if topic == "app/uninstalled":
        result = IntakeResult("deactivated", reason=f"{cancel_pending(session, shop.id)} pending render(s) cancelled")
        shop.active = False
    else:
        # customers/data_request and customers/redact: we keep no customer data, so there is nothing to
        # send or erase; the delivery row is the record that the request was received and answered.
        result = IntakeResult("noted", reason="this service stores no customer data")
    delivery.outcome = result.outcome
    return result


def cancel_pending(session: Session, shop_id: int, product_id: int | None = None) -> int:
    """Mark the shop's (or one product's) queued renders cancelled; their jobs then do nothing."""
    query = select(Render).where(Render.shop_id == shop_id, Render.status == RenderStatus.QUEUED)
    if product_id is not None:
        query = query.where(Render.product_id == product_id)
    renders = session.scalars(query).all()
    for render in renders:
        render.status = RenderStatus.CANCELLED
        render.last_error = "cancelled before it started"
        render.finished_at = utcnow()
    return len(renders)


def redact_shop(session: Session, storage: AssetStorage, shop: Shop) -> int:
    """Delete everything we hold for a shop, rows and stored files. Returns how many files were removed."""
    keys = set(session.scalars(select(Asset.storage_key).where(Asset.shop_id == shop.id)))
    keys |= set(session.scalars(select(ReferenceImage.storage_key).where(ReferenceImage.shop_id == shop.id)))
    # Content-addressed files may be shared with another shop that stored the same bytes: keep those.
    shared = set(session.scalars(select(Asset.storage_key).where(Asset.shop_id != shop.id, Asset.storage_key.in_(keys))))
    shared |= set(session.scalars(
        select(ReferenceImage.storage_key).where(ReferenceImage.shop_id != shop.id, ReferenceImage.storage_key.in_(keys))
    ))
    for model in (UsageRecord, Delivery, Asset, Render, ReferenceImage, SourceImage, Product):
        session.execute(delete(model).where(model.shop_id == shop.id))
    session.delete(shop)
    session.flush()
    removed = keys - shared
    for key in removed:
        storage.delete(key)
    return len(removed)


def _decide_and_apply(session: Session, shop: Shop, event: ProductEvent) -> IntakeResult:
    product = session.scalar(
        select(Product).where(Product.shop_id == shop.id, Product.external_id == event.product_id)
    )
    if event.action == "delete":
        if product is None:
            return IntakeResult("deleted", reason="the product was not known")
        product.deleted = True
        cancelled = cancel_pending(session, shop.id, product.id)
        return IntakeResult("deleted", reason=f"{cancelled} pending render(s) cancelled")

    event = without_our_images(session, product, event)

    settings = settings_with_defaults(shop.settings)
    is_new = product is None
    product, images_changed = upsert_product(session, shop, event, product)
    if not shop.active:
        return IntakeResult("ignored", reason="the shop is not active")
    if not product.images:
        return IntakeResult("ignored", reason="the product has no images")
    if not is_new and not images_changed:
        # Also covers a second "create" for a product we already have: same photos, nothing new to make.
        return IntakeResult("ignored", reason="the product's images did not change")
    if is_new or event.action == "create":
        if not settings["auto_generate"]:
            return IntakeResult("ignored", reason="auto-generate is off")
    elif settings["on_update"] == "ignore":
        return IntakeResult("ignored", reason="updates are ignored by the shop's settings")
    render = request_render(session, shop, product, trigger="webhook")
    return IntakeResult("render", render_id=render.id)


def without_our_images(session: Session, product: Product | None, event: ProductEvent) -> ProductEvent:
    """The event minus the images we pushed ourselves, so our own push never triggers another render."""
    known: set[str | None] = set()
    if product is not None:
        known = set(session.scalars(
            select(Asset.external_id).join(Render, Asset.render_id == Render.id)
            .where(Render.product_id == product.id, Asset.external_id.is_not(None))
        ))
    theirs = tuple(image for image in event.images
                   if image.external_id not in known and not is_our_filename(image.src))
    return event if len(theirs) == len(event.images) else dataclasses.replace(event, images=theirs)


def upsert_product(
    session: Session, shop: Shop, event: ProductEvent, product: Product | None
) -> tuple[Product, bool]:
    """Create or update the product and its source images. Also says whether the image set changed."""
    if product is None:
        product = Product(shop_id=shop.id, external_id=event.product_id)
        session.add(product)
    product.title = event.title
    product.description = event.description
    product.product_type = event.product_type
    product.vendor = event.vendor
    product.tags = list(event.tags)
    product.deleted = False

    before = {(image.external_id, image.src) for image in product.images}
    after = {(image.external_id, image.src) for image in event.images}
    if before != after:
        product.images.clear()
        session.flush()
        for position, ref in enumerate(event.images):
            product.images.append(
                SourceImage(shop_id=shop.id, external_id=ref.external_id, src=ref.src, alt=ref.alt, position=position)
            )
    else:
        # Same images; alt text and order may still have changed.
        by_key = {(ref.external_id, ref.src): (i, ref) for i, ref in enumerate(event.images)}
        for image in product.images:
            position, ref = by_key[(image.external_id, image.src)]
            image.position, image.alt = position, ref.alt
    session.flush()
    return product, before != after


def request_render(
    session: Session, shop: Shop, product: Product, *, trigger: str, options: dict[str, Any] | None = None
) -> Render:
    """A queued Render row for the product; the caller enqueues its job after commit."""
    render = Render(
        shop_id=shop.id, product_id=product.id, status=RenderStatus.QUEUED, trigger=trigger, options=options or {}
    )
    session.add(render)
    session.flush()
    return render
