"""How renders and assets are shown to API callers and on the command line (JSON-ready dicts). No Flask."""

from __future__ import annotations

from typing import Any

from .config import Config
from .models import Asset, PushStatus, Render
from .signed_links import signed_url

ASSET_LINK_TTL_S = 3600
"""How long the signed image links in API answers work: enough for a gallery page, too short to share."""


def render_json(render: Render, config: Config) -> dict[str, Any]:
    """A render as the API and `renders list --json` show it."""
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
        "assets": [asset_json(asset, config) for asset in render.assets],
        "push": push_summary(render),
    }


def push_summary(render: Render) -> dict[str, Any]:
    """Where the render's assets stand with the shop: push_failed (with the store's words), held, pending, pushed."""
    states = {asset.push_status for asset in render.assets} - {PushStatus.REJECTED}
    errors = [{"asset_id": a.id, "message": a.push_error} for a in render.assets if a.push_status == PushStatus.FAILED]
    for status, name in ((PushStatus.FAILED, "push_failed"), (PushStatus.HELD, "held"), (PushStatus.PENDING, "pending"),
                         (PushStatus.REMOVING, "pending")):
        if status in states:
            return {"status": name, "errors": errors}
    return {"status": "pushed" if states else "nothing_to_push", "errors": errors}


def asset_json(asset: Asset, config: Config) -> dict[str, Any]:
    """An asset with a signed, expiring link to its file."""
    return {
        "id": asset.id, "kind": asset.kind.value, "preset": asset.preset, "width": asset.width,
        "height": asset.height, "bytes": asset.bytes, "content_type": asset.content_type,
        "cost_usd": round(asset.cost_usd, 6), "version": asset.version, "parent_asset_id": asset.parent_asset_id,
        "instruction": asset.instruction, "push_status": asset.push_status.value, "push_error": asset.push_error,
        "url": signed_url(config, asset.storage_key, ttl_s=ASSET_LINK_TTL_S),
    }
