"""The render job: load the Render, release the database, run the pipeline, save the assets."""

from __future__ import annotations

import logging

from rq import get_current_job
from sqlalchemy import select

from catalog_service.app import services
from catalog_service.http import FetchError, fetch
from catalog_service.imaging.cutout import CutoutOptions, get_session
from catalog_service.imaging.errors import ImageRejected
from catalog_service.models import Asset, AssetKind, PushStatus, ReferenceImage, Render, RenderStatus, Shop, utcnow
from catalog_service.pipeline import PipelineResult, RenderPlan, make_assets
from catalog_service.scenes import presets_for
from catalog_service.scenes.base import ProductInfo, ProviderError
from catalog_service.schemas import settings_with_defaults
from catalog_service.security import shop_key
from catalog_service.storage import AssetStorage

from .queues import enqueue_push

log = logging.getLogger(__name__)

MAX_REFERENCE_IMAGES = 4
"""Reference photos handed to one scene; more add cost (OpenAI) without adding much."""


class RenderFailed(Exception):
    """Permanent: written to the Render, the job ends."""


def render_product(render_id: int) -> None:
    """RQ entry point for queue `renders`."""
    svc = services()
    try:
        _run(render_id)
    finally:
        svc.db.remove()


def _run(render_id: int) -> None:
    svc = services()
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is None or render.status.is_finished:
            log.info("render=%s nothing to do (%s)", render_id, "missing" if render is None else render.status.value)
            return
        shop = session.get(Shop, render.shop_id)
        assert shop is not None
        render.status = RenderStatus.RUNNING
        render.attempts += 1
        render.started_at = render.heartbeat_at = utcnow()
        settings = settings_with_defaults(shop.settings)
        product = render.product
        sources = [image.src for image in product.images]
        reference_keys = session.scalars(
            select(ReferenceImage.storage_key).where(ReferenceImage.shop_id == shop.id)
            .order_by(ReferenceImage.id).limit(MAX_REFERENCE_IMAGES)
        ).all()
        plan = _plan(svc.storage, settings, render.options, product, reference_keys, shop.id)
        shop_id = shop.id
    # The session is released here: nothing below holds a database connection while it fetches and renders.
    svc.db.remove()
    log.info("render=%s shop=%s stage=start attempt=%s", render_id, shop_id, render.attempts)

    try:
        if not sources:
            raise RenderFailed("The product has no images to work from.")
        source = _fetch_source(sources[0])
        result = make_assets(
            source, plan,
            session=get_session(svc.config.cutout_model, svc.config.model_dir),
            provider=svc.scene_provider,
        )
    except (RenderFailed, ImageRejected) as exc:
        _finish_failed(render_id, str(exc))
        return
    except (FetchError, ProviderError) as exc:
        # Transient: RQ retries with backoff. On the last attempt the failure is written to the row instead.
        job = get_current_job()
        if job is not None and job.retries_left:
            log.warning("render=%s shop=%s transient failure, will retry: %s", render_id, shop_id, exc)
            raise
        _finish_failed(render_id, str(exc))
        return

    _save(render_id, result, settings["publish_mode"])
    log.info("render=%s shop=%s stage=done assets=%s errors=%s ms=%s", render_id, shop_id,
             len(result.assets), len(result.errors), result.timings_ms)


def _plan(storage: AssetStorage, settings: dict, options: dict, product, reference_keys, shop_id: int) -> RenderPlan:  # type: ignore[no-untyped-def]
    svc = services()
    cutout_settings = settings["cutout"]
    presets = presets_for(options.get("scenes") or settings["scene_presets"], brand_color=settings["brand_color"])
    return RenderPlan(
        cutout=CutoutOptions(
            max_side=min(cutout_settings["max_side"], svc.config.cutout_max_side),
            padding=cutout_settings["padding"], square=cutout_settings["square"],
        ),
        cutout_format=cutout_settings["format"],
        white=cutout_settings["white"],
        presets=presets,
        references=[storage.get(key) for key in reference_keys],
        product=ProductInfo(
            title=product.title, description=product.description, product_type=product.product_type,
            vendor=product.vendor, tags=tuple(product.tags),
        ),
        shop_key=shop_key(shop_id, svc.config.secret_key),
        max_pixels=svc.config.max_pixels,
    )


def _fetch_source(url: str) -> bytes:
    svc = services()
    config = svc.config
    try:
        return fetch(
            url, max_bytes=config.max_source_bytes, connect_timeout_s=config.fetch_connect_timeout_s,
            read_timeout_s=config.fetch_read_timeout_s, allow_private=config.allow_private_urls, session=svc.http,
        ).data
    except FetchError as exc:
        if not exc.retryable:
            raise RenderFailed(f"The product photo could not be downloaded: {exc}") from None
        raise


def _save(render_id: int, result: PipelineResult, publish_mode: str) -> None:
    svc = services()
    stored = [(made, svc.storage.put(made.data, ext=made.ext)) for made in result.assets]
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is None or render.status == RenderStatus.CANCELLED:
            # The product was deleted or the app uninstalled while we worked: keep nothing.
            log.info("render=%s cancelled while running; results dropped", render_id)
            return
        existing = {(asset.kind, asset.preset): asset for asset in render.assets}
        for made, key in stored:
            # A re-run of the same render overwrites its rows instead of adding duplicates.
            asset = existing.get((AssetKind(made.kind), made.preset))
            if asset is None:
                asset = Asset(shop_id=render.shop_id, render_id=render.id, kind=AssetKind(made.kind), preset=made.preset)
                session.add(asset)
            asset.storage_key, asset.content_type = key, made.content_type
            asset.width, asset.height, asset.bytes = made.width, made.height, len(made.data)
            asset.cost_usd = made.cost_usd
            asset.push_status = PushStatus.PENDING if publish_mode == "auto" else PushStatus.HELD
        render.errors = result.errors
        render.timings = result.timings_ms
        render.status = RenderStatus.PARTIAL if result.errors else RenderStatus.SUCCEEDED
        render.last_error = "; ".join(f"{e['preset']}: {e['message']}" for e in result.errors) or None
        render.finished_at = utcnow()
        shop_active = render.product.deleted is False and session.get(Shop, render.shop_id).active
    if publish_mode == "auto" and shop_active:
        enqueue_push(svc.redis, render_id, timeout_s=svc.config.push_timeout_s)


def _finish_failed(render_id: int, message: str) -> None:
    svc = services()
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is not None:
            render.status = RenderStatus.FAILED
            render.last_error = message
            render.finished_at = utcnow()
    log.warning("render=%s stage=failed error=%s", render_id, message)
