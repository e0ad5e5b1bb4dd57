"""Backfill scenes through OpenAI's Batch API: submit what waits, poll what runs, finish what came back.

A backfill render on OpenAI makes its cutout and white variant at once and leaves each scene as a BatchScene row
(jobs/render.py), then waits (RenderStatus.WAITING). `run_batches`, on every sweep, moves the rows on:

1. Rows being submitted when a process died (their `submission` key set, no batch stored) are looked up with
   `OpenAIBatchClient.find`: a batch that exists is adopted, otherwise the rows are submitted again.
2. Pending rows are submitted, a group at a time, one model a group; each batch is stored the moment it exists.
3. Each stored batch is polled; once it has ended its results are read (skipping scenes already recorded):
   an image is finished by the provider (`finish`, at the batch price) and the pipeline (`finish_scene`: the
   fidelity check, the hold reason, the signing), then kept with its usage record in one transaction, and the
   row marked done in the same one, so a result read twice is never paid twice. A line error that a direct call
   may not meet, and every scene a failed, expired or cancelled batch did not make, is marked `direct`; a
   permanent refusal marks the scene failed with its reason. The batch's files are deleted after.
4. A waiting render whose rows are all settled ends as a render does (status, push queued) and feeds its
   backfill; one with `direct` rows is queued again, and its job makes those scenes with direct calls.

The database says where everything stands; a Redis lock only keeps two sweepers from submitting the same rows.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from PIL import Image
from redis.exceptions import LockError
from sqlalchemy import select

from catalog_service.models import (
    BatchScene,
    BatchSceneState,
    Product,
    Render,
    RenderStatus,
    SceneBatch,
    Shop,
    utcnow,
)
from catalog_service.pipeline import BatchingProvider, finish_scene
from catalog_service.scenes.base import ProviderError, SceneRefused
from catalog_service.scenes.openai_batch import BatchEdit, BatchResult, BatchState, OpenAIBatchClient, SubmittedBatch
from catalog_service.schemas import settings_with_defaults
from catalog_service.services import Services, install
from catalog_service.storage import StorageError

from .backfill import feed
from .common import publishes, queue_push
from .queues import enqueue_render
from .render import end_render, keep_scene

log = logging.getLogger(__name__)

LOCK_KEY = "catalog:batches"
LOCK_S = 1800
"""Seconds the run's Redis lock lives if its holder dies without releasing it."""
SCENES_PER_SUBMISSION = 100
"""Scenes submitted together: their images are held in memory while uploaded (a placed canvas is a few MB)."""

_OPEN = (BatchSceneState.PENDING, BatchSceneState.SUBMITTED)


def run_batches(svc: Services) -> dict[str, int]:
    """One turn: recover, submit, poll and read, end the renders whose scenes are all settled. Returns counts."""
    install(svc)  # keep_scene and the render helpers take the process's services from there
    counts = dict.fromkeys(("submitted", "made", "failed", "direct", "batches_ended", "renders_ended",
                            "renders_requeued"), 0)
    lock = svc.redis.lock(LOCK_KEY, timeout=LOCK_S)
    if not lock.acquire(blocking=False):
        log.info("batches: another process is running them; skipped")
        return counts
    try:
        if not _anything_to_do(svc):
            return counts
        provider = _provider(svc)
        if provider is None:
            _all_direct(svc, counts)
        else:
            client = provider.batch_client()
            _recover(svc, client)
            _submit(svc, client, counts)
            _collect(svc, provider, client, counts)
        _settle_renders(svc, counts)
    finally:
        try:
            lock.release()
        except LockError:  # expired meanwhile: nothing of ours to release
            pass
    if any(counts.values()):
        log.info("batches %s", " ".join(f"{name}={value}" for name, value in counts.items()))
    return counts


def _anything_to_do(svc: Services) -> bool:
    """Whether a scene or a batch is still open, or a render waits (most sweeps of most services: no)."""
    with svc.db.transaction() as session:
        return any(session.scalar(query.limit(1)) is not None for query in (
            select(BatchScene.id).where(BatchScene.state.in_(_OPEN)),
            select(SceneBatch.id).where(SceneBatch.status != "cleaned"),
            select(Render.id).where(Render.status == RenderStatus.WAITING)))


def _provider(svc: Services) -> BatchingProvider | None:
    try:
        provider = svc.provider("openai")
    except ProviderError as exc:
        log.warning("batches: no OpenAI provider (%s); waiting scenes go to direct calls", exc)
        return None
    return provider if isinstance(provider, BatchingProvider) else None


def _all_direct(svc: Services, counts: dict[str, int]) -> None:
    """Without a provider that batches, nothing can be submitted: the renders' own jobs make (or refuse) them."""
    with svc.db.transaction() as session:
        for row in session.scalars(select(BatchScene).where(BatchScene.state == BatchSceneState.PENDING,
                                                            BatchScene.submission.is_(None))):
            row.state = BatchSceneState.DIRECT
            counts["direct"] += 1


# 1. recovering submissions cut short


def _recover(svc: Services, client: OpenAIBatchClient) -> None:
    """Rows left `pending` with a submission key: the process died between marking them and storing their batch.
    A batch OpenAI holds for the key is adopted (read like any other); without one the rows are submitted again."""
    with svc.db.transaction() as session:
        submissions = list(session.scalars(
            select(BatchScene.submission).where(BatchScene.state == BatchSceneState.PENDING,
                                                BatchScene.submission.is_not(None)).distinct()))
    for submission in submissions:
        assert submission is not None
        try:
            found = client.find(submission)
        except ProviderError as exc:
            log.warning("batches: submission=%s not looked up (%s); next turn", submission, exc)
            continue
        with svc.db.transaction() as session:
            known = set(session.scalars(select(SceneBatch.batch_id).where(SceneBatch.batch_id.in_(found))))
            for batch_id in found:
                if batch_id not in known:
                    session.add(SceneBatch(batch_id=batch_id, submission=submission, submitted={}))
            rows = session.scalars(select(BatchScene).where(BatchScene.submission == submission,
                                                            BatchScene.state == BatchSceneState.PENDING)).all()
            for row in rows:
                if found:
                    # Which of the submission's batches holds the row shows in the results, by custom_id.
                    row.state, row.batch_id = BatchSceneState.SUBMITTED, found[0]
                else:
                    row.submission = None
        log.info("batches: submission=%s recovered batches=%s rows=%d", submission, ",".join(found) or "-",
                 len(rows))


# 2. submitting


def _submit(svc: Services, client: OpenAIBatchClient, counts: dict[str, int]) -> None:
    """Every pending row of a waiting render into a batch, SCENES_PER_SUBMISSION at a time, one model a group."""
    while True:
        key = f"scenes-{uuid.uuid4().hex}"
        with svc.db.transaction() as session:
            rows = session.execute(
                select(BatchScene, Render.status, Product.deleted)
                .join(Render, Render.id == BatchScene.render_id).join(Product, Product.id == Render.product_id)
                .where(BatchScene.state == BatchSceneState.PENDING, BatchScene.submission.is_(None))
                .order_by(BatchScene.id).limit(SCENES_PER_SUBMISSION)).all()
            if not rows:
                return
            model = rows[0][0].model
            chosen: list[int] = []
            for row, status, deleted in rows:
                if status != RenderStatus.WAITING or deleted:
                    # The render was cancelled or the product deleted since: nothing to pay for.
                    row.state = BatchSceneState.FAILED
                    row.error = {"preset": row.preset, "reason": "cancelled",
                                 "message": "Not made: the product was deleted or the render cancelled."}
                elif row.model == model:
                    row.submission = key
                    chosen.append(row.id)
            edits_of = {row.id: dict(row.edit) for row, _, _ in rows if row.id in chosen}
            custom_ids = {row.id: row.custom_id for row, _, _ in rows if row.id in chosen}
        if chosen and not _submit_group(svc, client, key, chosen, [(custom_ids[i], edits_of[i]) for i in chosen],
                                        counts):
            return  # OpenAI is not answering: the rest waits for the next turn


def _submit_group(svc: Services, client: OpenAIBatchClient, key: str, ids: list[int],
                  lines: list[tuple[str, dict[str, Any]]], counts: dict[str, int]) -> bool:
    """One group submitted (or sent to direct calls); False when OpenAI failed for a reason that may pass."""
    try:
        edits = [batch_edit(svc, custom_id, fields) for custom_id, fields in lines]
    except StorageError as exc:  # an input image is gone: the render's own job makes the scenes from the photo
        log.warning("batches: submission=%s inputs missing (%s); made directly", key, exc)
        _mark(svc, ids, BatchSceneState.DIRECT, counts)
        return True
    try:
        for submitted in client.iter_submit(edits, submission=key):
            with svc.db.transaction() as session:
                session.add(SceneBatch(batch_id=submitted.batch_id, submission=key, submitted=submitted.to_dict()))
                for row in session.scalars(select(BatchScene).where(
                        BatchScene.custom_id.in_(submitted.custom_ids))):
                    row.state, row.batch_id = BatchSceneState.SUBMITTED, submitted.batch_id
            counts["submitted"] += len(submitted.custom_ids)
    except SceneRefused as exc:
        # OpenAI (or the client's own checks) will not take these lines: direct calls say per scene what is wrong.
        log.warning("batches: submission=%s refused (%s); made directly", key, exc)
        with svc.db.transaction() as session:
            still = list(session.scalars(select(BatchScene.id).where(BatchScene.submission == key,
                                                                     BatchScene.state == BatchSceneState.PENDING)))
        _mark(svc, still, BatchSceneState.DIRECT, counts)
    except ProviderError as exc:
        # A batch may have been created before the error (a lost answer): the submission key stays, and the
        # next turn looks it up (find) before anything is sent again.
        log.warning("batches: submission=%s interrupted (%s); looked up next turn", key, exc)
        return False
    return True


def batch_edit(svc: Services, custom_id: str, fields: dict[str, Any]) -> BatchEdit:
    """The row's edit with its images read back from the asset storage."""
    def image(entry: list[str]) -> tuple[str, bytes, str]:
        name, storage_key, mime = entry
        return name, svc.storage.get(storage_key), mime

    return BatchEdit(
        custom_id=custom_id, model=fields["model"], prompt=fields["prompt"],
        images=tuple(image(entry) for entry in fields["images"]),
        mask=image(fields["mask"]) if fields.get("mask") else None, size=fields["size"], quality=fields["quality"],
        output_format=fields["output_format"], output_compression=fields.get("output_compression"),
        input_fidelity=fields.get("input_fidelity"), background=fields.get("background"),
        safety_identifier=fields.get("safety_identifier") or "",
    )


def _mark(svc: Services, ids: Iterable[int], state: BatchSceneState, counts: dict[str, int]) -> None:
    ids = list(ids)
    with svc.db.transaction() as session:
        for row in session.scalars(select(BatchScene).where(BatchScene.id.in_(ids))):
            row.state = state
    counts[state.value] = counts.get(state.value, 0) + len(ids)


# 3. polling and reading


def _collect(svc: Services, provider: BatchingProvider, client: OpenAIBatchClient, counts: dict[str, int]) -> None:
    with svc.db.transaction() as session:
        batches = [(b.id, b.batch_id, b.submission, dict(b.submitted), b.status) for b in session.scalars(
            select(SceneBatch).where(SceneBatch.status.in_(["submitted", "ended"])).order_by(SceneBatch.id))]
    for row_id, batch_id, submission, submitted, status in batches:
        if status == "submitted":
            try:
                state = client.poll(batch_id)
                if not state.is_terminal:
                    continue
                _read(svc, provider, client, state, counts)
            except ProviderError as exc:
                log.warning("batches: batch=%s not read (%s); next turn", batch_id, exc)
                continue
            _ended(svc, row_id, submission, state, counts)
        try:
            client.cleanup(SubmittedBatch.from_dict(submitted) if submitted else batch_id)
        except (ProviderError, ValueError) as exc:
            log.warning("batches: batch=%s files not deleted yet (%s)", batch_id, exc)
            continue
        with svc.db.transaction() as session:
            found = session.get(SceneBatch, row_id)
            if found is not None:
                found.status = "cleaned"


def _read(svc: Services, provider: BatchingProvider, client: OpenAIBatchClient, state: BatchState,
          counts: dict[str, int]) -> None:
    """Each answered line of an ended batch, once: made, sent direct, or failed."""
    with svc.db.transaction() as session:
        open_ids = set(session.scalars(select(BatchScene.custom_id).where(BatchScene.state.in_(_OPEN))))
    skip = _Except(open_ids)
    for result in client.results(state, skip=skip):
        with svc.db.transaction() as session:
            row = session.scalar(select(BatchScene).where(BatchScene.custom_id == result.custom_id))
            if row is None or row.state not in _OPEN:
                continue
            row_id, render_id, preset = row.id, row.render_id, row.preset
            context, estimate = dict(row.context), row.estimate_usd
            shop = session.get(Shop, row.shop_id)
            publish_mode = settings_with_defaults(shop.settings)["publish_mode"] if shop else "review"
        if result.ok:
            try:
                _make(svc, provider, result, row_id, render_id, preset, context, estimate, publish_mode)
                counts["made"] += 1
            except (ProviderError, StorageError) as exc:  # an unreadable answer, a lost cutout: a direct call
                log.warning("batches: %s not finished (%s); made directly", result.custom_id, exc)
                _mark(svc, [row_id], BatchSceneState.DIRECT, counts)
        elif result.retry_direct:
            _mark(svc, [row_id], BatchSceneState.DIRECT, counts)
        else:
            assert result.error is not None
            with svc.db.transaction() as session:
                found = session.get(BatchScene, row_id)
                if found is not None:
                    found.state = BatchSceneState.FAILED
                    found.error = {"preset": preset, "reason": result.error.reason, "message": str(result.error)}
            counts["failed"] += 1


class _Except:
    """`skip` for OpenAIBatchClient.results: every custom_id but the open ones (a batch may hold other rows')."""

    def __init__(self, wanted: set[str]) -> None:
        self._wanted = wanted

    def __contains__(self, custom_id: object) -> bool:
        return custom_id not in self._wanted


def _make(svc: Services, provider: BatchingProvider, result: BatchResult, row_id: int, render_id: int, preset: str,
          context: dict[str, Any], estimate: float, publish_mode: str) -> None:
    """The scene from its batch answer, finished as a direct one is, kept with its usage and the row done at once."""
    assert result.data is not None
    cutout_png = svc.storage.get(context["cutout_key"])
    scene = provider.finish(context["provider"], result.data, result.raw_usage, cutout_png=cutout_png, batch=True)
    with Image.open(io.BytesIO(cutout_png)) as decoded:
        cutout = decoded.convert("RGBA")
    made = finish_scene(scene, preset=preset, quality=context.get("quality", ""), text=context.get("text", ""),
                        text_mode=context.get("text_mode", ""), cutout=cutout, signer=svc.c2pa_signer,
                        estimate_usd=estimate)

    def done(session: Any) -> None:
        row = session.get(BatchScene, row_id)
        if row is not None:
            row.state = BatchSceneState.DONE

    keep_scene(render_id, made, publish_mode, also=done)


def _ended(svc: Services, row_id: int, submission: str, state: BatchState, counts: dict[str, int]) -> None:
    """The batch is read. Once every batch of its submission has ended, what none of them made goes direct."""
    with svc.db.transaction() as session:
        batch = session.get(SceneBatch, row_id)
        assert batch is not None
        batch.status, batch.outcome = "ended", state.describe()
        running = session.scalar(select(SceneBatch.id).where(SceneBatch.submission == submission,
                                                             SceneBatch.status == "submitted").limit(1))
        left = [] if running is not None else session.scalars(select(BatchScene).where(
            BatchScene.submission == submission, BatchScene.state.in_(_OPEN))).all()
        for row in left:
            row.state = BatchSceneState.DIRECT
    counts["batches_ended"] += 1
    counts["direct"] += len(left)
    log.info("batches: %s; %d scenes left to direct calls", state.describe(), len(left))


# 4. ending the renders


def _settle_renders(svc: Services, counts: dict[str, int]) -> None:
    """Waiting renders whose scenes are all settled end; those with scenes left to direct calls are queued again."""
    with svc.db.transaction() as session:
        waiting = list(session.scalars(select(Render.id).where(Render.status == RenderStatus.WAITING)))
    for render_id in waiting:
        requeue, push, backfill_id = False, False, None
        with svc.db.transaction() as session:
            render = session.get(Render, render_id, with_for_update=True)
            if render is None or render.status != RenderStatus.WAITING:
                continue
            rows = session.scalars(select(BatchScene).where(BatchScene.render_id == render_id)).all()
            if any(row.state in _OPEN for row in rows):
                continue
            backfill_id = render.options.get("backfill_id")
            if any(row.state == BatchSceneState.DIRECT for row in rows):
                render.status, render.updated_at = RenderStatus.QUEUED, utcnow()
                requeue = True
            else:
                shop = session.get(Shop, render.shop_id)
                publish_mode = settings_with_defaults(shop.settings)["publish_mode"] if shop else "review"
                errors = [dict(row.error) for row in rows if row.state == BatchSceneState.FAILED and row.error]
                render.errors = errors
                end_render(session, render, errors, unplaced=[])
                push = bool(render.assets) and publishes(session, render, publish_mode)
        if requeue:
            # Not taken by Redis: the render stays queued in the database and the sweeper queues it again.
            enqueue_render(svc.redis, render_id, timeout_s=svc.config.render_timeout_s, backfill=True)
            counts["renders_requeued"] += 1
            continue
        counts["renders_ended"] += 1
        if push:
            queue_push(render_id)
        if backfill_id is not None:
            feed(backfill_id, svc)
