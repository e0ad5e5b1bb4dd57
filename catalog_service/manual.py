"""What a merchant asks for by hand: regenerate a product, approve or reject an asset in review mode.

Plain functions on a database session; the API (and the page, through the API) turns their errors into
HTTP answers, and enqueues after commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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


class AwaitingReview(ReviewConflict):
    """Review mode: the render's images wait for the merchant's approval, which "push now" does not assume."""


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


def push_now(render: Render, *, review: bool, approve_held: bool = False) -> tuple[list[Asset], int]:
    """Make a finished render's failed assets pending again, and its held ones unless review mode keeps them.

    In review mode a held asset was never approved, so it is pushed only when the merchant says so
    (`approve_held`); a failed one was already on its way (approved, or made in auto mode). Returns the
    assets now pending and how many stay held. Raises AwaitingReview when only held assets are left.
    """
    if not render.status.is_finished:
        raise ReviewConflict("The render is still running; its assets are pushed when it finishes.")
    held = [asset for asset in render.assets if asset.push_status == PushStatus.HELD]
    waiting = [asset for asset in render.assets if asset.push_status == PushStatus.FAILED]
    if held and (approve_held or not review):
        waiting, held = waiting + held, []
    if held and not waiting:
        raise AwaitingReview(
            f"{len(held)} image{'s' if len(held) != 1 else ''} of this render wait for your review: approve them "
            'first, or push with {"approve_held": true} to approve and send them all.')
    for asset in waiting:
        asset.push_status, asset.push_error = PushStatus.PENDING, None
    return waiting, len(held)


MAX_BULK_ASSETS = 100
"""Most asset ids one bulk approve or reject takes: a page of review, answered well within a web request."""


@dataclass
class BulkOutcome:
    """What a bulk review action did to each asset, and the work to queue after commit."""

    results: list[dict[str, Any]] = field(default_factory=list)
    push_render_ids: list[int] = field(default_factory=list)
    takedown_asset_ids: list[int] = field(default_factory=list)


def _shop_assets(session: Session, shop_id: int, asset_ids: Iterable[int]) -> dict[int, Asset]:
    rows = session.scalars(select(Asset).where(Asset.shop_id == shop_id, Asset.id.in_(list(asset_ids))))
    return {asset.id: asset for asset in rows}


def _missing(asset_id: int) -> dict[str, Any]:
    # The same words for another shop's asset as for none at all: ids of other shops are not confirmed.
    return {"asset_id": asset_id, "error": {"code": 404, "message": f"No asset {asset_id} in this shop."}}


def approve_many(session: Session, shop_id: int, asset_ids: list[int]) -> BulkOutcome:
    """Approve each of the shop's assets that can be; one result per id, in the order given."""
    outcome = BulkOutcome()
    assets = _shop_assets(session, shop_id, asset_ids)
    for asset_id in asset_ids:
        asset = assets.get(asset_id)
        if asset is None:
            outcome.results.append(_missing(asset_id))
            continue
        try:
            approve(asset)
        except ReviewConflict as exc:
            outcome.results.append({"asset_id": asset_id, "push_status": asset.push_status.value,
                                    "error": {"code": 409, "message": str(exc)}})
            continue
        outcome.results.append({"asset_id": asset_id, "push_status": asset.push_status.value})
        if asset.render_id not in outcome.push_render_ids:
            outcome.push_render_ids.append(asset.render_id)
    return outcome


def reject_many(session: Session, shop_id: int, asset_ids: list[int]) -> BulkOutcome:
    """Reject each of the shop's assets; those already on the shop are listed for a takedown job."""
    outcome = BulkOutcome()
    assets = _shop_assets(session, shop_id, asset_ids)
    for asset_id in asset_ids:
        asset = assets.get(asset_id)
        if asset is None:
            outcome.results.append(_missing(asset_id))
            continue
        if reject(asset):
            outcome.takedown_asset_ids.append(asset_id)
        outcome.results.append({"asset_id": asset_id, "push_status": asset.push_status.value})
    return outcome
