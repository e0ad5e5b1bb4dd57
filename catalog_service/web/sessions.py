"""The merchant pages' session: Flask's signed cookie, without its per-request setup on other routes.

Flask opens the session on every request, so every webhook and API call parsed the Cookie header and
built a signing serializer that it never used: about 6% of a webhook's CPU. Here a request without a
Cookie header gets an empty session at once, and the serializer is built once per secret key.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


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
