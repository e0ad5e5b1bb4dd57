"""Signed, expiring download links to stored assets, for stores and callbacks that fetch from us. No Flask."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from .config import Config
from .security import sign_asset

DEFAULT_TTL_S = 7 * 24 * 3600
"""How long a pushed download link works: long enough for a store to fetch it, short enough not to leak forever."""

ASSETS_PATH = "/assets/"
"""Where assets.py serves the links."""


def signed_url(config: Config, key: str, *, ttl_s: int = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A public, expiring link to a stored asset."""
    expires_at = int((time.time() if now is None else now) + ttl_s)
    query = urlencode({"exp": expires_at, "sig": sign_asset(config.secret_key, key, expires_at)})
    return f"{config.public_url.rstrip('/')}{ASSETS_PATH}{key}?{query}"
