"""The merchant pages' session: Flask's signed cookie, without its per-request setup on other routes, and the
server's record of each signed-in browser.

Flask opens the session on every request, so every webhook and API call parsed the Cookie header and
built a signing serializer that it never used. Here a request without a Cookie header gets an empty
session at once, and the serializer is built once per secret key.

The cookie alone does not sign anyone in: it names a row of web_sessions, which signing out deletes (so a
copied cookie stops working) and which goes with its shop, and it carries the shop's uid.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..models import Shop, WebSession


class CookieSessions(SecureCookieSessionInterface):
    """Flask's SecureCookieSessionInterface, with the serializer kept and cookie-less requests short-cut."""

    def __init__(self) -> None:
        self._serializer: tuple[object, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        # Keyed on everything Flask builds it from, so a changed key or fallback list is honoured.
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if self._serializer is None or self._serializer[0] != key:
            self._serializer = (key, super().get_signing_serializer(app))
        return self._serializer[1]

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)


# --- the server's record of each signed-in browser ----------------------------------------------------------


def _row_id(session_id: str) -> str:
    # Only a digest is stored: the database alone (a backup, a leak) holds nothing a cookie could be made from.
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


def open_server_session(db: Session, shop: Shop, *, ttl_s: int, now: float | None = None) -> str:
    """Record a new signed-in browser for the shop (in the caller's transaction); returns the id its cookie
    carries. Sessions long expired are deleted here, so the table holds only live ones."""
    now = time.time() if now is None else now
    db.execute(delete(WebSession).where(WebSession.expires_at < int(now)))
    session_id = secrets.token_urlsafe(32)
    db.add(WebSession(id=_row_id(session_id), shop_id=shop.id, expires_at=int(now) + ttl_s))
    return session_id


def find_server_session(db: Session, session_id: str, *, shop_id: int, shop_uid: str, ttl_s: int,
                        now: float | None = None) -> Shop | None:
    """The active shop a cookie's session is for, or None when the server no longer has that session (signed
    out, expired, the shop deleted or replaced). An active session is pushed on (in the caller's transaction),
    at most about eight times per lifetime, so a merchant at work stays signed in."""
    now = time.time() if now is None else now
    row = db.get(WebSession, _row_id(session_id))
    if row is None or row.shop_id != shop_id or row.expires_at < now:
        return None
    shop = db.get(Shop, shop_id)
    if shop is None or not shop.active or shop.uid != shop_uid:
        return None
    if row.expires_at - now < ttl_s * 7 / 8:
        row.expires_at = int(now) + ttl_s
    return shop


def end_server_session(db: Session, session_id: str) -> None:
    """Forget a signed-in browser (in the caller's transaction): its cookie, and every copy of it, stop working."""
    db.execute(delete(WebSession).where(WebSession.id == _row_id(session_id)))
