"""A shop's reference images: validated with the safe decoder, normalised, stored."""

from __future__ import annotations

from sqlalchemy.orm import Session

from .imaging.encode import encode
from .imaging.load import load_image
from .models import ReferenceImage, Shop
from .storage import AssetStorage

MAX_REFERENCE_IMAGES = 15
"""Per shop: GPT Image takes 16 input images per call, one of which is the cutout."""

REFERENCE_MAX_SIDE = 2048
"""Reference photos are kept at most this large: scenes never need more, and it strips metadata."""


def add_reference_image(
    session: Session, storage: AssetStorage, shop: Shop, data: bytes, *, name: str = "", max_pixels: int
) -> ReferenceImage:
    """Decode (ImageRejected on bad bytes), re-encode as JPEG, store, and record the row."""
    image = load_image(data, max_pixels=max_pixels, max_side=REFERENCE_MAX_SIDE)
    encoded = encode(image, "jpeg", quality=90)
    key = storage.put(encoded, ext="jpg")
    row = ReferenceImage(shop_id=shop.id, name=name[:255], storage_key=key, content_type="image/jpeg",
                         width=image.width, height=image.height)
    session.add(row)
    session.flush()
    return row
