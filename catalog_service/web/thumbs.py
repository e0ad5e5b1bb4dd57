"""Small previews of stored images for the merchant pages, so a gallery never downloads full-size scenes."""

from __future__ import annotations

import hashlib

from flask import Response, abort, url_for
from flask.typing import ResponseReturnValue

from ..current import services
from ..imaging.encode import encode
from ..imaging.errors import ImageRejected
from ..imaging.load import load_image
from ..models import Asset, ReferenceImage, get_for_shop
from ..storage import StorageError
from .common import bp, shop_page

THUMB_MAX_SIDE = 360
"""Longest side of a preview, in pixels: sharp in a 180 px tile on a 2x screen."""

THUMB_CACHE_S = 7 * 24 * 3600
"""Previews are immutable (their URL carries the stored file's key hash), so browsers keep them a week."""



def thumb_url(shop_id: int, kind: str, row_id: int, storage_key: str) -> str:
    """The preview of a stored asset or reference photo; the version changes when the stored file does."""
    version = hashlib.sha256(storage_key.encode()).hexdigest()[:12]
    return url_for("web.thumbnail", shop_id=shop_id, kind=kind, row_id=row_id, v=version)


@bp.get("/shops/<int:shop_id>/thumbs/<any(asset, reference):kind>/<int:row_id>.webp")
@shop_page
def thumbnail(shop_id: int, kind: str, row_id: int) -> ResponseReturnValue:
    """A WebP preview (alpha kept for cutouts) of one of this shop's stored images."""
    svc = services()
    session = svc.db.session()
    row: Asset | ReferenceImage | None = (
        get_for_shop(session, Asset, row_id, shop_id) if kind == "asset"
        else get_for_shop(session, ReferenceImage, row_id, shop_id))
    if row is None:
        abort(404, "No such image in this shop.")
    try:
        image = load_image(svc.storage.get(row.storage_key), max_pixels=svc.config.max_pixels,
                           max_side=THUMB_MAX_SIDE, draft_slack=0.3)
    except (StorageError, ImageRejected):
        abort(404, "This image is no longer stored.")
    response = Response(encode(image, "webp", quality=80), mimetype="image/webp")
    response.headers["Cache-Control"] = f"private, max-age={THUMB_CACHE_S}, immutable"
    return response
