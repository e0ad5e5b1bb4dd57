"""/api/v1/shops/<id>/backfills: a shop's existing catalog done in one action, estimated first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import RAISE, ValidationError, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import backfills
from .api import body_errors, bp, own_shop, owned, require_api_key
from .backfills import MAX_PRODUCTS_PER_CALL, BackfillError
from .current import services
from .models import Backfill, BackfillStatus, Platform, Shop
from .schemas import StorableSchema, settings_with_defaults
from .stores.catalog import CatalogFilters

MAX_BACKFILLS_LISTED = 50


class FiltersSchema(StorableSchema):
    """Which of the shop's products a backfill takes."""

    class Meta:
        unknown = RAISE

    product_type = fields.String(load_default="", validate=validate.Length(max=255))
    vendor = fields.String(load_default="", validate=validate.Length(max=255))
    tag = fields.String(load_default="", validate=validate.Length(max=255))
    collection = fields.String(load_default="", validate=validate.Length(max=255),
                               metadata={"description": "Shopify: a collection's id or handle"})
    status = fields.String(load_default="active", validate=validate.OneOf(["active", "draft", "archived", "any"]),
                           metadata={"description": "active products only by default"})
    created_since = fields.AwareDateTime(load_default=None, default_timezone=None,
                                         metadata={"description": "ISO 8601 with an offset"})
    without_our_images = fields.Boolean(load_default=False,
                                        metadata={"description": "only products that carry none of our images yet"})


def _products_field() -> fields.Field:
    from webhooks.generic import ProductSchema

    return fields.List(fields.Nested(ProductSchema), load_default=None,
                       validate=validate.Length(max=MAX_PRODUCTS_PER_CALL),
                       metadata={"description": "generic shops: the products themselves, in the generic webhook's "
                                                f"product shape, up to {MAX_PRODUCTS_PER_CALL} a call"})


class BackfillSchema(StorableSchema):
    """The body of POST /shops/<id>/backfills."""

    class Meta:
        unknown = RAISE

    filters = fields.Nested(FiltersSchema, load_default=lambda: FiltersSchema().load({}))
    scenes = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list,
                         validate=validate.Length(max=8),
                         metadata={"description": "scene preset names; default: the shop's scene_presets"})
    dry_run = fields.Boolean(load_default=True,
                             metadata={"description": "estimate only: the backfill waits for /start"})
    products = _products_field()


class ProductsSchema(StorableSchema):
    """The body of POST /shops/<id>/backfills/<bid>/products."""

    class Meta:
        unknown = RAISE

    products = _products_field()


@bp.post("/shops/<int:shop_id>/backfills")
@require_api_key
def create_backfill(shop_id: int) -> ResponseReturnValue:
    """Start (or estimate) a backfill of the shop's existing products."""
    shop = own_shop(shop_id)
    try:
        body = BackfillSchema().load(request.get_json(silent=True, force=True) or {})
    except ValidationError as exc:
        return body_errors(exc)
    if body["products"] is not None and shop.platform != Platform.GENERIC:
        abort(400, f"A {shop.platform.value} shop's products are read from the shop; send no `products`.")
    _check_scenes(shop, body["scenes"])
    svc = services()
    filters = CatalogFilters(**body["filters"]).to_dict()
    try:
        with svc.db.transaction() as session:
            backfill = backfills.create(session, shop, filters=filters, scenes=body["scenes"],
                                        dry_run=body["dry_run"])
            backfill_id = backfill.id
            if shop.platform == Platform.GENERIC and body["products"] is not None:
                backfills.add_products(session, backfill, _events(body["products"]))
            elif shop.platform == Platform.GENERIC:
                backfills.add_known_products(session, backfill_id)  # the catalog its webhooks told us about
    except BackfillError as exc:
        abort(exc.status, str(exc))
    _after_create(backfill_id, shop.platform)
    return _shown(backfill_id), 201, {"Location": url_for("api.get_backfill", shop_id=shop_id,
                                                         backfill_id=backfill_id, _external=True)}


@bp.post("/shops/<int:shop_id>/backfills/<int:backfill_id>/products")
@require_api_key
def add_backfill_products(shop_id: int, backfill_id: int) -> ResponseReturnValue:
    """Generic shops: more products for a backfill that has not started."""
    shop = own_shop(shop_id)
    if shop.platform != Platform.GENERIC:
        abort(400, f"A {shop.platform.value} shop's products are read from the shop; send none.")
    try:
        body = ProductsSchema().load(request.get_json(silent=True, force=True) or {})
    except ValidationError as exc:
        return body_errors(exc)
    svc = services()
    try:
        with svc.db.transaction() as session:
            backfill = _locked(session, backfill_id)
            added = backfills.add_products(session, backfill, _events(body["products"] or []))
            if backfill.status == BackfillStatus.READY:
                backfill.status = BackfillStatus.COLLECTING  # estimated again below, with the new products
    except BackfillError as exc:
        abort(exc.status, str(exc))
    _after_create(backfill_id, shop.platform)
    return {**_shown(backfill_id), "added": added}


@bp.get("/shops/<int:shop_id>/backfills")
@require_api_key
def list_backfills(shop_id: int) -> ResponseReturnValue:
    own_shop(shop_id)
    session = services().db.session()
    rows = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id).order_by(Backfill.id.desc())
                           .limit(MAX_BACKFILLS_LISTED)).all()
    return {"backfills": [backfills.progress(session, row) for row in rows]}


@bp.get("/shops/<int:shop_id>/backfills/<int:backfill_id>")
@require_api_key
def get_backfill(shop_id: int, backfill_id: int) -> ResponseReturnValue:
    own_shop(shop_id)
    return backfills.progress(services().db.session(), owned(Backfill, backfill_id))


@bp.post("/shops/<int:shop_id>/backfills/<int:backfill_id>/start")
@require_api_key
def start_backfill(shop_id: int, backfill_id: int) -> ResponseReturnValue:
    return _change(shop_id, backfill_id, backfills.start)


@bp.post("/shops/<int:shop_id>/backfills/<int:backfill_id>/pause")
@require_api_key
def pause_backfill(shop_id: int, backfill_id: int) -> ResponseReturnValue:
    return _change(shop_id, backfill_id, backfills.pause)


@bp.post("/shops/<int:shop_id>/backfills/<int:backfill_id>/resume")
@require_api_key
def resume_backfill(shop_id: int, backfill_id: int) -> ResponseReturnValue:
    return _change(shop_id, backfill_id, backfills.resume)


@bp.post("/shops/<int:shop_id>/backfills/<int:backfill_id>/cancel")
@require_api_key
def cancel_backfill(shop_id: int, backfill_id: int) -> ResponseReturnValue:
    return _change(shop_id, backfill_id, backfills.cancel)


def _change(shop_id: int, backfill_id: int, change: Callable[..., None]) -> ResponseReturnValue:
    """Start, pause, resume or cancel; 409 when the backfill is not in a state that allows it. Work is queued
    at once after a start or a resume."""
    own_shop(shop_id)
    svc = services()
    try:
        with svc.db.transaction() as session:
            change(session, _locked(session, backfill_id))
    except BackfillError as exc:
        abort(exc.status, str(exc))
    if change in (backfills.start, backfills.resume):
        from jobs.backfill import feed

        feed(backfill_id, svc)
    return _shown(backfill_id)


def _locked(session: Session, backfill_id: int) -> Backfill:
    """The shop's backfill (404 for any other), its row locked until the transaction ends: changes take turns."""
    backfill: Backfill = owned(Backfill, backfill_id)
    session.refresh(backfill, with_for_update=True)
    return backfill


def _after_create(backfill_id: int, platform: Platform) -> None:
    """A generic shop's products are here: estimate now. Other shops' are read by a job."""
    from jobs.backfill import finish_collecting
    from jobs.queues import enqueue_collect

    svc = services()
    if platform == Platform.GENERIC:
        finish_collecting(backfill_id, svc)
    else:
        enqueue_collect(svc.redis, backfill_id)


def _shown(backfill_id: int) -> dict[str, Any]:
    session = services().db.session()
    backfill = session.get(Backfill, backfill_id)
    assert backfill is not None
    return backfills.progress(session, backfill)


def _events(products: list[dict[str, Any]]) -> list[Any]:
    from webhooks.generic import product_event

    return [product_event(product) for product in products]


def _check_scenes(shop: Shop, scenes: list[str]) -> None:
    from .manual import preset_names

    known = preset_names(settings_with_defaults(shop.settings), services().config.scene_provider)
    unknown = sorted(set(scenes) - known)
    if unknown:
        abort(400, f"No scene preset {', '.join(map(repr, unknown))} in this shop.")
