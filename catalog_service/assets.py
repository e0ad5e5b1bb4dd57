"""GET /assets/<key>?exp=...&sig=...: stored assets behind signed, expiring links (for stores and callbacks)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, abort, request, send_file
from flask.typing import ResponseReturnValue

from .current import services
from .security import verify_asset
from .storage import AssetMissing, InvalidKey

bp = Blueprint("assets", __name__)

_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif", "avif": "image/avif"}


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
