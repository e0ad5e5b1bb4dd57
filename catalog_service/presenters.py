"""How renders and assets are shown to API callers and on the command line (JSON-ready dicts). No Flask."""

from __future__ import annotations

from typing import Any

from .config import Config
from .models import Asset, PushStatus, Render, RenderStatus
from .signed_links import signed_url

ASSET_LINK_TTL_S = 3600
"""How long the signed image links in API answers work: enough for a gallery page, too short to share."""


OUTCOME_WORDS = {
    "queued": "Waiting for a worker",
    "running": "Working on it",
    "waiting": "Cutout made; scenes waiting for a batch (half price, within a day)",
    "succeeded": "Done",
    "partial": "Done, with problems",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "not_sent": "Made, but not sent to your shop",
    "partly_sent": "Made; some images not sent to your shop",
    "send_retrying": "Made; sending to your shop keeps failing, trying again",
    "sending": "Made; sending to your shop",
    "in_review": "Made; waiting for your review",
}
"""The merchant's words for each outcome state (render_outcome): the card's status and the API's `outcome`."""


def render_json(render: Render, config: Config) -> dict[str, Any]:
    """A render as the API and `renders list --json` show it."""
    push = push_summary(render)
    return {
        "id": render.id,
        "shop_id": render.shop_id,
        "product_id": render.product.external_id,
        "status": render.status.value,
        "trigger": render.trigger,
        "attempts": render.attempts,
        "error": render.last_error,
        "scene_errors": render.errors or [],
        "created_at": render.created_at.isoformat(),
        "finished_at": render.finished_at.isoformat() if render.finished_at else None,
        "options": {key: value for key, value in (render.options or {}).items() if key != "refine"},
        "product": {"title": render.product.title, "source_images": [image.src for image in render.product.images]},
        "source": source_json(render, config),
        "assets": [asset_json(asset, config) for asset in render.assets],
        "push": push,
        "outcome": render_outcome(render, push),
        "push_url": f"{config.public_url.rstrip('/')}/api/v1/renders/{render.id}/push",
    }


def source_json(render: Render, config: Config) -> dict[str, Any]:
    """The photo this render was made from (not the product's current one): its address and our small copy.

    Both are None for a render that has not fetched its photo yet (or was made before renders kept it).
    """
    thumb = render.source_thumb_key
    return {"url": render.source_url,
            "thumb_url": signed_url(config, thumb, ttl_s=ASSET_LINK_TTL_S) if thumb else None}


def push_summary(render: Render) -> dict[str, Any]:
    """Where the render's assets stand with the shop: push_failed (with the store's words), retrying (attempts
    and the last error while a push keeps failing), held, pending, pushed; each distinct store error once."""
    live = [asset for asset in render.assets if asset.push_status != PushStatus.REJECTED]
    states = {asset.push_status for asset in live}
    errors = [{"asset_id": a.id, "message": a.push_error} for a in live if a.push_status == PushStatus.FAILED]
    # A pending asset with an error is one whose push failed and is waiting for its next try.
    retrying = [a for a in live if a.push_status == PushStatus.PENDING and a.push_error]
    status = "pushed" if states else "nothing_to_push"
    for state, name in ((PushStatus.FAILED, "push_failed"), (PushStatus.HELD, "held"), (PushStatus.PENDING, "pending"),
                        (PushStatus.REMOVING, "pending")):
        if state in states:
            status = name
            break
    if status == "pending" and retrying:
        status = "retrying"
    troubled = [a for a in live if a.push_error and a.push_status in (PushStatus.FAILED, PushStatus.PENDING)]
    return {
        "status": status,
        "errors": errors,
        "failed": sum(1 for a in live if a.push_status == PushStatus.FAILED),
        "pushed": sum(1 for a in live if a.push_status == PushStatus.PUSHED),
        "attempts": max((a.push_attempts for a in troubled), default=0),
        "last_error": troubled[-1].push_error if troubled else None,
        "messages": list(dict.fromkeys(a.push_error for a in troubled if a.push_error)),
        "can_retry": render.status.is_finished and any(
            a.push_status in (PushStatus.FAILED, PushStatus.HELD) for a in live),
    }


def render_outcome(render: Render, push: dict[str, Any] | None = None) -> dict[str, str]:
    """What happened to the render as the merchant reads it, making and sending together: a render whose
    images were made but never reached the shop is not "done", and one that made nothing is "failed"."""
    push = push_summary(render) if push is None else push
    if not render.status.is_finished:
        return {"state": render.status.value, "message": OUTCOME_WORDS[render.status.value]}
    if render.status in (RenderStatus.FAILED, RenderStatus.CANCELLED):
        return {"state": render.status.value, "message": OUTCOME_WORDS[render.status.value]}
    if not render.assets:
        return {"state": "failed", "message": OUTCOME_WORDS["failed"]}
    state = {"push_failed": "not_sent" if not push["pushed"] else "partly_sent", "retrying": "send_retrying",
             "pending": "sending", "held": "in_review"}.get(push["status"], render.status.value)
    return {"state": state, "message": OUTCOME_WORDS[state]}


def asset_json(asset: Asset, config: Config) -> dict[str, Any]:
    """An asset with a signed, expiring link to its file."""
    return {
        "id": asset.id, "kind": asset.kind.value, "preset": asset.preset, "width": asset.width,
        "height": asset.height, "bytes": asset.bytes, "content_type": asset.content_type,
        "cost_usd": round(asset.cost_usd, 6), "version": asset.version, "parent_asset_id": asset.parent_asset_id,
        "estimate_usd": None if asset.estimate_usd is None else round(asset.estimate_usd, 6),
        "instruction": asset.instruction, "push_status": asset.push_status.value, "push_error": asset.push_error,
        "fidelity": asset.fidelity, "hold_reason": asset.hold_reason,
        "digital_source_type": asset.source_type or None,
        "url": signed_url(config, asset.storage_key, ttl_s=ASSET_LINK_TTL_S),
    }
