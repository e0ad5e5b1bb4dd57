"""GET /shopify/install and /shopify/callback: Shopify's OAuth install, which gives us a shop's token."""

from __future__ import annotations

import json
import logging
import secrets
import time

from flask import Blueprint, abort, redirect, request
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from sqlalchemy import select

from .current import services
from .models import Platform, Shop
from .shops import SHOPIFY_DOMAIN, create_shop
from .stores.base import StoreError
from .stores.shopify_auth import authorize_url, exchange_code, query_hmac_ok, register_webhooks, timestamp_fresh

log = logging.getLogger(__name__)
bp = Blueprint("shopify", __name__, url_prefix="/shopify")

STATE_TTL_S = 600
"""How long an install may take between our redirect and Shopify's callback."""


def _app_credentials() -> tuple[str, str]:
    config = services().config
    if not config.shopify_api_key or not config.shopify_api_secret:
        abort(503, "This service has no Shopify app configured (CATALOG_SHOPIFY_API_KEY / _SECRET).")
    return config.shopify_api_key, config.shopify_api_secret


def _shop_param() -> str:
    shop = (request.args.get("shop") or "").strip().lower()
    if not SHOPIFY_DOMAIN.match(shop):
        abort(400, "`shop` must be the store's name.myshopify.com domain.")
    return shop


@bp.get("/install")
def install() -> ResponseReturnValue:
    """Send the merchant to Shopify's consent screen with a one-time state."""
    client_id, _secret = _app_credentials()
    shop = _shop_param()
    svc = services()
    state = secrets.token_urlsafe(24)
    try:
        svc.redis.set(f"shopify:oauth-state:{state}", shop, ex=STATE_TTL_S)
    except RedisError:
        abort(503, "The install cannot start right now; try again in a minute.")
    return redirect(authorize_url(
        shop, client_id=client_id, scopes=svc.config.shopify_scopes, state=state,
        redirect_uri=f"{svc.config.public_url.rstrip('/')}/shopify/callback",
        admin_base_url=svc.config.shopify_admin_url,
    ), code=302)


@bp.get("/callback")
def callback() -> ResponseReturnValue:
    """Check Shopify's signature, the state and the shop; exchange the code; store the tokens; subscribe."""
    client_id, secret = _app_credentials()
    query = request.args.to_dict()
    if not query_hmac_ok(query, secret):
        abort(401, "The callback's hmac does not match: start the install again from Shopify.")
    if not timestamp_fresh(query.get("timestamp", ""), time.time()):
        abort(401, "The callback is too old (or from a clock far off): start the install again.")
    shop = _shop_param()
    svc = services()
    try:
        expected = svc.redis.getdel(f"shopify:oauth-state:{query.get('state', '')}")
    except RedisError:
        abort(503, "The install cannot finish right now; try again in a minute.")
    if (expected.decode() if isinstance(expected, bytes) else expected) != shop:
        abort(403, "The install's state is unknown, used or for another shop: start the install again.")
    try:
        tokens = exchange_code(shop, query.get("code", ""), client_id=client_id, client_secret=secret,
                               admin_base_url=svc.config.shopify_admin_url)
    except StoreError as exc:
        abort(502, f"Shopify did not give us a token: {exc}")
    # A fresh pair (and no needs_reauth mark): a reinstall is how a merchant re-authorises us.
    stored = json.dumps(tokens.stored())
    with svc.db.transaction() as session:
        row = session.scalar(select(Shop).where(Shop.platform == Platform.SHOPIFY, Shop.domain == shop))
        api_key = None
        if row is None:
            row, api_key, _secret = create_shop(session, platform="shopify", domain=shop)
        row.access_token, row.credentials, row.active = tokens.access_token, stored, True
        shop_id = row.id
    try:
        subscribed = register_webhooks(shop, tokens.access_token,
                                       uri=f"{svc.config.public_url.rstrip('/')}/webhooks/shopify",
                                       api_version=svc.config.shopify_api_version,
                                       admin_base_url=svc.config.shopify_admin_url)
    except StoreError as exc:
        log.error("shop=%s webhook subscription failed: %s", shop_id, exc)
        return {"installed": True, "shop_id": shop_id, "api_key": api_key, "webhooks": [],
                "warning": f"Installed, but the webhooks could not be subscribed: {exc}"}, 200
    log.info("shop=%s installed domain=%s webhooks=%s", shop_id, shop, len(subscribed))
    # The API key is shown once, on first install; it is stored hashed.
    return {"installed": True, "shop_id": shop_id, "api_key": api_key, "webhooks": subscribed}, 200
