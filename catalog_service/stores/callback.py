"""The generic callback: a signed JSON message to the shop's URL listing assets behind signed download links."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import requests

from ..http import FetchError, post
from ..security import hmac_sha256, standard_webhook
from .base import AuthRevoked, BaseConnector, NotFound, PushAsset, PushResult, RateLimited, StoreError, UpstreamError


class CallbackStore(BaseConnector):
    """Tells a platform's own endpoint that assets are ready; the platform downloads them from our links.

    Signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the shop's
    webhook secret, and for one release also with the old `X-Catalog-Signature`. Exactly once is the
    receiver's part: `webhook-id` (and the old `X-Catalog-Delivery-Id`, the same value) stays the same for
    the same product and assets however often we send it, so a retried message can be recognised.
    """

    platform = "callback"
    pushes_together = True  # one message per render; the receiver cannot be asked to take an image off

    def __init__(
        self, *, callback_url: str, secret: str, asset_url: Callable[[PushAsset], str], allow_private: bool = False,
        session: requests.Session | None = None, timeout_s: float = 20.0,
    ) -> None:
        self.callback_url, self.secret, self.asset_url = callback_url, secret, asset_url
        self.allow_private, self.session, self.timeout_s = allow_private, session, timeout_s

    def push_asset(self, product_id: str, asset: PushAsset) -> PushResult:
        return self.push_all(product_id, [asset])[0]

    def push_all(self, product_id: str, assets: Sequence[PushAsset]) -> list[PushResult]:
        """One message for all of a render's assets."""
        listed: list[dict[str, Any]] = [
            {"key": a.key, "kind": a.kind, "filename": a.filename, "content_type": a.content_type,
             "bytes": len(a.data), "alt": a.alt, "url": self.asset_url(a)} for a in assets]
        body = json.dumps({"event": "assets.ready", "product_id": product_id, "assets": listed},
                          separators=(",", ":")).encode()
        delivery_id = hashlib.sha256(
            ("\n".join([product_id, *sorted(a.key for a in assets)])).encode()).hexdigest()[:32]
        # Stamped at each send: a retry is a new signature over the same id, within the receiver's 5 minutes.
        sent_at = dt.datetime.now(dt.UTC)
        headers = {"Content-Type": "application/json", "Accept": "*/*",
                   "webhook-id": delivery_id, "webhook-timestamp": str(int(sent_at.timestamp())),
                   "webhook-signature": standard_webhook(self.secret).sign(delivery_id, sent_at, body),
                   # Deprecated; sent alongside for one release, for receivers that check it.
                   "X-Catalog-Signature": "sha256=" + hmac_sha256(self.secret, body).hex(),
                   "X-Catalog-Delivery-Id": delivery_id}
        try:
            status, answer = post(self.callback_url, body, headers=headers, allow_private=self.allow_private,
                                  read_timeout_s=self.timeout_s, session=self.session)
        except FetchError as exc:
            error = UpstreamError if exc.retryable else StoreError
            raise error(f"The callback URL could not be reached: {exc}") from None
        if 200 <= status < 300:
            return [PushResult(external_id=item["key"], url=item["url"]) for item in listed]
        detail = f"the callback answered {status}: {answer.strip()[:200]}"
        if status == 429:
            raise RateLimited(detail, retry_after_s=30.0)
        if status >= 500:
            raise UpstreamError(detail)
        if status in (401, 403):
            raise AuthRevoked(
                f"{detail} (it should accept our webhook-signature, made the Standard Webhooks way with the "
                "shop's webhook secret)")
        if status in (404, 410):
            raise NotFound(detail)
        raise StoreError(detail)

    def existing_assets(self, product_id: str) -> dict[str, str]:
        """We cannot ask a callback what it has; the delivery id lets it drop repeats instead."""
        return {}
