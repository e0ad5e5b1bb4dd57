"""Refinement: a new version of a scene from the merchant's instruction (and mask), linked to the old one."""

from __future__ import annotations

import logging

from catalog_service.services import current
from catalog_service.models import Asset, AssetKind, PushStatus, Render, RenderStatus, Shop, UsageRecord, utcnow
from catalog_service.scenes.base import ProviderError, SceneRefused
from catalog_service.schemas import settings_with_defaults
from catalog_service.security import shop_key

log = logging.getLogger(__name__)


def refine_scene(render_id: int) -> None:
    """Run a render whose options carry {"refine": {...}}; called by jobs.render.render_product."""
    from .render import _finish_failed, _provider

    svc = current()
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        assert render is not None
        spec = render.options["refine"]
        parent = session.get(Asset, spec["asset_id"])
        missing = parent is None or parent.shop_id != render.shop_id
    if missing:
        _finish_failed(render_id, "The scene to refine no longer exists.")
        return
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        parent = session.get(Asset, spec["asset_id"])
        assert render is not None and parent is not None
        shop = session.get(Shop, render.shop_id)
        assert shop is not None
        render.status, render.started_at = RenderStatus.RUNNING, utcnow()
        render.attempts += 1
        settings = settings_with_defaults(shop.settings)
        preset = next((p for p in settings["presets"] if p["name"] == parent.preset), None)
        parent_row = {"id": parent.id, "key": parent.storage_key, "preset": parent.preset, "version": parent.version,
                      "size": (parent.width, parent.height), "render_id": parent.render_id}
        quality = preset["quality"] if preset else "medium"
        key = shop_key(shop.id, svc.config.secret_key)
    svc.db.remove()

    provider = _provider(settings["provider"])
    image = svc.storage.get(parent_row["key"])
    try:
        if not hasattr(provider, "refine"):
            raise SceneRefused("Refining a scene needs the OpenAI provider; choose it in settings.",
                               reason="not_supported")
        mask = None
        if spec.get("mask_key"):
            mask = svc.storage.get(spec["mask_key"])
        elif spec.get("rect"):
            from catalog_service.scenes.openai_images import rectangle_mask

            mask = rectangle_mask(parent_row["size"], tuple(spec["rect"]))
        result = provider.refine(
            image_png=image, instruction=spec["instruction"], mask_png=mask,
            size=f"{parent_row['size'][0]}x{parent_row['size'][1]}", quality=quality,
            model=settings["model"] or None, shop_key=key,
        )
    except ProviderError as exc:
        if exc.retryable:
            raise
        _finish_failed(render_id, f"{exc.reason}: {exc}")
        return
    storage_key = svc.storage.put(result.data, ext="png" if result.content_type == "image/png" else "jpg")
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        assert render is not None
        session.add(Asset(
            shop_id=render.shop_id, render_id=render_id, kind=AssetKind.SCENE, preset=parent_row["preset"],
            storage_key=storage_key, content_type=result.content_type, width=result.width, height=result.height,
            bytes=len(result.data), cost_usd=result.cost_usd, parent_asset_id=parent_row["id"],
            version=parent_row["version"] + 1, instruction=spec["instruction"],
            push_status=PushStatus.PENDING if settings["publish_mode"] == "auto" else PushStatus.HELD,
        ))
        if result.usage or result.cost_usd:
            session.add(UsageRecord(
                shop_id=render.shop_id, render_id=render_id, provider=result.provider, model=result.model,
                quality=quality, input_text_tokens=result.usage.get("input_text_tokens", 0),
                input_image_tokens=result.usage.get("input_image_tokens", 0),
                output_tokens=result.usage.get("output_tokens", 0), cost_usd=result.cost_usd,
            ))
        render.status, render.finished_at = RenderStatus.SUCCEEDED, utcnow()
    log.info("render=%s refined asset=%s version=%s", render_id, parent_row["id"], parent_row["version"] + 1)
