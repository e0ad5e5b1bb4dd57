"""Expiring Shopify tokens: refreshed a few minutes before expiry and on a 401, one refresh per shop at a time.

Shopify keeps one offline token per app and shop and replaces the refresh token on every use, so two workers
refreshing at once revoke each other. A refresh therefore locks the shop's row (SELECT ... FOR UPDATE; on
SQLite every transaction begins IMMEDIATE, which takes the database's write lock), re-reads the stored pair
and refreshes only when that pair still needs it: a worker that waited for the lock finds the token the first
one saved and uses it. The lock is held for the read, the refresh (one call with a timeout) and the save.

The refresh token itself lapses (90 days); a shop is shown as needing re-authorisation a week before that,
and as soon as Shopify refuses a refresh.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session, undefer

from .config import Config
from .db import Database
from .models import Platform, Shop
from .stores.base import AuthRevoked, StoreError
from .stores.shopify_auth import refresh

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 300
"""Refresh this long before expiry, so a push never starts with a token about to lapse."""

REAUTH_WARNING_S = 7 * 24 * 3600
"""A refresh token lapsing within this needs the merchant now: they must open the app before it does."""

NO_TOKEN = "The shop has no Shopify access token: install the app again."


def stored_credentials(shop: Shop) -> dict[str, Any]:
    """The shop's encrypted credentials JSON: for Shopify the refresh token, both expiries, `needs_reauth`."""
    loaded = json.loads(shop.credentials or "{}")
    return loaded if isinstance(loaded, dict) else {}


def needs_reauth(shop: Shop, *, now: float | None = None) -> bool:
    """Whether the merchant must open the app again: a refresh was refused, or the refresh token lapses soon."""
    if shop.platform != Platform.SHOPIFY:
        return False
    stored = stored_credentials(shop)
    if stored.get("needs_reauth"):
        return True
    lapses = stored.get("refresh_expires_at")
    now = time.time() if now is None else now
    return isinstance(lapses, (int, float)) and lapses - now < REAUTH_WARNING_S


def _refused_before(shop: Shop) -> None:
    """A shop whose refresh Shopify refused waits for the merchant: asking again cannot succeed until they
    open the app (the install callback then stores a new pair without the mark)."""
    if stored_credentials(shop).get("needs_reauth"):
        raise AuthRevoked(f"Shopify refused to renew our access to {shop.domain}: the merchant must open the app "
                          "again to re-authorise it, then send the images again.")


def token_for(shop: Shop, config: Config, db: Database | None, *, now: float | None = None) -> str:
    """The access token a connector starts with: the stored one, refreshed first when it expires within the margin.

    Without a database (nothing to save a new pair in) the token is used as stored; a 401 then says so.
    """
    if not shop.access_token:
        raise AuthRevoked(NO_TOKEN)
    _refused_before(shop)
    now = time.time() if now is None else now
    if db is None or not _due(shop, now):
        return shop.access_token
    return fresh_token(db, shop.id, config, now=now, caller=object_session(shop))


def fresh_token(db: Database, shop_id: int, config: Config, *, rejected: str | None = None,
                now: float | None = None, caller: Session | None = None) -> str:
    """A token Shopify will take: the stored one, unless it expires soon or is `rejected`; then a refreshed one.

    Runs under the shop's lock in a transaction of its own that is committed before this returns, so the new
    pair (or the `needs_reauth` mark) is saved however the caller's work ends. On SQLite, a `caller` session
    (by default this thread's) that is inside a transaction already holds the database's only write lock: the
    refresh joins that transaction, since a second connection would wait for it until its busy timeout.
    """
    now = time.time() if now is None else now
    caller = db.session() if caller is None else caller
    if db.dialect == "sqlite" and caller.in_transaction():
        return _renew(caller, shop_id, config, now, rejected)
    session = db.sessions.session_factory()
    try:
        token = _renew(session, shop_id, config, now, rejected)
    except AuthRevoked:
        session.commit()  # keeps the needs_reauth mark
        raise
    except BaseException:
        session.rollback()
        raise
    else:
        session.commit()
        return token
    finally:
        session.close()


def refresher(db: Database, shop_id: int, config: Config, token: str) -> Callable[[], str | None]:
    """For a connector's 401 on `token`: the token to retry with (None: there is none; the merchant must reinstall).

    When another worker refreshed meanwhile, its token is the answer and Shopify is not asked again.
    """
    current = token

    def on_unauthorized() -> str | None:
        nonlocal current
        try:
            current = fresh_token(db, shop_id, config, rejected=current)
        except StoreError:
            return None
        return current

    return on_unauthorized


def _due(shop: Shop, now: float, rejected: str | None = None) -> bool:
    """Whether the stored token must be replaced: it is the one Shopify refused, or it expires within the margin."""
    if rejected is not None:
        return shop.access_token == rejected
    expires_at = stored_credentials(shop).get("expires_at")
    return isinstance(expires_at, (int, float)) and expires_at - now <= REFRESH_MARGIN_S


def _renew(session: Session, shop_id: int, config: Config, now: float, rejected: str | None) -> str:
    """Lock the shop's row, read its pair afresh, and refresh it when still due. The caller commits right after."""
    shop = session.scalar(
        select(Shop).where(Shop.id == shop_id).options(undefer(Shop.access_token), undefer(Shop.credentials))
        .with_for_update().execution_options(populate_existing=True))
    if shop is None or not shop.access_token:
        raise AuthRevoked(NO_TOKEN)
    _refused_before(shop)
    if not _due(shop, now, rejected):
        return shop.access_token  # still good, or another worker refreshed it while we waited for the lock
    stored = stored_credentials(shop)
    refresh_token = stored.get("refresh_token")
    if not refresh_token:
        raise AuthRevoked(f"Shopify refused our token for {shop.domain} and there is no refresh token to renew "
                          "it: the merchant must open the app again to re-authorise it.")
    try:
        tokens = refresh(shop.domain, refresh_token, client_id=config.shopify_api_key,
                         client_secret=config.shopify_api_secret,
                         admin_base_url=shop.api_base_url or config.shopify_admin_url, now=now)
    except AuthRevoked:
        # Shopify will not renew it: the merchant must reinstall. Visible on their page and in `shops list`.
        shop.credentials = json.dumps({**stored, "needs_reauth": True})
        raise AuthRevoked(f"Shopify no longer accepts our token for {shop.domain}: the merchant must "
                          "open the app again to re-authorise it.") from None
    # Shopify has replaced the refresh token: the new pair is saved together, in this transaction.
    shop.access_token = tokens.access_token
    shop.credentials = json.dumps(tokens.stored())
    log.info("shop=%s token refreshed", shop.id)
    return tokens.access_token
