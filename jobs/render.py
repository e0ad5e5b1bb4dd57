"""The render job: load the Render, release the database, run the pipeline (keeping each scene as it is made), save."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog_service.http import FetchError, fetch
from catalog_service.imaging.cutout import get_session
from catalog_service.imaging.errors import ImageRejected
from catalog_service.imaging.thumbnail import SOURCE_THUMB_FORMAT, thumbnail
from catalog_service.logs import log_context
from catalog_service.model_status import refusal
from catalog_service.models import (
    Asset,
    AssetKind,
    BatchScene,
    BatchSceneState,
    PushStatus,
    ReferenceImage,
    Render,
    RenderStatus,
    Shop,
    utcnow,
)
from catalog_service.pipeline import (
    BatchingProvider,
    MadeAsset,
    PipelineResult,
    RenderPlan,
    cutout_options,
    make_assets,
)
from catalog_service.scenes import presets_for
from catalog_service.scenes.base import ProductInfo, ProviderError
from catalog_service.schemas import preset_from_settings, settings_with_defaults
from catalog_service.security import shop_key
from catalog_service.services import current
from catalog_service.shop_settings import spent_this_month
from catalog_service.spend import load_calibration
from catalog_service.storage import AssetStorage

from .backfill import feed
from .common import fail_render, publishes, queue_push, record_usage, retries_left, retry_or_fail, scene_provider
from .refine import refine_scene

log = logging.getLogger(__name__)

MAX_REFERENCE_IMAGES = 8
"""Reference photos handed to one scene (the provider caps it further at its model's input limit)."""


class RenderFailed(Exception):
    """Permanent: written to the Render, the job ends."""


def render_product(render_id: int) -> None:
    """RQ entry point for queue `renders`."""
    svc = current()
    try:
        with svc.db.transaction() as session:
            render = session.get(Render, render_id)
            refine = render is not None and not render.status.is_finished and "refine" in render.options
            shop_id = render.shop_id if render is not None else None
            backfill_id = render.options.get("backfill_id") if render is not None else None
        svc.db.remove()
        with log_context(render=render_id, shop=shop_id, job="render"):
            if refine:
                refine_scene(render_id)
            else:
                _run(render_id)
            if backfill_id is not None and not retrying(render_id):
                feed(backfill_id)  # this product is finished: count it and queue the backfill's next one
    finally:
        svc.db.remove()


def retrying(render_id: int) -> bool:
    """Whether the render waits for another attempt (RQ will run it again). One finished, or waiting for a batch
    (no worker holds it), lets the backfill feed its next product."""
    with current().db.transaction() as session:
        render = session.get(Render, render_id)
        return render is not None and render.status in (RenderStatus.QUEUED, RenderStatus.RUNNING)


def _run(render_id: int) -> None:
    svc = current()
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        # A render waiting for its batch is moved on by jobs/batches.py, not by a job.
        if render is None or render.status.is_finished or render.status == RenderStatus.WAITING:
            log.info("render=%s nothing to do (%s)", render_id, "missing" if render is None else render.status.value)
            return
        shop = session.get(Shop, render.shop_id)
        assert shop is not None
        render.status = RenderStatus.RUNNING
        render.attempts += 1
        render.started_at = render.heartbeat_at = utcnow()
        attempt, shop_id = render.attempts, shop.id
        settings = settings_with_defaults(shop.settings)
        # A retry works from the photo the first attempt recorded, even if the product's photo changed since.
        source_url = render.source_url or next((image.src for image in render.product.images), None)
        render.source_url = source_url
        thumb_kept = render.source_thumb_key is not None
        inputs = _plan_inputs(session, shop, settings, render)
        # A backfill's scenes on OpenAI wait for a batch, at half price; webhook and manual renders never wait. A
        # render whose batch did not make some scenes (BatchScene rows `direct`) makes those with direct calls.
        batching = (svc.config.openai_batch and render.trigger == "backfill" and not inputs["batch_states"]
                    and (settings["provider"] or svc.config.scene_provider) == "openai")
    # The session is released here: nothing below holds a database connection while it fetches and renders.
    svc.db.remove()
    log.info("render=%s shop=%s stage=start attempt=%s kept=%s", render_id, shop_id, attempt,
             ",".join(inputs["kept"]) or "-")

    provider = scene_provider(settings["provider"])
    plan = _plan(svc.storage, inputs)
    publish_mode = settings["publish_mode"]
    try:
        if source_url is None:
            raise RenderFailed("The product has no images to work from.")
        if inputs["model_refused"]:
            raise RenderFailed(inputs["model_refused"])
        source = _fetch_source(source_url)
        if not thumb_kept:
            _keep_source_thumbnail(render_id, source)
        result = make_assets(
            source, plan, session=get_session(svc.config.cutout_model, svc.config.model_dir), provider=provider,
            final_attempt=not retries_left(),
            on_scene=lambda made: keep_scene(render_id, made, publish_mode),
            defer_scenes=batching and isinstance(provider, BatchingProvider),
        )
    except (RenderFailed, ImageRejected) as exc:
        fail_render(render_id, str(exc))
        return
    except (FetchError, ProviderError) as exc:
        # Transient: RQ retries with backoff, and the retry makes only the scenes still missing.
        # On the last attempt the failure is written to the row instead.
        retry_or_fail(exc, lambda reason: fail_render(render_id, reason))
        return

    # The pipeline leaves out a reference scene when there is no reference photo to place the product into.
    unplaced = [p.name for p in plan.presets
                if p.style == "reference" and not (plan.preset_references.get(p.name) or plan.references)]
    if result.deferred and isinstance(provider, BatchingProvider) and _wait_for_batch(
            render_id, result, provider, publish_mode, shop_id=shop_id):
        log.info("render=%s shop=%s stage=waiting scenes=%s", render_id, shop_id, len(result.deferred))
        return
    _save(render_id, result, publish_mode, unplaced=unplaced)
    log.info("render=%s shop=%s stage=done assets=%s errors=%s ms=%s", render_id, shop_id,
             len(result.assets), len(result.errors), result.timings_ms)


def _plan_inputs(session: Session, shop: Shop, settings: dict[str, Any], render: Render) -> dict[str, Any]:
    """Everything the plan needs from the database, read while the session is open.

    Scenes an earlier attempt of this render already made (and paid for) are kept, not planned again.
    """
    svc = current()
    options, product = render.options, render.product
    provider_name = settings["provider"] or svc.config.scene_provider
    custom = {p["name"]: preset_from_settings(p, settings["image_ratio"]) for p in settings["presets"]}
    kept = {asset.preset for asset in render.assets if asset.kind == AssetKind.SCENE}
    # Scenes in (or settled by) a batch are not planned again; those the batch did not make (`direct`) are.
    batch_states = {row.preset: row.state for row in session.scalars(
        select(BatchScene).where(BatchScene.render_id == render.id))}
    kept |= {preset for preset, state in batch_states.items() if state != BatchSceneState.DIRECT}
    wanted = presets_for(options.get("scenes") or settings["scene_presets"], provider=provider_name,
                         brand_color=settings["brand_color"], custom=custom, image_ratio=settings["image_ratio"])
    refs = session.execute(
        select(ReferenceImage.id, ReferenceImage.storage_key).where(ReferenceImage.shop_id == shop.id)
        .order_by(ReferenceImage.id)
    ).all()
    keys_by_id = {row.id: row.storage_key for row in refs}

    def keys_for(ids: list[int]) -> list[str]:
        """The shop's stored reference photos with these ids, in the order given, capped."""
        return [keys_by_id[i] for i in ids if i in keys_by_id][:MAX_REFERENCE_IMAGES]

    # A manual regenerate may name its references; otherwise every reference photo of the shop.
    default_keys = keys_for(options.get("reference_image_ids") or list(keys_by_id))
    # What this month's paid calls cost so far, earlier attempts of this render included.
    spent = spent_this_month(session, shop.id) + reserved_for_batches(session, shop.id)
    return {
        "settings": settings,
        "presets": [preset for preset in wanted if preset.name not in kept],
        "kept": sorted(kept),
        "batch_states": batch_states,
        "default_keys": default_keys,
        "preset_keys": {p["name"]: keys_for(p["reference_image_ids"]) for p in settings["presets"]
                        if p["reference_image_ids"]},
        "product": ProductInfo(
            title=product.title, description=product.description, product_type=product.product_type,
            vendor=product.vendor, tags=tuple(product.tags),
        ),
        "prompt": options.get("prompt", ""),
        # A manual regenerate may leave the cutout out; otherwise the shop's cutout.enabled decides.
        "keep_cutout": settings["cutout"]["enabled"] if options.get("cutout") is None else bool(options["cutout"]),
        "shop_id": shop.id,
        "budget_left": max(0.0, settings["monthly_budget_usd"] - spent),
        # Estimates learn from what this model, quality and size really cost us lately.
        "calibration": load_calibration(session, shop.id, provider_name) if provider_name == "openai" else None,
        "model_refused": refusal(session, settings["model"] or svc.config.openai_model)
        if provider_name == "openai" else None,
    }


def _plan(storage: AssetStorage, inputs: dict[str, Any]) -> RenderPlan:
    svc = current()
    settings = inputs["settings"]
    cutout_settings = settings["cutout"]
    presets = inputs["presets"]
    if inputs["prompt"]:
        # A one-off prompt from a manual regenerate adds to every scene's own.
        presets = [dataclasses.replace(p, prompt=f"{p.prompt} {inputs['prompt']}".strip()) for p in presets]
    return RenderPlan(
        cutout=cutout_options(cutout_settings, svc.config.cutout_max_side),
        cutout_format=cutout_settings["format"],
        keep_cutout=inputs["keep_cutout"],
        white=cutout_settings["white"],
        presets=presets,
        references=[storage.get(key) for key in inputs["default_keys"]],
        preset_references={name: [storage.get(key) for key in keys] for name, keys in inputs["preset_keys"].items()},
        product=inputs["product"],
        shop_key=shop_key(inputs["shop_id"], svc.config.secret_key),
        model=settings["model"],
        max_pixels=svc.config.max_pixels,
        budget_usd=inputs["budget_left"],
        concurrency=svc.config.scene_concurrency,
        signer=svc.c2pa_signer,
        calibration=inputs["calibration"],
    )


def _fetch_source(url: str) -> bytes:
    svc = current()
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


def _keep_source_thumbnail(render_id: int, source: bytes) -> None:
    """A small copy of the photo this render is made from, so its card shows it after the shop's photo changes
    (or the shop deletes the file). Raises ImageRejected for a photo that cannot be decoded, as the cutout would."""
    svc = current()
    key = svc.storage.put(thumbnail(source, max_pixels=svc.config.max_pixels), ext=SOURCE_THUMB_FORMAT)
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is not None:
            render.source_thumb_key = key


def keep_scene(render_id: int, made: MadeAsset, publish_mode: str,
               *, also: Callable[[Session], None] | None = None) -> None:
    """A scene the moment it is made: stored, its Asset row and the record of its cost committed at once,
    so a later failure of another scene loses neither, and a retry finds it and does not pay for it again.
    `also` writes, in the same transaction, what else must not outlive or predate it (a batch scene's state)."""
    svc = current()
    key = svc.storage.put(made.data, ext=made.ext)
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is None:
            log.info("render=%s deleted while running; scene %s dropped", render_id, made.preset)
            return
        record_usage(session, render.shop_id, render.id, made, quality=made.quality)
        if also is not None:
            also(session)
        if render.status == RenderStatus.CANCELLED:
            return  # the product was deleted or the app uninstalled while we worked: the cost counts, the scene not
        _set_asset(session, render, made, key, publish_mode)
    log.info("render=%s scene=%s kept cost_usd=%.4f", render_id, made.preset, made.cost_usd)


def _set_asset(session: Session, render: Render, made: MadeAsset, key: str, publish_mode: str) -> None:
    """The render's row for this kind and preset; a re-run overwrites it instead of adding a duplicate."""
    asset = next((a for a in render.assets if (a.kind, a.preset) == (AssetKind(made.kind), made.preset)), None)
    if asset is None:
        asset = Asset(shop_id=render.shop_id, render_id=render.id, kind=AssetKind(made.kind), preset=made.preset)
        render.assets.append(asset)
    asset.storage_key, asset.content_type = key, made.content_type
    asset.width, asset.height, asset.bytes = made.width, made.height, len(made.data)
    asset.cost_usd, asset.estimate_usd = made.cost_usd, made.estimate_usd
    asset.fidelity, asset.source_type, asset.hold_reason = made.fidelity, made.source_type, made.hold_reason
    # A scene whose product changed never publishes by itself: it waits for the merchant, with the reason.
    held = publish_mode != "auto" or made.hold_reason is not None
    asset.push_status = PushStatus.HELD if held else PushStatus.PENDING


def _save(render_id: int, result: PipelineResult, publish_mode: str, *, unplaced: list[str]) -> None:
    """The free assets (cutout, white) and the render's outcome; its scenes were kept as they were made.

    A render that ends with no image at all is `failed`, with the reason, never "done".
    """
    svc = current()
    free = [made for made in result.assets if made.kind != "scene"]
    stored = [(made, svc.storage.put(made.data, ext=made.ext)) for made in free]
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is None or render.status == RenderStatus.CANCELLED:
            # The product was deleted or the app uninstalled while we worked: keep nothing more.
            log.info("render=%s cancelled while running; results dropped", render_id)
            return
        for made, key in stored:
            _set_asset(session, render, made, key, publish_mode)
        errors = settle_batch_scenes(session, render) + result.errors
        render.errors = errors
        render.timings = {**render.timings, **result.timings_ms}
        end_render(session, render, errors, unplaced=unplaced)
        push = bool(render.assets) and publishes(session, render, publish_mode)
    if push:
        queue_push(render_id)


def end_render(session: Session, render: Render, errors: list[dict[str, str]], *, unplaced: list[str]) -> None:
    """The render's outcome from its assets and its scenes' errors: succeeded, partial, or failed with the reason
    when it made no image at all (never "done")."""
    summary = "; ".join(f"{e['preset']}: {e['message']}" for e in errors)
    render.status = RenderStatus.PARTIAL if errors else RenderStatus.SUCCEEDED
    render.last_error = summary or None
    if not render.assets:
        render.status, render.last_error = RenderStatus.FAILED, nothing_made(summary, unplaced)
    render.finished_at = utcnow()


def reserved_for_batches(session: Session, shop_id: int) -> float:
    """What the shop's scenes waiting in batches are estimated to cost (at the batch price): spent already, as far
    as the budget is concerned, until each is made and recorded."""
    return float(session.scalar(
        select(func.coalesce(func.sum(BatchScene.estimate_usd), 0.0))
        .where(BatchScene.shop_id == shop_id,
               BatchScene.state.in_([BatchSceneState.PENDING, BatchSceneState.SUBMITTED]))) or 0.0)


def settle_batch_scenes(session: Session, render: Render) -> list[dict[str, str]]:
    """The render's batch scenes at its end: those its direct calls made are done, the others failed (their
    reasons are in this run's errors); returns the errors of the scenes the batch refused, for the render's."""
    made = {asset.preset for asset in render.assets if asset.kind == AssetKind.SCENE}
    errors: list[dict[str, str]] = []
    for row in session.scalars(select(BatchScene).where(BatchScene.render_id == render.id).order_by(BatchScene.id)):
        if row.state == BatchSceneState.DIRECT:
            row.state = BatchSceneState.DONE if row.preset in made else BatchSceneState.FAILED
        elif row.state == BatchSceneState.FAILED and row.error:
            errors.append(dict(row.error))
    return errors


def _wait_for_batch(render_id: int, result: PipelineResult, provider: BatchingProvider, publish_mode: str,
                    *, shop_id: int) -> bool:
    """The render's cutout and white variant kept, and each deferred scene written as a BatchScene (its edit's
    images in the asset storage) for jobs/batches.py to send; the render then waits. False when no scene could
    be prepared (the render ends as usual, with their reasons)."""
    svc = current()
    rows: list[BatchScene] = []
    cutout_key = ""
    for deferred in result.deferred:
        request = deferred.request
        custom_id = f"render-{render_id}-{request.preset.name}"
        try:
            edit, context = provider.prepare_batch(request, custom_id)
        except ProviderError as exc:
            result.errors.append({"preset": request.preset.name, "reason": exc.reason, "message": str(exc)})
            continue
        cutout_key = cutout_key or svc.storage.put(request.cutout_png, ext="png")

        def stored(image: tuple[str, bytes, str]) -> list[str]:
            name, data, mime = image
            return [name, svc.storage.put(data, ext=_EXT_OF_MIME[mime]), mime]

        rows.append(BatchScene(
            shop_id=shop_id, render_id=render_id, preset=request.preset.name, custom_id=custom_id,
            model=edit.model, estimate_usd=deferred.estimate_usd,
            edit={"model": edit.model, "prompt": edit.prompt, "images": [stored(image) for image in edit.images],
                  "mask": stored(edit.mask) if edit.mask is not None else None, "size": edit.size,
                  "quality": edit.quality, "output_format": edit.output_format,
                  "output_compression": edit.output_compression, "input_fidelity": edit.input_fidelity,
                  "background": edit.background, "safety_identifier": edit.safety_identifier},
            context={"provider": context, "cutout_key": cutout_key, "quality": request.preset.quality,
                     "text": request.text, "text_mode": request.text_mode, "publish_mode": publish_mode},
        ))
    if not rows:
        return False
    # Scenes already refused (the budget, an invalid preset) are rows too, settled: a direct run after the batch
    # does not try them again, and the render's end reports them.
    rows += [BatchScene(shop_id=shop_id, render_id=render_id, preset=error["preset"], model="",
                        custom_id=f"render-{render_id}-{error['preset']}", state=BatchSceneState.FAILED, error=error)
             for error in result.errors]
    free = [(made, svc.storage.put(made.data, ext=made.ext)) for made in result.assets if made.kind != "scene"]
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is None or render.status == RenderStatus.CANCELLED:
            log.info("render=%s cancelled while running; results dropped", render_id)
            return True
        for made, key in free:
            _set_asset(session, render, made, key, publish_mode)
        session.add_all(rows)
        render.status, render.errors, render.timings = RenderStatus.WAITING, result.errors, result.timings_ms
        render.last_error = None
    return True


_EXT_OF_MIME = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def nothing_made(summary: str, unplaced: list[str]) -> str:
    """Why a render made no image: the cutout was off and no scene could be made (each scene's reason)."""
    if summary:
        return f"No image was made: the cutout is off for this render and no scene could be made. {summary}"
    if unplaced:
        return ("No image was made: the reference scene places the product into your reference photos, and the "
                "shop has none. Add a reference image in Settings, or choose another scene.")
    return "No image was made: no scene was asked for and the cutout is off for this render."
