"""GET /assets/<key>?token=...: stored assets behind signed, expiring links (for stores and callbacks)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request, send_file
from flask.typing import ResponseReturnValue

from .current import services
from .signed_links import BadLink, ExpiredLink, check_asset_token
from .storage import AssetMissing, InvalidKey

bp = Blueprint("assets", __name__)

_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif", "avif": "image/avif"}


@bp.get("/assets/<path:key>")
def download(key: str) -> ResponseReturnValue:
    svc = services()
    token = request.args.get("token", "")
    if not token:
        abort(403, "This link is not signed; ask for a new one.")
    try:
        check_asset_token(svc.config, key, token)
    except ExpiredLink:
        abort(403, "This link has expired; ask for a new one.")
    except BadLink:
        abort(403, "This link is not valid; ask for a new one.")
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
