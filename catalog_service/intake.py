"""ProductEvent -> Render: dedupe the delivery, upsert the product, decide, create the Render.

All of it happens in the caller's transaction; the caller enqueues after commit, so a job never
points at a row that was rolled back, and a committed Render whose message is lost is found again
in the database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .db import Database
from .models import (
    Asset,
    Base,
    Delivery,
    Platform,
    Product,
    ReferenceImage,
    Render,
    RenderStatus,
    Shop,
    SourceImage,
    UsageRecord,
    utcnow,
)
from .schemas import ProductEvent, setting
from .storage import AssetStorage
from .stores.base import is_our_filename, key_from_old_alt


@dataclasses.dataclass(frozen=True)
class IntakeResult:
    outcome: str  # duplicate | ignored | deleted | render
    render_id: int | None = None
    reason: str = ""


DUPLICATE = IntakeResult("duplicate", reason="this delivery was already received")
STALE = IntakeResult("ignored", reason="stale: the product changed after this delivery's updated_at")


@dataclasses.dataclass(frozen=True)
class ShopRef:
    """Which shop a delivery is for: Shopify names it by platform and domain, the others by our id in the URL."""

    id: int | None = None
    platform: Platform | None = None
    domain: str | None = None

    def __str__(self) -> str:
        return str(self.id) if self.id is not None else f"{self.platform and self.platform.value}:{self.domain}"


class UnknownShop(LookupError):
    """No active shop matches the delivery; nothing was written."""


def record_delivery(
    session: Session, shop: Shop, *, delivery_key: str, topic: str, product_id: str | None = None
) -> int | None:
    """Insert the Delivery row for a webhook and return its id, or None when it was already received.

    The unique key is the dedupe. ON CONFLICT DO NOTHING settles it in one statement, even against a
    concurrent copy of the same delivery, without a savepoint or an error to recover from.
    """
    return session.execute(_statements(session).insert_delivery, {
        "shop_id": shop.id, "platform": shop.platform, "delivery_key": delivery_key[:255], "topic": topic[:64],
        "product_external_id": product_id, "received_at": utcnow(),
    }).scalar()


def _table(model: type[Base]) -> Table:
    """The model's Table (declarative types `__table__` as the wider FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class _Statements:
    """The intake's statements, built once per dialect and executed with parameters.

    Every webhook runs these, so they are built once rather than per request. The inserts that dedupe
    (ON CONFLICT DO NOTHING) use the dialect's own insert construct; SQLite and PostgreSQL both have it.
    """

    def __init__(self, dialect: str) -> None:
        deliveries, products, images, renders = _table(Delivery), _table(Product), _table(SourceImage), _table(Render)
        dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        self.insert_delivery = (
            dialect_insert(deliveries).on_conflict_do_nothing(index_elements=["shop_id", "delivery_key"])
            .returning(deliveries.c.id)
        )
        self.finish_delivery = update(deliveries).where(deliveries.c.id == bindparam("delivery_id"))
        self.find_product = select(products.c.id).where(
            products.c.shop_id == bindparam("shop_id"), products.c.external_id == bindparam("external_id"))
        self.insert_product = (
            dialect_insert(products).on_conflict_do_nothing(index_elements=["shop_id", "external_id"])
            .returning(products.c.id)
        )
        self.update_product = update(products).where(products.c.id == bindparam("product_id"))
        # The same update, made only when the event is not older than the version we hold: one statement,
        # so two deliveries racing for one product cannot both pass the check (the row lock orders them).
        self.update_product_unless_newer = (
            update(products)
            .where(products.c.id == bindparam("product_id"),
                   or_(products.c.source_updated_at.is_(None),
                       products.c.source_updated_at <= bindparam("event_updated_at")))
            .returning(products.c.id)
        )
        self.find_images = select(images.c.external_id, images.c.src, images.c.alt, images.c.position).where(
            images.c.product_id == bindparam("product_id"))
        self.delete_images = delete(images).where(images.c.product_id == bindparam("product_id"))
        self.insert_images = insert(images)
        self.insert_render = insert(renders).returning(renders.c.id)


@functools.cache
def _statements_for(dialect: str) -> _Statements:
    return _Statements(dialect)


def _statements(session: Session) -> _Statements:
    return _statements_for(session.get_bind().dialect.name)


def _finish_delivery(session: Session, delivery_id: int, result: IntakeResult) -> IntakeResult:
    session.execute(_statements(session).finish_delivery,
                    {"delivery_id": delivery_id, "outcome": result.outcome, "render_id": result.render_id})
    return result


def accept_delivery(db: Database, ref: ShopRef, event: ProductEvent, *, delivery_key: str, topic: str) -> IntakeResult:
    """Record one product webhook for the shop `ref` names, act on it once, and commit. Raises UnknownShop.

    All of it is one transaction: a failure (a dropped connection, a race lost on a unique key) leaves
    nothing behind, and the shop's next delivery of the same webhook starts afresh.
    """
    with db.transaction() as session:
        return accept(session, find_shop(session, ref), event, delivery_key=delivery_key, topic=topic)


def find_shop(session: Session, ref: ShopRef) -> Shop:
    """The active shop `ref` names. Raises UnknownShop."""
    if ref.id is not None:
        shop = session.get(Shop, ref.id)
    else:
        assert ref.platform is not None and ref.domain is not None
        shop = shop_by_domain(session, ref.platform, ref.domain)
    if shop is None or not shop.active:
        raise UnknownShop(f"no active shop {ref}")
    return shop


def shop_by_domain(session: Session, platform: Platform, domain: str) -> Shop | None:
    """The shop with this domain on this platform, active or not."""
    return session.execute(_SHOP_BY_DOMAIN, {"platform": platform, "domain": domain}).scalar()


# Built once, like _Statements: every Shopify delivery runs it.
_SHOP_BY_DOMAIN = select(Shop).where(Shop.platform == bindparam("platform"), Shop.domain == bindparam("domain"))


def accept(session: Session, shop: Shop, event: ProductEvent, *, delivery_key: str, topic: str) -> IntakeResult:
    """Record one product webhook and act on it once. A repeated delivery_key is a no-op."""
    delivery_id = record_delivery(session, shop, delivery_key=delivery_key, topic=topic, product_id=event.product_id)
    if delivery_id is None:
        return DUPLICATE
    decision = _decide_and_apply(session, shop, event)
    if isinstance(decision, IntakeResult):
        return _finish_delivery(session, delivery_id, decision)
    render_id = insert_render(session, shop.id, decision, trigger="webhook")
    return _finish_delivery(session, delivery_id, IntakeResult("render", render_id=render_id))


def accept_shop_event(session: Session, shop: Shop, *, delivery_key: str, topic: str) -> IntakeResult:
    """A webhook about the shop rather than a product (uninstall, privacy requests)."""
    delivery_id = record_delivery(session, shop, delivery_key=delivery_key, topic=topic)
    if delivery_id is None:
        return DUPLICATE
    if topic == "app/uninstalled":
        result = IntakeResult("deactivated", reason=f"{cancel_pending(session, shop.id)} pending render(s) cancelled")
        shop.active = False
    else:
        # customers/data_request and customers/redact: we keep no customer data, so there is nothing to
        # send or erase; the delivery row is the record that the request was received and answered.
        result = IntakeResult("noted", reason="this service stores no customer data")
    return _finish_delivery(session, delivery_id, result)


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
    # The small copies of the photos renders were made from.
    keys |= {key for key in session.scalars(select(Render.source_thumb_key).where(Render.shop_id == shop.id)) if key}
    # Content-addressed files may be shared with another shop that stored the same bytes: keep those.
    shared = set(session.scalars(
        select(Asset.storage_key).where(Asset.shop_id != shop.id, Asset.storage_key.in_(keys))))
    shared |= set(session.scalars(select(ReferenceImage.storage_key).where(
        ReferenceImage.shop_id != shop.id, ReferenceImage.storage_key.in_(keys))))
    shared |= {key for key in session.scalars(select(Render.source_thumb_key).where(
        Render.shop_id != shop.id, Render.source_thumb_key.in_(keys))) if key}
    for model in (UsageRecord, Delivery, Asset, Render, ReferenceImage, SourceImage, Product):
        session.execute(delete(model).where(model.shop_id == shop.id))
    session.delete(shop)
    session.flush()
    removed = keys - shared
    for key in removed:
        storage.delete(key)
    return len(removed)


def _decide_and_apply(session: Session, shop: Shop, event: ProductEvent) -> IntakeResult | int:
    """Apply the event to the product; returns what happened, or the product's id when it needs a render."""
    # The hot path of every webhook: prepared table statements, a handful of round trips, no unit of work.
    sql = _statements(session)
    if event.action == "delete":
        found = session.execute(sql.find_product, {"shop_id": shop.id, "external_id": event.product_id}).first()
        if found is None:
            return IntakeResult("deleted", reason="the product was not known")
        session.execute(sql.update_product, {"product_id": found.id, "deleted": True, "updated_at": utcnow()})
        cancelled = cancel_pending(session, shop.id, found.id)
        return IntakeResult("deleted", reason=f"{cancelled} pending render(s) cancelled")

    upserted = upsert_product(session, shop.id, event)
    if upserted is None:
        return STALE
    product_id, is_new, event, images_changed = upserted
    if not shop.active:
        return IntakeResult("ignored", reason="the shop is not active")
    if not event.images:
        return IntakeResult("ignored", reason="the product has no images")
    if not is_new and not images_changed:
        # Also covers a second "create" for a product we already have: same photos, nothing new to make.
        return IntakeResult("ignored", reason="the product's images did not change")
    if is_new or event.action == "create":
        if not setting(shop.settings, "auto_generate"):
            return IntakeResult("ignored", reason="auto-generate is off")
    elif setting(shop.settings, "on_update") == "ignore":
        return IntakeResult("ignored", reason="updates are ignored by the shop's settings")
    return product_id


def our_media_ids(session: Session, product_id: int) -> set[str]:
    """The shop's ids of the media we pushed onto a product."""
    return set(session.scalars(
        select(Asset.external_id).join(Render, Asset.render_id == Render.id)
        .where(Render.product_id == product_id, Asset.external_id.is_not(None))
    ))


def without_our_images(event: ProductEvent, ours: set[str] | frozenset[str] = frozenset()) -> ProductEvent:
    """The event minus the images we pushed ourselves (by id or file name, or the alt-text tag earlier versions
    wrote), so our push never triggers a render."""
    theirs = tuple(image for image in event.images
                   if image.external_id not in ours and not is_our_filename(image.src)
                   and key_from_old_alt(image.alt) is None)
    return event if len(theirs) == len(event.images) else dataclasses.replace(event, images=theirs)


def upsert_product(
    session: Session, shop_id: int, event: ProductEvent
) -> tuple[int, bool, ProductEvent, bool] | None:
    """Create or update the product and its source images (never the ones we pushed).

    Returns the product's id, whether it is new, the event without our own images, and whether the
    product's image set changed; None, changing nothing, when the event's `updated_at` is older than the
    product's stored one (a replayed old delivery).
    """
    sql = _statements(session)
    now = utcnow()
    fields: dict[str, Any] = {
        "title": event.title, "description": event.description, "product_type": event.product_type,
        "vendor": event.vendor, "tags": list(event.tags), "deleted": False, "updated_at": now}
    source_updated_at = _utc(event.updated_at)
    if source_updated_at is not None:
        fields["source_updated_at"] = source_updated_at
    # Insert first: most deliveries are about new products, and ON CONFLICT makes "is it new?" the same
    # round trip as creating it. A concurrent create of the same product waits here for the other's commit.
    product_id: int | None = session.execute(sql.insert_product, {
        "shop_id": shop_id, "external_id": event.product_id, "created_at": now, **fields}).scalar()
    is_new = product_id is not None
    before: list[tuple[Any, ...]] = []
    if product_id is None:
        product_id = session.execute(
            sql.find_product, {"shop_id": shop_id, "external_id": event.product_id}).scalar_one()
        if source_updated_at is None:
            session.execute(sql.update_product, {"product_id": product_id, **fields})
        elif session.execute(sql.update_product_unless_newer, {
                "product_id": product_id, "event_updated_at": source_updated_at, **fields}).first() is None:
            return None
        event = without_our_images(event, our_media_ids(session, product_id))
        before = [tuple(row) for row in session.execute(sql.find_images, {"product_id": product_id})]
    else:
        event = without_our_images(event)
    wanted = [(ref.external_id, ref.src, ref.alt, position) for position, ref in enumerate(event.images)]
    changed = {(row[0], row[1]) for row in before} != {(row[0], row[1]) for row in wanted}
    if set(before) != set(wanted):
        # Replace the rows when anything differs (set, order or alt text): a product has a few images.
        if before:
            session.execute(sql.delete_images, {"product_id": product_id})
        if wanted:
            session.execute(sql.insert_images, [
                {"shop_id": shop_id, "product_id": product_id, "external_id": external_id, "src": src, "alt": alt,
                 "position": position, "created_at": now, "updated_at": now}
                for external_id, src, alt, position in wanted
            ])
    return product_id, is_new, event, changed


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """`moment` in UTC; naive is taken as UTC. SQLite keeps the wall time only, so every stored value is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def insert_render(
    session: Session, shop_id: int, product_id: int, *, trigger: str, options: dict[str, Any] | None = None
) -> int:
    """A queued Render row; returns its id. The caller enqueues its job after commit."""
    now = utcnow()
    return session.execute(_statements(session).insert_render, {
        "shop_id": shop_id, "product_id": product_id, "status": RenderStatus.QUEUED, "trigger": trigger,
        "options": options or {}, "created_at": now, "updated_at": now,
    }).scalar_one()


def request_render(
    session: Session, shop: Shop, product: Product, *, trigger: str, options: dict[str, Any] | None = None
) -> Render:
    """A queued Render row for the product; the caller enqueues its job after commit."""
    session.flush()
    render = session.get(Render, insert_render(session, shop.id, product.id, trigger=trigger, options=options))
    assert render is not None
    return render
