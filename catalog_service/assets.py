"""GET /assets/<key>?exp=...&sig=...: stored assets behind signed, expiring links (for stores and callbacks)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, request, send_file
from flask.typing import ResponseReturnValue

from .app import services
from .config import Config
from .security import sign_asset, verify_asset
from .storage import AssetMissing, InvalidKey

bp = Blueprint("assets", __name__)

DEFAULT_TTL_S = 7 * 24 * 3600
"""How long a pushed download link works: long enough for a store to fetch it, short enough not to leak forever."""

_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif", "avif": "image/avif"}


def signed_url(config: Config, key: str, *, ttl_s: int = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A public, expiring link to a stored asset."""
    expires_at = int((time.time() if now is None else now) + ttl_s)
    query = urlencode({"exp": expires_at, "sig": sign_asset(config.secret_key, key, expires_at)})
    return f"{config.public_url.rstrip('/')}/assets/{key}?{query}"


@bp.get("/assets/<path:key>")
def download(key: str) -> ResponseReturnValue:
    svc = services()
    try:
        expires_at = int(request.args.get("exp", ""))
    except ValueError:
        abort(403, "This link is not signed; ask for a new one.")
    if not verify_asset(svc.config.secret_key, key, expires_at, request.args.get("sig", ""), time.time()):
        abort(403, "This link is not valid or has expired; ask for a new one.")
    try:
        path = svc.storage.open_path(key)
        if path is None:
            data = svc.storage.get(key)
    except (InvalidKey, AssetMissing):
        abort(404, "No such asset.")
    mimetype = _TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
    if path is not None:
        return send_file(path, mimetype=mimetype, max_age=3600)
    return Response(data, mimetype=mimetype)
