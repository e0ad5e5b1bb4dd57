"""/shops/<id>/renders: the review gallery. First paint reads the database; the page's script talks to /api/v1."""

from __future__ import annotations

from typing import Any

from flask import abort, g, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from .. import backfills
from ..current import services
from ..models import Asset, Backfill, Product, PushStatus, ReferenceImage, Render, RenderStatus, Shop
from ..presenters import ASSET_LINK_TTL_S, push_summary, render_outcome
from ..scenes import builtin_presets
from ..schemas import settings_with_defaults
from ..signed_links import signed_url
from .common import bp, shop_page

PAGE_SIZE = 20
"""Renders shown on one page of the gallery."""

PRODUCT_CHOICES = 20
"""Products offered in the regenerate form before the merchant searches, most recently changed first."""

FILTERS: dict[str, tuple[str, Any]] = {
    "held": ("Waiting for your review", Render.assets.any(Asset.push_status == PushStatus.HELD)),
    "push_failed": ("Could not send to your shop", Render.assets.any(Asset.push_status == PushStatus.FAILED)),
    "running": ("Waiting or working", Render.status.in_([RenderStatus.QUEUED, RenderStatus.RUNNING,
                                                            RenderStatus.WAITING])),
    "succeeded": ("Done", Render.status == RenderStatus.SUCCEEDED),
    "partial": ("Done, with problems", Render.status == RenderStatus.PARTIAL),
    "failed": ("Failed", Render.status == RenderStatus.FAILED),
}
"""The gallery's status filter: its query value -> (the merchant's words, the condition on Render)."""

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


def render_original(render: Render) -> str | None:
    """The photo the render was made from: our small copy, else its address; the product's current photo only
    for a render that has not fetched one yet (or was made before renders kept theirs)."""
    if render.source_thumb_key:
        return signed_url(services().config, render.source_thumb_key, ttl_s=ASSET_LINK_TTL_S)
    if render.source_url:
        return render.source_url
    return render.product.images[0].src if render.product.images else None


def card_context(render: Render, *, offline: bool = False, review: bool = False) -> dict[str, Any]:
    """What one gallery card shows, read from the render's rows. `offline`: the shop draws scenes with the
    offline compositor, which ignores prompts, so the regenerate form says so instead of offering one."""
    push = push_summary(render)
    outcome = render_outcome(render, push)
    return {
        "render": render,
        "status_words": outcome["message"],
        "outcome": outcome["state"],
        "push": push,
        "problems": card_problems(render),
        "offline": offline,
        "cost": round(sum(asset.cost_usd for asset in render.assets), 4),
        "original": render_original(render),
        "can_push": push["can_retry"],
        # Review mode: held images were never approved; "Push now" asks before it sends them.
        "held_to_review": sum(1 for a in render.assets if a.push_status == PushStatus.HELD) if review else 0,
        "review": review,
        "push_words": PUSH_WORDS,
        "asset_label": asset_label,
    }


def card_problems(render: Render) -> list[str]:
    """The render's own error when it says more than its scene errors (which the card lists by scene): the job
    writes their summary into `last_error`, and the card shows each error once."""
    if not render.last_error:
        return []
    scene_errors = render.errors or []
    summary = "; ".join(f"{e.get('preset')}: {e.get('message')}" for e in scene_errors)
    if render.last_error == summary or render.last_error in {e.get("message") for e in scene_errors}:
        return []
    if summary and summary in render.last_error:
        return [render.last_error.replace(summary, "").strip()]
    return [render.last_error]


def is_offline(shop: Shop) -> bool:
    """Whether the shop's scenes come from the offline compositor (the shop's provider, else the service's)."""
    provider = settings_with_defaults(shop.settings)["provider"] or services().config.scene_provider
    return str(provider) == "compositor"


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
    product_filter = request.args.get("product", "").strip()[:200]
    if product_filter:
        # The shop's product id (the card's link), or words of the title a merchant types.
        query = query.join(Product).where(or_(
            Product.external_id == product_filter,
            func.lower(Product.title).contains(product_filter.lower(), autoescape=True)))
    status_filter = request.args.get("status", "")
    if status_filter not in FILTERS:
        status_filter = ""
    if status_filter:
        query = query.where(FILTERS[status_filter][1])
    renders = _load(query)
    older = renders[PAGE_SIZE - 1].id if len(renders) > PAGE_SIZE else None
    live_products = select(Product).where(Product.shop_id == shop_id, Product.deleted.is_(False))
    products = list(session.scalars(live_products.order_by(Product.updated_at.desc(), Product.id.desc())
                                    .limit(PRODUCT_CHOICES)))
    product_count = session.scalar(select(func.count()).select_from(live_products.subquery())) or 0
    settings = settings_with_defaults(g.shop.settings)
    provider = settings["provider"] or services().config.scene_provider
    scenes = list(builtin_presets(provider)) + [p["name"] for p in settings["presets"]]
    references = list(session.scalars(select(ReferenceImage).where(ReferenceImage.shop_id == shop_id)
                                      .order_by(ReferenceImage.id)))
    review = settings["publish_mode"] == "review"
    latest = session.scalar(select(Backfill).where(Backfill.shop_id == shop_id).order_by(Backfill.id.desc()).limit(1))
    return render_template(
        "renders.html", shop=g.shop, cards=[card_context(r, offline=provider == "compositor", review=review)
                                            for r in renders[:PAGE_SIZE]], older=older,
        products=products, product_filter=product_filter, scenes=list(dict.fromkeys(scenes)),
        default_scenes=settings["scene_presets"], references=references, review=review,
        offline=provider == "compositor", product_count=product_count, status_filter=status_filter,
        filters={key: words for key, (words, _condition) in FILTERS.items()},
        backfill=backfills.progress(session, latest) if latest is not None else None,
    )


@bp.get("/shops/<int:shop_id>/renders/<int:render_id>/card")
@shop_page
def card(shop_id: int, render_id: int) -> ResponseReturnValue:
    """One render's card as HTML, for the page's script to swap in when the render changes."""
    render = _load(select(Render).where(Render.id == render_id, Render.shop_id == shop_id))
    if not render:
        abort(404, f"No render {render_id} in this shop.")
    return render_template("_render_card.html", shop=g.shop, **card_context(
        render[0], offline=is_offline(g.shop),
        review=settings_with_defaults(g.shop.settings)["publish_mode"] == "review"))
