"""Signing in: a one-time link, or Shopify's app launch from the shop's admin; and signing out."""

from __future__ import annotations

import logging
import time

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ..current import services
from ..login_links import LinkMalformed, LoginLinkError, check, redeem, spend
from ..models import Platform, Shop
from ..shops import SHOPIFY_DOMAIN
from ..stores.shopify_auth import MAX_CLOCK_SKEW_S, query_hmac_ok, timestamp_fresh
from .common import bp, end_session, signed_in_shop, start_session

log = logging.getLogger(__name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    """Shopify opens the app here (`shop`, `timestamp`, `hmac`); others go to their pages or learn how to sign in."""
    if "hmac" in request.args and "shop" in request.args:
        return shopify_launch()
    if (shop := signed_in_shop()) is not None:
        return redirect(url_for("web.settings", shop_id=shop.id))
    return render_template("signin.html"), 401


@bp.get("/signin")
def signin_page() -> ResponseReturnValue:
    """Opening a sign-in link: a page with a Continue button, and nothing spent.

    Mail scanners and chat previews fetch links before the merchant does; a GET that spent the link would sign
    the scanner in and leave the merchant a used link. Only the button's POST (signin) spends it. A link that
    cannot work says so here already.
    """
    token = request.args.get("token", "")
    svc = services()
    try:
        with svc.db.transaction() as db:
            shop = check(db, svc.config, token)
            shop_name = shop.name or shop.domain
    except LinkMalformed as exc:
        abort(400, str(exc))
    except LoginLinkError as exc:
        abort(401, str(exc))
    return render_template("signin.html", token=token, shop_name=shop_name)


@bp.post("/signin")
def signin() -> ResponseReturnValue:
    """Spend a one-time sign-in link and open a session for its shop.

    The token comes in the form, beside the page's CSRF token (checked for every POST by common._check_csrf), so
    only the browser that opened the Continue page can sign itself in with it.
    """
    svc = services()
    try:
        # Spending the link and recording the session commit together: a link is never spent for nothing.
        with svc.db.transaction() as db:
            shop = redeem(db, svc.config, request.form.get("token", ""))
            start_session(db, shop)
    except LinkMalformed as exc:
        abort(400, str(exc))
    except LoginLinkError as exc:
        abort(401, str(exc))
    log.info("shop=%s signed in by link", shop.id)
    return redirect(url_for("web.settings", shop_id=shop.id), 303)


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
    signed_in = signed_in_shop()
    if signed_in is not None and signed_in.platform == Platform.SHOPIFY and signed_in.domain == domain:
        # The browser this launch signed in, reloading the admin's frame: nothing to spend, nothing to open.
        return redirect(url_for("web.settings", shop_id=signed_in.id))
    with svc.db.transaction() as db:
        shop = db.scalar(select(Shop).where(Shop.platform == Platform.SHOPIFY, Shop.domain == domain))
        if shop is None or not shop.active:
            abort(404, f"{domain} has not installed this app (or uninstalled it). "
                       f"Install it from {url_for('shopify.install', shop=domain, _external=True)}")
        # A launch query works once within its window: a copy of the URL (a log, a history, a shared screen)
        # signs no one else in. The signature names the query, the timestamp bounds how long it is kept.
        if not spend(db, f"shopify-launch:{query['hmac']}", int(query["timestamp"]) + MAX_CLOCK_SKEW_S + 1):
            abort(401, "This launch request was already used. Open the app again from your Shopify admin.")
        start_session(db, shop)
    log.info("shop=%s signed in by shopify launch", shop.id)
    return redirect(url_for("web.settings", shop_id=shop.id))


@bp.post("/signout")
def signout() -> ResponseReturnValue:
    end_session()
    return render_template("signin.html", signed_out=True)
