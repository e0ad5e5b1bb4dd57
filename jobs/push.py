"""The push job: send a render's pending assets to its shop, each exactly once."""

from __future__ import annotations

import contextlib
import functools
import logging
import string
import threading
from collections.abc import Callable, Iterator, Sequence

from redis.exceptions import LockError, RedisError
from redis.lock import Lock
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog_service.connectors import connector_for
from catalog_service.logs import bind, log_context
from catalog_service.models import Asset, PushStatus, Render, Shop, utcnow
from catalog_service.schemas import settings_with_defaults
from catalog_service.services import current
from catalog_service.stores.base import (
    PushAsset,
    PushResult,
    StoreConnector,
    StoreError,
    UpstreamError,
    asset_filename,
)

from .common import retry_or_fail, will_retry

log = logging.getLogger(__name__)

KIND_LABELS = {"cutout": "cutout", "white": "white background", "scene": "scene"}

PRODUCT_LOCK_WAIT_S = 60
"""Longest a push waits for another push to the same product before it is retried later."""

PRODUCT_LOCK_TTL_S = 10
"""Lifetime of a product's push lock; the running push renews it, a dead one's lapses after this."""


def push_render(render_id: int) -> None:
    """RQ entry point for queue `pushes`."""
    svc = current()
    try:
        with log_context(render=render_id, job="push"):
            _run(render_id)
    finally:
        svc.db.remove()


_Pending = tuple[int, str, dict[str, str]]
"""An asset waiting to be pushed: its id, its storage key and its description (_describe)."""

_OWN_DATA_ERRORS = (ValueError, LookupError, AttributeError, TypeError)
"""What filling in an asset's description raises when the shop's own data cannot be used (an alt-text
template saved before it was checked, text that is not valid Unicode). Trying again cannot help."""


def _run(render_id: int) -> None:
    svc = current()
    connector: StoreConnector | None = None
    unusable: StoreError | None = None
    with svc.db.transaction() as session:
        render = session.get(Render, render_id)
        if render is None:
            return
        shop = session.get(Shop, render.shop_id)
        assert shop is not None
        bind(shop=shop.id)
        try:
            connector = connector_for(shop, svc.config, svc.db)
        except StoreError as exc:
            unusable = exc
        settings = settings_with_defaults(shop.settings)
        template = settings["alt_template"]
        product = render.product
        pending: list[_Pending] = []
        unusable_data: list[tuple[int, str]] = []
        for asset in render.assets:
            if asset.push_status != PushStatus.PENDING:
                continue
            try:
                pending.append(
                    (asset.id, asset.storage_key, _describe(asset, product.external_id, product.title, template)))
            except _OWN_DATA_ERRORS as exc:
                unusable_data.append((asset.id, _own_data_error(exc)))
        product_id, shop_id = product.external_id, shop.id
        earlier = _replaced(session, render) if settings["on_regenerate"] == "replace" else []
    svc.db.remove()

    for asset_id, error in unusable_data:
        log.warning("render=%s asset=%s cannot be described: %s", render_id, asset_id, error)
        _record(asset_id, error=error, final=True)

    if connector is None:
        # No usable credentials (or the token endpoint is down): say so on every asset; retry if it may pass.
        assert unusable is not None
        asset_ids = [asset_id for asset_id, _key, _described in pending]
        _failed(unusable, asset_ids)
        return
    try:
        with _one_push_per_product(shop_id, product_id):
            _push_all_of(render_id, connector, product_id, pending)
            if earlier and connector.can_delete:
                _remove_earlier(render_id, connector, product_id, earlier)
    except _ProductBusy as exc:
        _failed(exc, [asset_id for asset_id, _key, _described in pending])
    finally:
        connector.close()  # its HTTP session: one per push job, never leaked


class _ProductBusy(UpstreamError):
    """Another push to the same product did not finish in time; this one is tried again later."""


@contextlib.contextmanager
def _one_push_per_product(shop_id: int, product_id: str) -> Iterator[None]:
    """Hold the product's push lock (in Redis) while this job changes the product.

    A store checks for our image before adding it, so two pushes to one product at once (two renders of
    it, or a regenerate right after a webhook, on two workers) both found none and both added it; and a
    WooCommerce push rewrites the product's whole image list. One at a time per product prevents both.
    The lock is short-lived and kept alive while the push runs, so a worker killed mid-push holds up the
    next push of that product by PRODUCT_LOCK_TTL_S at most.
    """
    svc = current()
    lock = svc.redis.lock(f"catalog:push-lock:{shop_id}:{product_id}", timeout=PRODUCT_LOCK_TTL_S,
                          blocking_timeout=PRODUCT_LOCK_WAIT_S)
    try:
        held = lock.acquire()
    except RedisError as exc:
        # Without Redis no RQ worker runs, so no other push can race this one (the demo runs in-process then).
        log.warning("shop=%s product=%s push runs without its lock: Redis does not answer (%s)", shop_id,
                    product_id, exc)
        held = None
    if held is False:
        raise _ProductBusy("Another push to this product is still running.")
    done = threading.Event()
    keeper = threading.Thread(target=_keep_lock, args=(lock, done), daemon=True) if held else None
    if keeper is not None:
        keeper.start()
    try:
        yield
    finally:
        done.set()
        if keeper is not None:
            keeper.join(timeout=5)
            try:
                lock.release()
            except (LockError, RedisError):
                log.warning("shop=%s product=%s push lock lapsed before the push ended", shop_id, product_id)


def _keep_lock(lock: Lock, done: threading.Event) -> None:
    """Renew the lock's lifetime every third of it until the push ends (redis-py's Lock.reacquire)."""
    while not done.wait(PRODUCT_LOCK_TTL_S / 3):
        try:
            lock.reacquire()
        except (LockError, RedisError) as exc:
            log.warning("push lock not renewed: %s", exc)
            return


def _replaced(session: Session, render: Render) -> list[tuple[int, str]]:
    """Our pushed images this render's push takes off the product ("replace on regenerate"): a refined
    scene replaces the version it was made from; a render, every earlier render's images of the product."""
    query = select(Asset).where(Asset.push_status == PushStatus.PUSHED, Asset.external_id.is_not(None))
    refine = render.options.get("refine")
    if refine:
        query = query.where(Asset.id == refine["asset_id"])
    else:
        query = query.join(Render, Asset.render_id == Render.id).where(
            Render.product_id == render.product_id, Render.id < render.id)
    return [(asset.id, asset.external_id or "") for asset in session.scalars(query)]


def _push_all_of(render_id: int, connector: StoreConnector, product_id: str, pending: list[_Pending]) -> None:
    svc = current()
    batch = [(asset_id, PushAsset(data=svc.storage.get(key), **describe)) for asset_id, key, describe in pending]
    # A connector that announces a render's assets in one message (the callback) gets them together;
    # otherwise each asset goes alone, so each one's outcome is recorded as it happens.
    groups = [batch] if connector.pushes_together and batch else [[item] for item in batch]
    for group in groups:
        assets = [asset for _, asset in group]
        _push(render_id, [asset_id for asset_id, _ in group], functools.partial(connector.push_all, product_id, assets))


def _remove_earlier(render_id: int, connector: StoreConnector, product_id: str,
                    earlier: list[tuple[int, str]]) -> None:
    """Take our previous images off the product once this render's are on it."""
    svc = current()
    with svc.db.transaction() as session:
        statuses = session.scalars(select(Asset.push_status).where(Asset.render_id == render_id)).all()
    if not statuses or any(status != PushStatus.PUSHED for status in statuses):
        return  # never leave the product with fewer of our images than before
    for asset_id, external_id in earlier:
        try:
            connector.delete_asset(product_id, external_id)
        except StoreError as exc:
            log.warning("render=%s asset=%s could not be removed: %s", render_id, asset_id, exc)
            continue
        with svc.db.transaction() as session:
            asset = session.get(Asset, asset_id)
            if asset is not None:
                asset.push_status = PushStatus.REMOVED


def _push(render_id: int, asset_ids: list[int], send: Callable[[], Sequence[PushResult]]) -> None:
    """Send, then record each asset's outcome; a transient failure is raised for RQ to retry while retries last."""
    try:
        results = send()
    except StoreError as exc:
        if not will_retry(exc):  # a retry gets its one line from retry_or_fail
            log.warning("render=%s assets=%s push failed: %s", render_id, asset_ids, exc)
        _failed(exc, asset_ids)
        return
    for asset_id, result in zip(asset_ids, results, strict=True):
        _record(asset_id, external_id=result.external_id, url=result.url)
        log.info("render=%s asset=%s pushed external_id=%s created=%s", render_id, asset_id,
                 result.external_id, result.created)


def _failed(exc: StoreError, asset_ids: list[int]) -> None:
    """The error on each asset: `failed` for good on the last attempt; raised for RQ while a retry may help."""
    def record(error: str, *, final: bool) -> None:
        for asset_id in asset_ids:
            _record(asset_id, error=error, final=final)

    retry_or_fail(exc, lambda error: record(error, final=True), on_retry=lambda error: record(error, final=False))


def _describe(asset: Asset, product_id: str, title: str, template: str) -> dict[str, str]:
    """Everything a PushAsset needs but the bytes, read while the row is at hand.

    Raises one of _OWN_DATA_ERRORS when the shop's data cannot make a description.
    """
    ext = asset.storage_key.rsplit(".", 1)[-1]
    # The content hash: the same bytes pushed twice to a product are recognised as one asset.
    key = asset.storage_key.rsplit("/", 1)[-1].split(".")[0]
    alt = alt_text(template, title=title, kind=KIND_LABELS[asset.kind.value], preset=asset.preset)
    # Every store sends the alt text as UTF-8; text that has none (a lone surrogate) fails here, once,
    # rather than inside each store's request.
    alt.encode("utf-8")
    return {
        "key": key,
        "kind": asset.kind.value,
        "filename": asset_filename(product_id, asset.kind.value, asset.preset, key, ext),
        "content_type": asset.content_type,
        "alt": alt,
    }


def _own_data_error(exc: Exception) -> str:
    """The reason an asset cannot be described, in words the merchant can act on."""
    if isinstance(exc, UnicodeError):
        return ("The alt text cannot be sent: the alt-text template or the product title holds text that is "
                "not valid Unicode. Correct the alt-text template in the settings, then push again.")
    # The exception may quote the template, which may itself be the text that cannot be stored.
    detail = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")
    return (f"The alt text cannot be made from the alt-text template ({exc.__class__.__name__}: {detail}). "
            "Correct the template in the settings (placeholders {title}, {kind}, {preset}), then push again.")


def alt_text(template: str, **values: str) -> str:
    """Fill the shop's alt-text template; unknown placeholders are left out rather than failing a push."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return template.format_map({name: values.get(name, "") for name in fields}).strip()[:512]


def _record(asset_id: int, *, external_id: str = "", url: str = "", error: str = "", final: bool = True) -> None:
    svc = current()
    with svc.db.transaction() as session:
        asset = session.get(Asset, asset_id)
        if asset is None:
            return
        asset.push_attempts += 1
        if error:
            asset.push_error = error
            if final:
                asset.push_status = PushStatus.FAILED
        else:
            asset.push_status, asset.push_error = PushStatus.PUSHED, None
            asset.external_id, asset.external_url, asset.pushed_at = external_id, url, utcnow()


def take_down_asset(asset_id: int) -> None:
    """RQ entry point for queue `pushes`: take a rejected, already pushed asset off the shop's product."""
    svc = current()
    try:
        with log_context(asset=asset_id, job="takedown"):
            _take_down(asset_id)
    finally:
        svc.db.remove()


def _take_down(asset_id: int) -> None:
    svc = current()
    with svc.db.transaction() as session:
        asset = session.get(Asset, asset_id)
        if asset is None or asset.push_status != PushStatus.REMOVING:
            return  # approved again, or already done
        shop = session.get(Shop, asset.shop_id)
        assert shop is not None
        bind(shop=shop.id, render=asset.render_id)
        product_id, external_id = asset.render.product.external_id, asset.external_id
        connector: StoreConnector | None = None
        try:
            connector = connector_for(shop, svc.config, svc.db)
        except StoreError as exc:
            unusable = exc
    svc.db.remove()
    try:
        if connector is None:
            raise unusable
        if not connector.can_delete:
            _taken_down(asset_id, error="This shop's platform does not let us take images off; "
                                        "remove it in the shop's admin.")
            return
        if external_id:
            connector.delete_asset(product_id, external_id)
    except StoreError as exc:
        retry_or_fail(exc, lambda error: _taken_down(asset_id, error=f"It could not be taken off the shop: {error}"))
        return
    finally:
        if connector is not None:
            connector.close()
    _taken_down(asset_id)
    log.info("asset=%s taken off product=%s external_id=%s", asset_id, product_id, external_id)


def _taken_down(asset_id: int, *, error: str = "") -> None:
    """Rejected and off the shop; or, when that failed, still pushed with the reason beside it."""
    svc = current()
    with svc.db.transaction() as session:
        asset = session.get(Asset, asset_id)
        if asset is None or asset.push_status != PushStatus.REMOVING:
            return
        if error:
            asset.push_status, asset.push_error = PushStatus.PUSHED, "Rejected, but still on the shop. " + error
        else:
            asset.push_status, asset.push_error = PushStatus.REJECTED, None
