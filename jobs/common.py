"""What every job shares: retry or fail on an error, the usage record of a paid call, a failed render."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from rq import get_current_job
from sqlalchemy.orm import Session

from catalog_service.http import FetchError
from catalog_service.models import PushStatus, Render, RenderStatus, Shop, UsageRecord, utcnow
from catalog_service.scenes.base import ProviderError, SceneProvider, UnavailableProvider
from catalog_service.services import current
from catalog_service.stores.base import StoreError

from .queues import enqueue_push

log = logging.getLogger(__name__)

JobError = FetchError | ProviderError | StoreError
"""The errors a job may retry: each says whether trying again later can help (`retryable`)."""


def retries_left() -> bool:
    """Whether RQ would run the current job again if it failed now (False outside a worker)."""
    job = get_current_job()
    return job is not None and bool(job.retries_left)


def will_retry(exc: JobError) -> bool:
    """Whether RQ runs this job again after `exc`: the error is transient and the job has retries left."""
    return exc.retryable and retries_left()


def retry_or_fail(
    exc: JobError, on_final: Callable[[str], None], *, on_retry: Callable[[str], None] | None = None
) -> None:
    """Raise `exc` for RQ to retry while that can help (after `on_retry(reason)`, if given); otherwise
    `on_final(reason)` writes the outcome and the job ends normally.

    Called inside the `except` that caught `exc`. A job never raises on its last attempt, so nothing it
    owns is left half done (a render `running`, an asset `pending`) when RQ gives up. Only the retry's
    reason promises another try: errors' own messages do not, so a final one never says "we will retry".
    """
    if will_retry(exc):
        if on_retry is not None:
            on_retry(f"{exc}; we will retry")
        # The one line an operator gets for an expected failure: the job's log context adds the render and
        # shop; the worker leaves out RQ's traceback for it (jobs/worker.py, expected_failure).
        job = get_current_job()
        log.warning("transient failure, will retry (%s retries left): %s", job.retries_left if job else 0, exc)
        raise exc
    on_final(str(exc))


class PaidCall(Protocol):
    """What a provider's answer says about its cost (a SceneResult, a MadeAsset)."""

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def cost_usd(self) -> float: ...

    @property
    def usage(self) -> Mapping[str, int]: ...

    @property
    def size(self) -> str: ...

    @property
    def estimate_usd(self) -> float | None: ...


def record_usage(session: Session, shop_id: int, render_id: int | None, result: PaidCall, *, quality: str = "") -> None:
    """One priced record per paid call: what the shop's usage page and its budget add up, and what calibrates the
    next estimates (catalog_service/spend.py): the size asked of the model and what was estimated before the call.
    Free calls add none."""
    if not (result.usage or result.cost_usd):
        return
    session.add(UsageRecord(
        shop_id=shop_id, render_id=render_id, provider=result.provider or "unknown", model=result.model,
        quality=quality, input_text_tokens=result.usage.get("input_text_tokens", 0),
        input_image_tokens=result.usage.get("input_image_tokens", 0),
        output_tokens=result.usage.get("output_tokens", 0), cost_usd=result.cost_usd,
        size=result.size or "", estimate_usd=result.estimate_usd or None,
    ))


def scene_provider(name: str) -> SceneProvider:
    """The shop's provider; one that cannot be built refuses every scene with the reason, and cutouts still ship."""
    try:
        return current().provider(name)
    except ProviderError as exc:
        return UnavailableProvider(str(exc), reason=exc.reason)


def fail_render(render_id: int, message: str) -> None:
    """The render ends with the reason: `failed`, or `partial` when scenes it already made and paid for
    are kept, and those still go to the shop (a retry that fails for good never strands them)."""
    svc = current()
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is None:
            return
        kept = [asset for asset in render.assets if asset.push_status in (PushStatus.PENDING, PushStatus.HELD)]
        render.status = RenderStatus.PARTIAL if kept else RenderStatus.FAILED
        render.last_error = message
        render.finished_at = utcnow()
        push = any(asset.push_status == PushStatus.PENDING for asset in kept) and publishes(session, render, "auto")
    log.warning("render=%s stage=failed kept=%s error=%s", render_id, len(kept), message)
    if push:
        queue_push(render_id)


def publishes(session: Session, render: Render, publish_mode: str) -> bool:
    """Whether a finished render's assets go to the shop now: auto mode, the product and the shop still there."""
    shop = session.get(Shop, render.shop_id)
    return publish_mode == "auto" and not render.product.deleted and shop is not None and shop.active


def queue_push(render_id: int) -> None:
    """Queue the push of the render's pending assets (after the commit that made them pending)."""
    svc = current()
    enqueue_push(svc.redis, render_id, timeout_s=svc.config.push_timeout_s)
