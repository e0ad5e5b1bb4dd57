"""ProductEvent -> Render: dedupe the delivery, upsert the product, decide, create the Render.

All of it happens in the caller's transaction; the caller enqueues after commit, so a job never
points at a row that was rolled back, and a committed Render whose message is lost is found again
in the database.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from sqlalchemy import (
    JSON, Integer, Text, bindparam, case, cast, column, delete, func, insert, literal, select, true, update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .db import Database, DriverConnection, DriverStatement
from .models import (
    Asset, Delivery, Platform, Product, ReferenceImage, Render, RenderStatus, Shop, SourceImage, UsageRecord, utcnow,
)
from .schemas import ProductEvent, setting
from .storage import AssetStorage
from .stores.base import is_our_filename


@dataclasses.dataclass(frozen=True)
class IntakeResult:
    outcome: str  # duplicate | ignored | deleted | render
    render_id: int | None = None
    reason: str = ""


DUPLICATE = IntakeResult("duplicate", reason="this delivery was already received")
# Said by both the single-statement path and the general one.
NO_IMAGES = IntakeResult("ignored", reason="the product has no images")
AUTO_GENERATE_OFF = IntakeResult("ignored", reason="auto-generate is off")


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


class _Statements:
    """The intake's statements, built once per dialect and executed with parameters.

    Every webhook runs these; building SQL expressions per request cost more CPU than running them.
    """

    def __init__(self, dialect: str) -> None:
        deliveries, products, images, renders = (
            Delivery.__table__, Product.__table__, SourceImage.__table__, Render.__table__)
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
        self.find_images = select(images.c.external_id, images.c.src, images.c.alt, images.c.position).where(
            images.c.product_id == bindparam("product_id"))
        self.delete_images = delete(images).where(images.c.product_id == bindparam("product_id"))
        self.insert_images = insert(images)
        self.insert_render = insert(renders).returning(renders.c.id)
        # PostgreSQL creates a delivery's Render and records it on the Delivery in one statement, and
        # takes a whole delivery about a new product in one statement (_new_product_statement).
        self.render_for_delivery = self.new_product_by_domain = self.new_product_by_id = None
        if dialect == "postgresql":
            self.new_product_by_domain = DriverStatement(_new_product_statement(by_domain=True))
            self.new_product_by_id = DriverStatement(_new_product_statement(by_domain=False))
            created = insert(renders).values(
                {column: bindparam(f"r_{column}", type_=renders.c[column].type) for column in
                 ("shop_id", "product_id", "status", "trigger", "options", "created_at", "updated_at")}
            ).returning(renders.c.id).cte("created")
            self.render_for_delivery = (
                update(deliveries).where(deliveries.c.id == bindparam("delivery_id"))
                .values(outcome="render", render_id=select(created.c.id).scalar_subquery())
                .returning(deliveries.c.render_id)
            )


def _new_product_statement(*, by_domain: bool) -> Any:
    """One PostgreSQL statement for the most common delivery: a product we have not seen, from an active shop.

    It finds the shop and, unless the delivery was already received, inserts the product, its images, a
    Render when the shop auto-generates, and the Delivery with its outcome; it answers what it saw and did.
    The product insert decides: when the product exists it inserts nothing, and nothing else happens.
    Data-modifying CTEs share one snapshot and cannot update each other's rows, hence the order: the
    Delivery row comes last, complete. Its insert has no ON CONFLICT: a copy of this delivery recorded
    concurrently (after our snapshot) makes the whole statement fail on the unique key, undoing the rest.
    """
    shops, deliveries, products, images, renders = (
        Shop.__table__, Delivery.__table__, Product.__table__, SourceImage.__table__, Render.__table__)
    key = (shops.c.platform == bindparam("platform", type_=shops.c.platform.type)) & (
        shops.c.domain == bindparam("domain")) if by_domain else shops.c.id == bindparam("shop_id")
    auto_generate = func.coalesce(shops.c.settings["auto_generate"].as_boolean(), bindparam("auto_generate_default"))
    # Looked up once, per shop row, so it stays an index probe: as a NOT EXISTS beside the product insert
    # the planner turned it into an anti-join, and a plan cached while the table was small scanned it all.
    seen = select(deliveries.c.id).where(
        deliveries.c.shop_id == shops.c.id, deliveries.c.delivery_key == bindparam("delivery_key")).exists()
    shop = (select(shops.c.id, shops.c.platform, shops.c.active, auto_generate.label("auto_generate"),
                   seen.label("seen"))
            .where(key).cte("shop"))
    now = bindparam("now", type_=products.c.created_at.type)

    product = (
        postgresql_insert(products).from_select(
            ["shop_id", "external_id", "title", "description", "product_type", "vendor", "tags", "deleted",
             "created_at", "updated_at"],
            select(shop.c.id, bindparam("external_id"), bindparam("title"), bindparam("description"),
                   bindparam("product_type"), bindparam("vendor"), cast(bindparam("tags", type_=Text), JSON),
                   literal(False), now, now).where(shop.c.active, ~shop.c.seen),
        ).on_conflict_do_nothing(index_elements=["shop_id", "external_id"]).returning(products.c.id).cte("product")
    )
    # The images arrive as one JSON array (text), and so do the tags: psycopg adapts a string in C, where
    # four typed arrays and a JSON object cost it a tenth of the webhook's CPU.
    rows = func.json_to_recordset(cast(bindparam("images", type_=Text), JSON)).table_valued(
        column("external_id", Text), column("src", Text), column("alt", Text), column("position", Integer),
    ).render_derived(with_types=True)
    new_images = insert(images).from_select(
        ["shop_id", "product_id", "external_id", "src", "alt", "position", "created_at", "updated_at"],
        select(shop.c.id, product.c.id, rows.c.external_id, rows.c.src, rows.c.alt, rows.c.position, now, now)
        .select_from(shop.join(product, true()).join(rows, true())),
    ).cte("new_images")
    # Every column with a default is named: SQLAlchemy does not fill defaults into a statement inside a CTE.
    render = insert(renders).from_select(
        ["shop_id", "product_id", "status", "trigger", "options", "attempts", "errors", "timings", "created_at",
         "updated_at"],
        select(shop.c.id, product.c.id, literal(RenderStatus.QUEUED.value), literal("webhook"),
               func.json_build_object(), literal(0), func.json_build_array(), func.json_build_object(), now, now)
        .select_from(shop.join(product, true())).where(shop.c.auto_generate, bindparam("has_images")),
    ).returning(renders.c.id).cte("render")
    delivery = insert(deliveries).from_select(
        ["shop_id", "platform", "delivery_key", "topic", "product_external_id", "received_at", "outcome",
         "render_id"],
        select(shop.c.id, shop.c.platform, bindparam("delivery_key"), bindparam("topic"), bindparam("external_id"),
               now, case((render.c.id.is_(None), "ignored"), else_="render"), render.c.id)
        .select_from(shop.join(product, true()).outerjoin(render, true())),
    ).cte("delivery")
    return select(
        shop.c.active, shop.c.seen.label("duplicate"),
        select(product.c.id).scalar_subquery().label("product_id"),
        select(render.c.id).scalar_subquery().label("render_id"),
    ).add_cte(new_images, delivery)


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

    On PostgreSQL a create for a new product is one statement that commits by itself; anything else,
    and every delivery on SQLite, loads the shop and goes through `accept` in a transaction. Updates go
    straight there: nearly all are about products we have, for which the statement would be a wasted
    round trip (the general path handles the rare update about a product new to us just as well).
    """
    if event.action == "create" and db.dialect == "postgresql":
        with db.autocommit() as connection:
            result = accept_new_product(connection, ref, event, delivery_key=delivery_key, topic=topic)
        if result is not None:
            return result
    with db.transaction() as session:
        return accept(session, find_shop(session, ref), event, delivery_key=delivery_key, topic=topic)


def accept_new_product(
    connection: DriverConnection, ref: ShopRef, event: ProductEvent, *, delivery_key: str, topic: str
) -> IntakeResult | None:
    """The whole intake of a delivery about a product we do not have yet, in one PostgreSQL statement.

    None, with nothing written, when the product exists (or a concurrent delivery just created it): the
    caller takes the general path. A copy of this delivery recorded concurrently makes the statement fail
    on the Delivery's unique key and undoes all of it (IntegrityError: try again, and it is a duplicate).
    Raises UnknownShop when `ref` names no active shop.
    """
    sql = _statements_for("postgresql")
    theirs = without_our_images(event)
    statement = sql.new_product_by_domain if ref.id is None else sql.new_product_by_id
    row = statement.first(connection, {
        "shop_id": ref.id, "platform": ref.platform and ref.platform.value, "domain": ref.domain,
        "auto_generate_default": setting(None, "auto_generate"), "delivery_key": delivery_key[:255],
        "topic": topic[:64], "now": utcnow(), "external_id": event.product_id, "title": event.title,
        "description": event.description, "product_type": event.product_type, "vendor": event.vendor,
        "tags": json.dumps(list(event.tags)), "has_images": bool(theirs.images),
        "images": json.dumps([{"external_id": image.external_id, "src": image.src, "alt": image.alt, "position": i}
                              for i, image in enumerate(theirs.images)]),
    })
    if row is None or not row[0]:  # no such shop, or not active
        raise UnknownShop(f"no active shop {ref}")
    _active, duplicate, product_id, render_id = row
    if duplicate:
        return DUPLICATE
    if product_id is None:
        return None
    if render_id is not None:
        return IntakeResult("render", render_id=render_id)
    return AUTO_GENERATE_OFF if theirs.images else NO_IMAGES


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


# Built once: constructing the query cost more than running it.
_SHOP_BY_DOMAIN = select(Shop).where(Shop.platform == bindparam("platform"), Shop.domain == bindparam("domain"))


def accept(session: Session, shop: Shop, event: ProductEvent, *, delivery_key: str, topic: str) -> IntakeResult:
    """Record one product webhook and act on it once. A repeated delivery_key is a no-op."""
    delivery_id = record_delivery(session, shop, delivery_key=delivery_key, topic=topic, product_id=event.product_id)
    if delivery_id is None:
        return DUPLICATE
    decision = _decide_and_apply(session, shop, event)
    if isinstance(decision, IntakeResult):
        return _finish_delivery(session, delivery_id, decision)
    return IntakeResult("render", render_id=_render_for_delivery(session, shop.id, decision, delivery_id))


def _render_for_delivery(session: Session, shop_id: int, product_id: int, delivery_id: int) -> int:
    """A queued webhook Render for the product, recorded on its Delivery; returns the Render's id."""
    statement = _statements(session).render_for_delivery
    if statement is None:
        render_id = insert_render(session, shop_id, product_id, trigger="webhook")
        _finish_delivery(session, delivery_id, IntakeResult("render", render_id=render_id))
        return render_id
    now = utcnow()
    return session.execute(statement, {
        "delivery_id": delivery_id, "r_shop_id": shop_id, "r_product_id": product_id, "r_status": RenderStatus.QUEUED,
        "r_trigger": "webhook", "r_options": {}, "r_created_at": now, "r_updated_at": now,
    }).scalar_one()


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

    product_id, is_new, event, images_changed = upsert_product(session, shop.id, event)
    if not shop.active:
        return IntakeResult("ignored", reason="the shop is not active")
    if not event.images:
        return NO_IMAGES
    if not is_new and not images_changed:
        # Also covers a second "create" for a product we already have: same photos, nothing new to make.
        return IntakeResult("ignored", reason="the product's images did not change")
    if is_new or event.action == "create":
        if not setting(shop.settings, "auto_generate"):
            return AUTO_GENERATE_OFF
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
    """The event minus the images we pushed ourselves (by id or file name), so our push never triggers a render."""
    theirs = tuple(image for image in event.images
                   if image.external_id not in ours and not is_our_filename(image.src))
    return event if len(theirs) == len(event.images) else dataclasses.replace(event, images=theirs)


def upsert_product(session: Session, shop_id: int, event: ProductEvent) -> tuple[int, bool, ProductEvent, bool]:
    """Create or update the product and its source images (never the ones we pushed).

    Returns the product's id, whether it is new, the event without our own images, and whether the
    product's image set changed.
    """
    sql = _statements(session)
    now = utcnow()
    fields = {"title": event.title, "description": event.description, "product_type": event.product_type,
              "vendor": event.vendor, "tags": list(event.tags), "deleted": False, "updated_at": now}
    # Insert first: most deliveries are about new products, and ON CONFLICT makes "is it new?" the same
    # round trip as creating it. A concurrent create of the same product waits here for the other's commit.
    product_id = session.execute(sql.insert_product, {
        "shop_id": shop_id, "external_id": event.product_id, "created_at": now, **fields}).scalar()
    before: list[Any] = []
    is_new = product_id is not None
    if is_new:
        event = without_our_images(event)
    else:
        product_id = session.execute(sql.find_product, {"shop_id": shop_id, "external_id": event.product_id}).scalar_one()
        event = without_our_images(event, our_media_ids(session, product_id))
        session.execute(sql.update_product, {"product_id": product_id, **fields})
        before = session.execute(sql.find_images, {"product_id": product_id}).all()
    wanted = [(ref.external_id, ref.src, ref.alt, position) for position, ref in enumerate(event.images)]
    changed = {(row[0], row[1]) for row in before} != {(row[0], row[1]) for row in wanted}
    if {tuple(row) for row in before} != set(wanted):
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
