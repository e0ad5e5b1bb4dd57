"""/shops/<id>/renders: the review gallery. First paint reads the database; the page's script talks to /api/v1."""

from __future__ import annotations

from typing import Any

from flask import abort, g, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..current import services
from ..models import Asset, Product, PushStatus, ReferenceImage, Render, RenderStatus
from ..scenes import builtin_presets
from ..schemas import settings_with_defaults
from .common import bp, shop_page

PAGE_SIZE = 20
"""Renders shown on one page of the gallery."""

PRODUCT_CHOICES = 200
"""Products offered in the regenerate form, most recently changed first."""

STATUS_WORDS = {
    RenderStatus.QUEUED: "Waiting for a worker",
    RenderStatus.RUNNING: "Working on it",
    RenderStatus.SUCCEEDED: "Done",
    RenderStatus.PARTIAL: "Done, with problems",
    RenderStatus.FAILED: "Failed",
    RenderStatus.CANCELLED: "Cancelled",
}
PUSH_WORDS = {
    PushStatus.PENDING: "Sending to shop",
    PushStatus.PUSHED: "In your shop",
    PushStatus.FAILED: "Could not send",
    PushStatus.HELD: "Waiting for your review",
    PushStatus.REMOVED: "Taken off the product",
    PushStatus.REJECTED: "Rejected: not sent",
    PushStatus.REMOVING: "Being taken off the product",
}
KIND_WORDS = {"cutout": "Cutout", "white": "White background", "scene": "Scene"}


def asset_label(asset: Asset) -> str:
    kind = KIND_WORDS.get(asset.kind.value, asset.kind.value)
    return f"{kind}: {asset.preset.replace('-', ' ')}" if asset.preset else kind


def card_context(render: Render) -> dict[str, Any]:
    """What one gallery card shows, read from the render's rows."""
    return {
        "render": render,
        "status_words": STATUS_WORDS.get(render.status, render.status.value),
        "cost": round(sum(asset.cost_usd for asset in render.assets), 4),
        "original": render.product.images[0].src if render.product.images else None,
        "can_push": render.status.is_finished and any(
            a.push_status in (PushStatus.HELD, PushStatus.FAILED) for a in render.assets),
        "push_words": PUSH_WORDS,
        "asset_label": asset_label,
    }


def _load(query: Any) -> list[Render]:
    return list(services().db.session().scalars(query.options(
        selectinload(Render.assets), selectinload(Render.product).selectinload(Product.images))))


@bp.get("/shops/<int:shop_id>/renders")
@shop_page
def gallery(shop_id: int) -> ResponseReturnValue:
    """The shop's recent renders, newest first, with thumbnails and the regenerate form."""
    session = services().db.session()
    query = select(Render).where(Render.shop_id == shop_id).order_by(Render.id.desc()).limit(PAGE_SIZE + 1)
    before = request.args.get("before", type=int)
    if before:
        query = query.where(Render.id < before)
    product_filter = request.args.get("product", "").strip()
    if product_filter:
        query = query.join(Product).where(Product.external_id == product_filter)
    renders = _load(query)
    older = renders[PAGE_SIZE - 1].id if len(renders) > PAGE_SIZE else None
    products = list(session.scalars(select(Product).where(Product.shop_id == shop_id, Product.deleted.is_(False))
                                    .order_by(Product.updated_at.desc()).limit(PRODUCT_CHOICES)))
    settings = settings_with_defaults(g.shop.settings)
    provider = settings["provider"] or services().config.scene_provider
    scenes = list(builtin_presets(provider)) + [p["name"] for p in settings["presets"]]
    references = list(session.scalars(select(ReferenceImage).where(ReferenceImage.shop_id == shop_id)
                                      .order_by(ReferenceImage.id)))
    return render_template(
        "renders.html", shop=g.shop, cards=[card_context(r) for r in renders[:PAGE_SIZE]], older=older,
        products=products, product_filter=product_filter, scenes=list(dict.fromkeys(scenes)),
        default_scenes=settings["scene_presets"], references=references, review=settings["publish_mode"] == "review",
    )


@bp.get("/shops/<int:shop_id>/renders/<int:render_id>/card")
@shop_page
def card(shop_id: int, render_id: int) -> ResponseReturnValue:
    """One render's card as HTML, for the page's script to swap in when the render changes."""
    render = _load(select(Render).where(Render.id == render_id, Render.shop_id == shop_id))
    if not render:
        abort(404, f"No render {render_id} in this shop.")
    return render_template("_render_card.html", shop=g.shop, **card_context(render[0]))
