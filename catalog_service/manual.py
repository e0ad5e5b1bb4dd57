"""What a merchant asks for by hand: regenerate a product, approve or reject an asset in review mode.

Plain functions on a database session; the API (and the page, through the API) turns their errors into
HTTP answers, and enqueues after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .intake import request_render
from .models import Asset, Product, PushStatus, ReferenceImage, Render, Shop
from .scenes import builtin_presets
from .schemas import RegenerateSchema, settings_with_defaults


class ManualError(Exception):
    """A request a merchant can correct; the message says how."""


class ProductNotFound(ManualError):
    """The shop has no such product (or it was deleted in the shop)."""


class NothingToRender(ManualError):
    """The product has no photo to work from."""


class ReviewConflict(ManualError):
    """The asset is not in a state the action applies to."""


def preset_names(settings: dict[str, Any], default_provider: str) -> set[str]:
    """Every scene preset the shop can name: the built-ins of its provider plus its own."""
    provider = settings["provider"] or default_provider
    return set(builtin_presets(provider)) | {preset["name"] for preset in settings["presets"]}


def regenerate(
    session: Session, shop: Shop, product_external_id: str, body: Any, *, default_provider: str,
    allow: Callable[[], object] | None = None,
) -> Render:
    """Validate a regenerate body against the shop, then create a queued manual Render with its options.

    Raises ValidationError (a bad body), ProductNotFound, NothingToRender. `allow`, when given, is called
    once everything is valid and before the Render is written (the rate limit); it raises to refuse.
    """
    settings = settings_with_defaults(shop.settings)
    references = set(session.scalars(select(ReferenceImage.id).where(ReferenceImage.shop_id == shop.id)))
    schema = RegenerateSchema(preset_names=preset_names(settings, default_provider), reference_ids=references)
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["Send a JSON object (or an empty body for the shop's defaults)."]})
    data = schema.load(body)
    product = session.scalar(select(Product).where(Product.shop_id == shop.id,
                                                   Product.external_id == product_external_id))
    if product is None or product.deleted:
        raise ProductNotFound(f"No product {product_external_id} in this shop"
                              + (" (it was deleted in the shop)." if product is not None else "."))
    if not product.images:
        raise NothingToRender(f"Product {product_external_id} has no photo to work from; add one in the shop first.")
    keep_cutout = settings["cutout"]["enabled"] if data["cutout"] is None else data["cutout"]
    scenes = data["scenes"] if data["scenes"] is not None else settings["scene_presets"]
    if not keep_cutout and not scenes:
        raise ValidationError({"cutout": ["Nothing to make: with no cutout, name at least one scene."]})
    options: dict[str, Any] = {key: data[key] for key in ("scenes", "reference_image_ids", "cutout")
                               if data[key] is not None}
    if data["prompt"].strip():
        options["prompt"] = data["prompt"].strip()
    if allow is not None:
        allow()
    return request_render(session, shop, product, trigger="manual", options=options)


APPROVABLE = {PushStatus.HELD, PushStatus.FAILED, PushStatus.REJECTED, PushStatus.REMOVED, PushStatus.PENDING}


def approve(asset: Asset) -> None:
    """Mark the asset for pushing; the caller queues the render's push after commit."""
    if not asset.render.status.is_finished:
        raise ReviewConflict("The render is still running; approve its assets when it has finished.")
    if asset.push_status in (PushStatus.PUSHED, PushStatus.REMOVING):
        raise ReviewConflict("This asset is already on the shop's product." if asset.push_status == PushStatus.PUSHED
                             else "This asset is being taken off the shop; approve it again when that has finished.")
    asset.push_status, asset.push_error = PushStatus.PENDING, None


def reject(asset: Asset) -> bool:
    """Never push the asset. Returns True when it is already on the shop and a job must take it off."""
    if asset.push_status == PushStatus.REJECTED:
        return False
    if asset.push_status in (PushStatus.PUSHED, PushStatus.REMOVING):
        asset.push_status, asset.push_error = PushStatus.REMOVING, None
        return True
    asset.push_status, asset.push_error = PushStatus.REJECTED, None
    return False
