"""Signed, expiring links (asset downloads, sign-in links) through one itsdangerous serializer. No Flask.

Every link is signed by the same mechanism: a URL-safe itsdangerous serializer keyed with the service's secret key
and its fallbacks (so links made before a key rotation still verify), with a salt per purpose, so a token made
for one purpose is refused by every other. The expiry travels inside the signed payload rather than as the
serializer's signing time: lifetimes differ per link, and the pages' links must stay the same for an hour so
browsers can cache them.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer

from .config import Config

ASSET_LINK = "asset-link"
"""The purpose (salt) of download links to stored assets."""

SIGN_IN = "sign-in"
"""The purpose (salt) of one-time sign-in links."""

DEFAULT_TTL_S = 7 * 24 * 3600
"""How long a pushed download link works: long enough for a store to fetch it, short enough not to leak forever."""

ASSETS_PATH = "/assets/"
"""Where assets.py serves the links."""


class BadLink(ValueError):
    """A token we did not sign for this purpose, or one that was changed or cut short."""


class ExpiredLink(BadLink):
    """A genuine token past its expiry."""


def _serializer(config: Config, purpose: str) -> URLSafeSerializer:
    if not config.secret_key:
        raise RuntimeError("no secret key to sign links with: call Config.ensure_secret_key() first")
    # itsdangerous signs with the last key and accepts any; fallback_keys() is newest first.
    keys = [*reversed(config.fallback_keys()), config.secret_key]
    return URLSafeSerializer(keys, salt=purpose)


def sign(config: Config, purpose: str, payload: dict[str, Any], expires_at: int) -> str:
    """A URL-safe token carrying `payload` and its expiry (unix seconds), signed for `purpose`."""
    return _serializer(config, purpose).dumps({**payload, "exp": int(expires_at)})


def unsign(config: Config, purpose: str, token: str, *, now: float | None = None) -> dict[str, Any]:
    """The payload of a token signed for `purpose` that has not expired; raises BadLink or ExpiredLink."""
    try:
        payload = _serializer(config, purpose).loads(token)
    except BadSignature:
        raise BadLink("the link's signature does not match") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        raise BadLink("the link carries no expiry")
    if payload["exp"] < (time.time() if now is None else now):
        raise ExpiredLink("the link has expired")
    return payload


def asset_token(config: Config, key: str, expires_at: int) -> str:
    """The `token` query value of a download link to one stored asset."""
    return sign(config, ASSET_LINK, {"key": key}, expires_at)


def check_asset_token(config: Config, key: str, token: str, *, now: float | None = None) -> None:
    """Raises BadLink (or ExpiredLink) unless `token` is a live download link for exactly this key."""
    if unsign(config, ASSET_LINK, token, now=now).get("key") != key:
        raise BadLink("the link was signed for another asset")


def signed_url(config: Config, key: str, *, ttl_s: int = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A public, expiring link to a stored asset."""
    expires_at = int((time.time() if now is None else now) + ttl_s)
    query = urlencode({"token": asset_token(config, key, expires_at)})
    return f"{config.public_url.rstrip('/')}{ASSETS_PATH}{key}?{query}"
