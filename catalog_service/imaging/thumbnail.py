"""A small copy of a photo: what a render keeps of the source it was made from."""

from __future__ import annotations

from .encode import encode
from .load import load_image

SOURCE_THUMB_MAX_SIDE = 360
"""Longest side of a kept source photo, in pixels: sharp in a 160 px card tile on a 2x screen."""

SOURCE_THUMB_FORMAT = "webp"


def thumbnail(data: bytes, *, max_pixels: int, max_side: int = SOURCE_THUMB_MAX_SIDE) -> bytes:
    """WebP bytes of the photo, upright, its longest side at most `max_side`.

    Raises ImageRejected, as load_image does, for bytes that are not a photo we can decode."""
    image = load_image(data, max_pixels=max_pixels, max_side=max_side, draft_slack=0.3)
    return encode(image, SOURCE_THUMB_FORMAT, quality=80)
