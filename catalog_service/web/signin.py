"""Signing in: a one-time link, or Shopify's app launch from the shop's admin; and signing out."""

from __future__ import annotations

import logging
import time

from flask import abort, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from sqlalchemy import select

from ..current import services
from ..login_links import LoginLinkError, redeem
from ..models import Platform, Shop
from ..shops import SHOPIFY_DOMAIN
from ..stores.shopify_auth import query_hmac_ok, timestamp_fresh
from .common import bp, start_session

log = logging.getLogger(__name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    """Shopify opens the app here (`shop`, `timestamp`, `hmac`); others go to their pages or learn how to sign in."""
    if "hmac" in request.args and "shop" in request.args:
        return shopify_launch()
    if session.get("shop_id") is not None:
        return redirect(url_for("web.settings", shop_id=session["shop_id"]))
    return render_template("signin.html"), 401


@bp.get("/signin")
def signin() -> ResponseReturnValue:
    """Spend a one-time sign-in link and open a session for its shop."""
    svc = services()
    try:
        shop_id = redeem(svc.redis, svc.config, request.args.get("token", ""))
    except LoginLinkError as exc:
        abort(401, str(exc))
    except RedisError:
        abort(503, "Signing in is not possible right now; try the link again in a minute.")
    shop = svc.db.session().get(Shop, shop_id)
    if shop is None or not shop.active:
        abort(401, "This shop is no longer active here. Install the app again, then ask for a new link.")
    start_session(shop.id)
    log.info("shop=%s signed in by link", shop.id)
    return redirect(url_for("web.settings", shop_id=shop.id))


@bp.get("/shopify/app")
def shopify_launch() -> ResponseReturnValue:
    """Shopify's app launch: check the query's HMAC and age, then open a session for that shop."""
    svc = services()
    secret = svc.config.shopify_api_secret
    if not secret:
        abort(503, "This service has no Shopify app configured.")
    query = request.args.to_dict()
    if not query_hmac_ok(query, secret):
        abort(401, "Shopify's signature on this request does not match. Open the app again from your Shopify admin.")
    if not timestamp_fresh(query.get("timestamp", ""), time.time()):
        abort(401, "This launch request is too old. Open the app again from your Shopify admin.")
    domain = query.get("shop", "").strip().lower()
    if not SHOPIFY_DOMAIN.match(domain):
        abort(400, "`shop` must be the store's name.myshopify.com domain.")
    shop = svc.db.session().scalar(select(Shop).where(Shop.platform == Platform.SHOPIFY, Shop.domain == domain))
    if shop is None or not shop.active:
        abort(404, f"{domain} has not installed this app (or uninstalled it). "
                   f"Install it from {url_for('shopify.install', shop=domain, _external=True)}")
    start_session(shop.id)
    log.info("shop=%s signed in by shopify launch", shop.id)
    return redirect(url_for("web.settings", shop_id=shop.id))


@bp.post("/signout")
def signout() -> ResponseReturnValue:
    session.clear()
    return render_template("signin.html", signed_out=True)
