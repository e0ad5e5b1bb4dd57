"""What the merchant pages share: the blueprint, the signed-in shop, page helpers."""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, g, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session
from werkzeug.exceptions import Forbidden, HTTPException, RequestEntityTooLarge

from ..current import services
from ..models import Shop
from ..signed_links import asset_token
from .sessions import end_server_session, find_server_session, open_server_session

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static/web")

THUMBNAIL_LINK_TTL_S = 3600
"""Full-size links on a page work for one to two hours: long enough for a working session, short if a page leaks."""

MAX_UPLOAD_FILES = 5
"""Reference photos taken in one upload."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_UPLOAD_ENDPOINTS = frozenset({"web.upload_references"})

# Every asset comes from us; images may also come from the shop's own host (a product's original photo).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob: https: http:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def size_words(n_bytes: int) -> str:
    """A byte count as a merchant reads it: 40 MB, 512 KB."""
    return f"{n_bytes / 2**20:.0f} MB" if n_bytes >= 2**20 else f"{max(1, n_bytes // 1024)} KB"


def start_session(db: Session, shop: Shop) -> None:
    """Sign the browser in as this shop: a fresh session, recorded on the server (in the caller's transaction),
    with its own CSRF token."""
    session_id = open_server_session(db, shop, ttl_s=services().config.session_ttl_s)
    session.clear()
    session.permanent = True
    session["shop_id"] = shop.id
    session["shop_uid"] = shop.uid
    session["sid"] = session_id
    session["csrf_token"] = secrets.token_urlsafe(32)


def end_session() -> None:
    """Sign the browser out, on the server too: a copy of its cookie no longer signs anyone in."""
    session_id = session.get("sid")
    if isinstance(session_id, str):
        with services().db.transaction() as db:
            end_server_session(db, session_id)
    session.clear()


def signed_in_shop() -> Shop | None:
    """The shop this browser is signed in to, checked against the server's record on every request (once per
    request): None when signed out, expired, or the shop deleted, replaced or inactive."""
    if "signed_in_shop" in g:
        return cast(Shop | None, g.signed_in_shop)
    shop_id, shop_uid, session_id = session.get("shop_id"), session.get("shop_uid"), session.get("sid")
    shop = None
    if (isinstance(shop_id, int) and not isinstance(shop_id, bool) and isinstance(shop_uid, str)
            and isinstance(session_id, str)):
        svc = services()
        with svc.db.transaction() as db:
            shop = find_server_session(db, session_id, shop_id=shop_id, shop_uid=shop_uid,
                                       ttl_s=svc.config.session_ttl_s)
    if shop is None and "shop_id" in session:
        # A cookie the server no longer backs: drop it, so the browser stops sending it.
        session.clear()
    g.signed_in_shop = shop
    return shop


def csrf_token() -> str:
    """This session's CSRF token (made on first use for a signed-out visitor)."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return str(session["csrf_token"])


class CsrfRefused(Forbidden):
    """A state-changing request from a signed-in browser without its session's CSRF token."""

    description = (f"This form has expired or did not come from this site (its {CSRF_HEADER} header or "
                   f"{CSRF_FIELD} field does not match this session). Reload the page and try again.")


def check_csrf() -> None:
    """The one CSRF check, for the pages' forms and the API's cookie-authenticated calls alike.

    A request that changes anything must carry the session's token, in the X-CSRF-Token header (scripts) or
    the csrf_token form field (forms); otherwise 403. Bearer-key API calls are not cookie-authenticated and
    never come here.
    """
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    expected = session.get("csrf_token")
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(
            sent.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")):
        raise CsrfRefused()


@bp.before_request
def _check_csrf() -> None:
    """Every state-changing request from a page carries the session's token (form field or header)."""
    if request.method in SAFE_METHODS:
        return
    max_photo = services().config.max_source_bytes
    if request.endpoint in _UPLOAD_ENDPOINTS:
        # Photos may be larger than an API body; the form is read here, so the limit is raised here.
        request.max_content_length = max_photo * MAX_UPLOAD_FILES
    try:
        check_csrf()
    except RequestEntityTooLarge:
        abort(413, f"Upload at most {MAX_UPLOAD_FILES} photos at once, each up to {size_words(max_photo)}.")


def shop_page(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """401 when signed out, 403 for another shop's pages; sets g.shop for the view."""

    @functools.wraps(view)
    def wrapped(shop_id: int, **kwargs: Any) -> ResponseReturnValue:
        had_session = session.get("shop_id") is not None
        shop = signed_in_shop()
        if shop is None:
            abort(401, "Your session has ended (you signed out, it expired, or the shop is no longer active "
                       "here). Sign in again." if had_session else "Sign in to see this page.")
        if shop.id != shop_id:
            abort(403, "You are signed in as another shop; these pages are not yours.")
        g.shop = shop
        return view(shop_id, **kwargs)

    return wrapped


def thumbnail_url(key: str, *, now: float | None = None) -> str:
    """A same-origin signed link to a stored file (full size), stable for an hour so browsers can cache it."""
    now = time.time() if now is None else now
    expires_at = (int(now) // THUMBNAIL_LINK_TTL_S + 2) * THUMBNAIL_LINK_TTL_S
    token = asset_token(services().config, key, expires_at)
    return f"{url_for('assets.download', key=key)}?{urlencode({'token': token})}"


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    from .forms import REGENERATE_LIMITS
    from .thumbs import thumb_url

    return {"csrf_token": csrf_token, "thumbnail_url": thumbnail_url, "thumb_url": thumb_url, "size_words": size_words,
            "regenerate_limits": REGENERATE_LIMITS}


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "web.static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.errorhandler(HTTPException)
def _html_error(exc: HTTPException) -> ResponseReturnValue:
    """Pages answer errors with a page, in words a merchant can act on."""
    code = exc.code or 500
    titles = {400: "Something in the request was wrong", 401: "Please sign in", 403: "Not your shop",
              404: "Not found", 413: "That file is too large"}
    title = "This form has expired" if isinstance(exc, CsrfRefused) else titles.get(code, "Something went wrong")
    return render_template("error.html", code=code, title=title, message=exc.description), code
