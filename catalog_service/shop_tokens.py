"""Expiring Shopify tokens: refreshed a few minutes before expiry and on a 401, the new pair saved at once."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from .config import Config
from .db import Database
from .models import Shop
from .stores.base import AuthRevoked, StoreError
from .stores.shopify_auth import refresh

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 300
"""Refresh this long before expiry, so a push never starts with a token about to lapse."""


def fresh_token(session: Session, shop: Shop, config: Config, *, now: float | None = None, force: bool = False) -> str:
    """The shop's access token, refreshed (and saved in this session) when it expires soon or `force`."""
    now = time.time() if now is None else now
    stored = json.loads(shop.credentials or "{}")
    expires_at, refresh_token = stored.get("expires_at"), stored.get("refresh_token")
    if not shop.access_token:
        raise AuthRevoked("The shop has no Shopify access token: install the app again.")
    if not refresh_token or (not force and (expires_at is None or expires_at - now > REFRESH_MARGIN_S)):
        return shop.access_token
    try:
        tokens = refresh(shop.domain, refresh_token, client_id=config.shopify_api_key,
                         client_secret=config.shopify_api_secret,
                         admin_base_url=shop.api_base_url or config.shopify_admin_url, now=now)
    except AuthRevoked:
        # Shopify will not renew it: the merchant must reinstall. Visible on the shop and on every push.
        shop.credentials = json.dumps({**stored, "needs_reauth": True})
        raise AuthRevoked(f"Shopify no longer accepts our token for {shop.domain}: the merchant must "
                          "open the app again to re-authorise it.") from None
    # Shopify replaces the refresh token on each use: the new pair is saved together or not at all.
    shop.access_token = tokens.access_token
    shop.credentials = json.dumps({"refresh_token": tokens.refresh_token, "expires_at": tokens.expires_at})
    log.info("shop=%s token refreshed", shop.id)
    return tokens.access_token


def refresher(db: Database, shop_id: int, config: Config) -> Callable[[], str | None]:
    """For a connector's 401: refresh in a transaction of its own and hand back the new token (None: cannot)."""

    def on_unauthorized() -> str | None:
        try:
            with db.transaction() as session:
                shop = session.get(Shop, shop_id)
                return None if shop is None else fresh_token(session, shop, config, force=True)
        except StoreError:
            return None

    return on_unauthorized
