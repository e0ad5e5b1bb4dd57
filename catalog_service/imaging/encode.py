"""Encode Pillow images to the bytes we store and push."""

from __future__ import annotations

import io

from PIL import Image

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg"}


def flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB image with any transparency composited onto `background`."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, background)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def encode(image: Image.Image, fmt: str, *, quality: int = 90) -> bytes:
    """PNG, WebP or JPEG bytes. JPEG has no alpha, so transparency is flattened onto white."""
    out = io.BytesIO()
    if fmt == "png":
        # Level 3 is much faster than Pillow's default 6, for slightly larger files.
        image.save(out, "PNG", compress_level=3)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=quality, method=4, exact=image.mode == "RGBA")
    elif fmt == "jpeg":
        flatten(image).save(out, "JPEG", quality=quality, optimize=False, subsampling=0)
    else:
        raise ValueError(f"unknown output format {fmt!r} (png, webp or jpeg)")
    return out.getvalue()
