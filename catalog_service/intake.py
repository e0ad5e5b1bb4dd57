"""ProductEvent -> Render: dedupe the delivery, upsert the product, decide, create the Render.

All of it happens in the caller's transaction; the caller enqueues after commit, so a job never
points at a row that was rolled back, and a committed Render whose message is lost is found again
in the database.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Delivery, Product, Render, RenderStatus, Shop, SourceImage
from .schemas import ProductEvent, settings_with_defaults


@dataclasses.dataclass(frozen=True)
class IntakeResult:
    outcome: str  # duplicate | ignored | deleted | render
    render_id: int | None = None
    reason: str = ""


def accept(session: Session, shop: Shop, event: ProductEvent, *, delivery_key: str, topic: str) -> IntakeResult:
    """Record one webhook delivery and act on it once. A repeated delivery_key is a no-op."""
    delivery = Delivery(
        shop_id=shop.id, platform=shop.platform, delivery_key=delivery_key[:255], topic=topic[:64],
        product_external_id=event.product_id,
    )
    try:
        with session.begin_nested():
            session.add(delivery)
            session.flush()
    except IntegrityError:
        return IntakeResult("duplicate", reason="this delivery was already received")

    result = _decide_and_apply(session, shop, event)
    delivery.outcome = result.outcome
    delivery.render_id = result.render_id
    return result


def _decide_and_apply(session: Session, shop: Shop, event: ProductEvent) -> IntakeResult:
    product = session.scalar(
        select(Product).where(Product.shop_id == shop.id, Product.external_id == event.product_id)
    )
    if event.action == "delete":
        if product is not None:
            product.deleted = True
        return IntakeResult("deleted")

    settings = settings_with_defaults(shop.settings)
    is_new = product is None
    images_changed = upsert_product(session, shop, event, product)
    product = session.scalar(
        select(Product).where(Product.shop_id == shop.id, Product.external_id == event.product_id)
    )
    assert product is not None
    if not shop.active:
        return IntakeResult("ignored", reason="the shop is not active")
    if not product.images:
        return IntakeResult("ignored", reason="the product has no images")
    if event.action == "create" or is_new:
        if not settings["auto_generate"]:
            return IntakeResult("ignored", reason="auto-generate is off")
    elif settings["on_update"] == "ignore":
        return IntakeResult("ignored", reason="updates are ignored by the shop's settings")
    elif not images_changed:
        return IntakeResult("ignored", reason="the product's images did not change")
    render = request_render(session, shop, product, trigger="webhook")
    return IntakeResult("render", render_id=render.id)


def upsert_product(session: Session, shop: Shop, event: ProductEvent, product: Product | None) -> bool:
    """Create or update the product and its source images. Returns whether the image set changed."""
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
    return before != after


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
