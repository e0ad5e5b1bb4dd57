"""Refinement: a new version of a scene from the merchant's instruction (and mask), linked to the old one."""

from __future__ import annotations

import dataclasses
import logging

from catalog_service.imaging.encode import CONTENT_TYPES, EXTENSIONS
from catalog_service.imaging.provenance import sign
from catalog_service.models import Asset, AssetKind, PushStatus, Render, RenderStatus, Shop, utcnow
from catalog_service.scenes.base import ProviderError
from catalog_service.schemas import settings_with_defaults
from catalog_service.security import shop_key
from catalog_service.services import current
from catalog_service.storage import AssetMissing

from .common import fail_render, publishes, queue_push, record_usage, retry_or_fail, scene_provider

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Parent:
    """The scene being refined, read while the session was open."""

    id: int
    key: str
    preset: str
    version: int
    size: tuple[int, int]


def refine_scene(render_id: int) -> None:
    """Run a render whose options carry {"refine": {...}}; called by jobs.render.render_product."""
    svc = current()
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        assert render is not None
        spec = render.options["refine"]
        parent = session.get(Asset, spec["asset_id"])
        if parent is None or parent.shop_id != render.shop_id:
            missing = True
        else:
            missing = False
            shop = session.get(Shop, render.shop_id)
            assert shop is not None
            render.status, render.started_at = RenderStatus.RUNNING, utcnow()
            render.attempts += 1
            settings = settings_with_defaults(shop.settings)
            preset = next((p for p in settings["presets"] if p["name"] == parent.preset), None)
            parent_row = _Parent(id=parent.id, key=parent.storage_key, preset=parent.preset,
                                 version=parent.version, size=(parent.width, parent.height))
            quality = preset["quality"] if preset else "medium"
            key, shop_id = shop_key(shop.id, svc.config.secret_key), shop.id
    svc.db.remove()
    if missing:
        fail_render(render_id, "The scene to refine no longer exists.")
        return

    provider = scene_provider(settings["provider"])
    try:
        image = svc.storage.get(parent_row.key)
        mask = None
        if spec.get("mask_key"):
            mask = svc.storage.get(spec["mask_key"])
        elif spec.get("rect"):
            from catalog_service.scenes.openai_images import rectangle_mask  # loads the openai library: only here

            mask = rectangle_mask(parent_row.size, tuple(spec["rect"]))
    except AssetMissing:
        fail_render(render_id, "The scene to refine, or its mask, is no longer stored; send the refinement again.")
        return
    try:
        # A provider that cannot edit images refuses with a SceneRefused that says which one can.
        result = provider.refine(
            image_png=image, instruction=spec["instruction"], mask_png=mask,
            size=f"{parent_row.size[0]}x{parent_row.size[1]}", quality=quality,
            model=settings["model"] or None, shop_key=key,
        )
    except ProviderError as exc:
        reason = exc.reason
        retry_or_fail(exc, lambda message: fail_render(render_id, f"{reason}: {message}"))
        return
    # Stored (and so pushed) under its own format's extension: a WebP answer named .jpg is refused or misread.
    ext = next((EXTENSIONS[fmt] for fmt, known in CONTENT_TYPES.items() if known == result.content_type), "jpg")
    data = result.data
    if result.source_type and svc.c2pa_signer is not None:  # marked as AI like every generated scene, and signed
        data = sign(data, result.content_type, result.source_type, svc.c2pa_signer)
    storage_key = svc.storage.put(data, ext=ext)
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        # The call is paid: its record is written whatever became of the render meanwhile.
        record_usage(session, shop_id, render_id if render is not None else None, result, quality=quality)
        if render is None or render.status == RenderStatus.CANCELLED:
            log.info("render=%s cancelled while refining; the new version is dropped", render_id)
            return
        session.add(Asset(
            shop_id=render.shop_id, render_id=render_id, kind=AssetKind.SCENE, preset=parent_row.preset,
            storage_key=storage_key, content_type=result.content_type, width=result.width, height=result.height,
            bytes=len(data), cost_usd=result.cost_usd, estimate_usd=result.estimate_usd or None,
            parent_asset_id=parent_row.id, version=parent_row.version + 1, instruction=spec["instruction"],
            source_type=result.source_type,
            push_status=PushStatus.PENDING if settings["publish_mode"] == "auto" else PushStatus.HELD,
        ))
        render.status, render.finished_at = RenderStatus.SUCCEEDED, utcnow()
        push = publishes(session, render, settings["publish_mode"])
    if push:
        queue_push(render_id)
    log.info("render=%s refined asset=%s version=%s", render_id, parent_row.id, parent_row.version + 1)
