"""Encode Pillow images to the bytes we store and push: every one sRGB, tagged, and marked when AI touched it."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from .color import SRGB_PROFILE
from .provenance import xmp_packet

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg"}

# PNG keeps XMP in an uncompressed iTXt chunk with this keyword (XMP Specification Part 3, "PNG").
PNG_XMP_KEY = "XML:com.adobe.xmp"


def flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB image with any transparency composited onto `background`."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, background)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def encode(image: Image.Image, fmt: str, *, quality: int = 90, source_type: str = "", png_level: int = 3) -> bytes:
    """PNG, WebP or JPEG bytes, tagged with the sRGB profile. JPEG has no alpha: transparency is flattened onto white.

    The pixels are taken as sRGB (imaging/load.py converts every photo on the way in). `source_type`, an IPTC
    Digital Source Type code such as "compositeWithTrainedAlgorithmicMedia" or "trainedAlgorithmicMedia",
    adds an XMP packet that says so (imaging/provenance.py); empty for images no generative model touched.
    `png_level`: zlib effort for PNG; 1 for bytes that only travel (an upload read once), 3 for what we keep.
    """
    xmp = xmp_packet(source_type) if source_type else b""
    out = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        if xmp:
            # Pillow's PNG writer takes no xmp= argument (its JPEG and WebP writers do): the chunk is written here.
            info.add_itxt(PNG_XMP_KEY, xmp.decode("utf-8"), zip=False)
        # Level 3 is much faster than Pillow's default 6, for slightly larger files.
        image.save(out, "PNG", compress_level=png_level, icc_profile=SRGB_PROFILE, pnginfo=info)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=quality, method=4, exact=image.mode == "RGBA", icc_profile=SRGB_PROFILE,
                   xmp=xmp)
    elif fmt == "jpeg":
        flatten(image).save(out, "JPEG", quality=quality, optimize=False, subsampling=0, icc_profile=SRGB_PROFILE,
                            xmp=xmp)
    else:
        raise ValueError(f"unknown output format {fmt!r} (png, webp or jpeg)")
    return out.getvalue()
