"""Turn untrusted upload bytes into a bounded, upright RGB or RGBA Pillow image, or refuse them with a reason."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import struct
import warnings
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import ExifTags, Image, features

from catalog_service.imaging.color import to_srgb
from catalog_service.imaging.errors import CorruptImage, ImageRejected, ImageTooLarge, UnsupportedImage

try:  # HEIC (iPhone photos) needs the optional pillow-heif plugin; without it HEIC is refused by name.
    import pillow_heif
except ImportError:
    HEIF_SUPPORTED = False
else:
    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True

AVIF_SUPPORTED = features.check("avif")

DEFAULT_MAX_PIXELS = 50_000_000
"""Pixel cap (width * height) when the caller gives none: about 150 MB decoded as RGB."""

BUDGET_BYTES_PER_PIXEL = 4
"""Memory budget of one decode when the caller gives none: max_pixels * this, an RGB photo at the pixel cap."""

MAX_DIMENSION = 65_535
"""Longest side, in px, we believe from a header; JPEG cannot encode more, and no product photo needs it."""

# Sniffed name -> the one Pillow plugin allowed to open it, so bytes that look like a PNG never reach another decoder.
_PILLOW_FORMATS = {
    "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP",
    "tiff": "TIFF", "bmp": "BMP", "avif": "AVIF", "heif": "HEIF",
}
_LABELS = {"webp": "WebP", "heif": "HEIC"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_AVIF_BRANDS = {b"avif", b"avis"}

# What Pillow raises on damaged input (found by fuzzing too: the AVIF plugin raises RuntimeError).
# ImageRejected is a ValueError, so _decoding re-raises ours before reaching this tuple.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError, RuntimeError, struct.error, zlib.error,
)

_ACCEPTED = "Upload a JPEG, PNG or WebP photo."

# What Pillow keeps per pixel of a decoded image by mode: one byte for bilevel, grey and palette, two for
# 16-bit grey, four for every other mode (it pads RGB and LA to four bytes too).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Pillow decodes WebP through libwebp's animation decoder: two RGBA canvases of its own and the RGBA frame
# it hands to Pillow, alive as long as the image (tests/imaging/test_load.py measures the whole decode).
_WEBP_DECODER_BYTES = 12
_GREY_16 = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# Decoded modes whose ICC profile is applied before the mode is normalised (see load_image).
_PROFILE_MODES = ("CMYK", "L", "LA")


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the header says: format and upright size."""

    format: str
    width: int
    height: int


def sniff_format(data: bytes) -> str | None:
    """Image format named by the file's magic bytes ("jpeg", "png", ...), or None; never trusts names or headers."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    # "BM" alone is too common a prefix; also require a known DIB header size.
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in (12, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if head[4:8] == b"ftyp":  # ISO media (HEIF/AVIF): the major brand, else the compatible brands, say which codec.
        box_size = struct.unpack(">I", data[:4])[0]
        brands = [data[8:12]] + [data[i : i + 4] for i in range(16, min(box_size, 64), 4)]
        for brand in brands:
            if brand in _AVIF_BRANDS:
                return "avif"
            if brand in _HEIF_BRANDS:
                return "heif"
    return None


def probe(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Format and upright size from the header alone, after the same checks load_image makes."""
    fmt = _sniff_or_reject(data)
    with _decoding(fmt, max_pixels), Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[fmt]]) as im:
        _check_size(im.size, max_pixels)
        orientation = _orientation(im)
        width, height = im.size
    if orientation in (5, 6, 7, 8):  # the four orientations that turn the picture by 90 degrees
        width, height = height, width
    return ImageInfo(fmt, width, height)


def load_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    draft_slack: float = 0.0,
    max_bytes: int | None = None,
) -> Image.Image:
    """Decoded first frame, upright, in sRGB (RGB or RGBA), its longest side at most max_side.

    A photo with an embedded ICC profile (Display P3, Adobe RGB, CMYK) is converted to sRGB (imaging/color.py);
    an untagged one is taken as sRGB already.

    `draft_slack` lets a JPEG land up to that fraction below max_side when a reduced-scale decode gets
    there with no resampling at all: a 4000 px photo for a 2048 px cap decodes at 1/2 scale (2000 px), far
    faster than a full decode plus a 12 MP resample.

    `max_bytes` (default max_pixels * BUDGET_BYTES_PER_PIXEL) bounds the memory the decode takes at its
    peak, reckoned from the header before any pixel is decoded: the pixels in the mode the decoder makes,
    its own buffers, and the full-size copies made before the image is scaled down. A file within the
    pixel cap but over that budget (a 16383x3000 WebP of a few bytes, a 7000x7000 PNG with alpha) is
    refused with ImageTooLarge.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    if not 0 <= draft_slack < 0.5:
        raise ValueError(f"draft_slack must be in [0, 0.5), not {draft_slack}")
    budget = max_pixels * BUDGET_BYTES_PER_PIXEL if max_bytes is None else max_bytes
    fmt = _sniff_or_reject(data)
    # Not `with Image.open()`: closing would destroy the decoded pixels, and when they need no change they
    # are the answer. The file is our BytesIO, so nothing is left open.
    with _decoding(fmt, max_pixels):
        im = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[fmt]])
        _check_size(im.size, max_pixels)
        if max_side is not None and (target := _draft_scale_target(im.size, math.floor(max_side * (1 - draft_slack)))):
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale for a fraction of the time and memory; Pillow's draft()
            # exists for JPEG only, so every other format is decoded whole and scaled down after.
            im.draft("RGB", target)
        _check_budget(fmt, im, max_side, budget)
        im.load()  # the whole decode happens here, inside the guard: truncation surfaces now, not later
        orientation = _orientation(im)
        # A CMYK or grey profile needs the pixels in its own mode, and they change mode anyway: the profile makes
        # that full-size copy. Pillow's own CMYK -> RGB knows no profile.
        decoded = to_srgb(im) if im.mode in _PROFILE_MODES else im
        # Mode first (filters must see real colours), then the size, and only then the turn, on the small
        # image: each step's full-size copy is what the budget above counts, and no more of them are made.
        # An RGB profile (Display P3, Adobe RGB) is applied in place after the fit: a per-pixel change need
        # not touch the pixels the fit drops.
        image = _upright(to_srgb(_fit(_normalise_mode(decoded), max_side), in_place=True), orientation)
    if image is im and fmt == "webp":
        image = im.copy()  # the WebP file's image keeps libwebp's canvases for as long as it lives
    if image is not im:
        im.close()  # its pixels go now, not when the garbage collector comes by
    return image


def _draft_scale_target(size: tuple[int, int], max_side: int) -> tuple[int, int] | None:
    """Size to pass to draft() so the decode never lands below max_side on its longest side; None when not shrinking."""
    width, height = size
    longest = max(width, height)
    if longest <= max_side:
        return None
    # draft() picks the largest 1/2^n scale that keeps both sides >= this box, so the box is the exact fit.
    return (max(1, -(-width * max_side // longest)), max(1, -(-height * max_side // longest)))


def _sniff_or_reject(data: bytes) -> str:
    """Sniffed format we can decode here, or UnsupportedImage saying what the bytes are instead."""
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImage(_not_an_image(data))
    if (fmt == "heif" and not HEIF_SUPPORTED) or (fmt == "avif" and not AVIF_SUPPORTED):
        raise UnsupportedImage(
            f"{_label(fmt)} photos are not supported yet. Export the photo as JPEG and upload it again."
        )
    return fmt


def _not_an_image(data: bytes) -> str:
    """Merchant-facing reason for bytes with no image signature; the common case is a URL that served a web page."""
    if not data:
        return f"The file is empty. {_ACCEPTED}"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF"):
        what = "a PDF document"
    elif head.startswith(b"PK\x03\x04"):
        what = "a ZIP archive"
    elif head.startswith(b"<"):
        what = "an SVG drawing" if b"<svg" in head.lower() else "a web page (HTML)"
    else:
        return f"The file is not an image format we accept. {_ACCEPTED}"
    return f"The file is {what}, not a photo. {_ACCEPTED}"


@contextlib.contextmanager
def _decoding(fmt: str, max_pixels: int) -> Iterator[None]:
    """Run Pillow with its bomb warning as an error, its other warnings silenced, and its exceptions mapped to ours."""
    # catch_warnings is process-wide state: fine for our single-threaded workers, and Pillow's globals stay untouched.
    with warnings.catch_warnings():
        # Pillow warns (UserWarning, RuntimeWarning) about odd but harmless metadata such as corrupt EXIF;
        # the merchant cannot act on that. Deprecations still surface, so our own tests see them.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
            raise ImageTooLarge(
                f"The image has more pixels than we can safely decode; the limit is {_mp(limit)} MP. "
                "Upload a smaller photo."
            ) from None
        except _DECODE_ERRORS:
            raise CorruptImage(
                f"The {_label(fmt)} file is damaged or incomplete and cannot be read. "
                "Export the photo again and re-upload it."
            ) from None


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an empty, absurd or over-cap header before a single pixel is decoded."""
    width, height = size
    if width < 1 or height < 1:
        raise CorruptImage(
            f"The image header says it is {width}x{height} pixels, so the file is damaged. Export the photo again."
        )
    if max(width, height) > MAX_DIMENSION:
        raise ImageTooLarge(
            f"The image is {width}x{height}; no side may be longer than {MAX_DIMENSION} px. Upload a smaller photo."
        )
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} ({_mp(width * height)} MP); the limit is {_mp(max_pixels)} MP. "
            "Upload a smaller photo."
        )


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) read from the header; 1 when unreadable, as a broken tag should not cost the photo."""
    try:
        # Image.Image.getexif, not im.getexif: PNG's override decodes every pixel to look for a late eXIf chunk.
        return int(Image.Image.getexif(im).get(ExifTags.Base.Orientation, 1))
    except _DECODE_ERRORS:
        return 1


# EXIF orientation -> the turn that makes the stored picture upright (EXIF 2.3, tag 0x0112).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    """The image turned as the orientation read from its file says, its metadata dropped with the tag in it."""
    turn = _UPRIGHT.get(orientation)
    if turn is None:
        return im
    turned = im.transpose(turn)
    for key in ("exif", "xmp", "XML:com.adobe.xmp"):  # they still say "turn me", which is done
        turned.info.pop(key, None)
    return turned


def _check_budget(fmt: str, im: Image.Image, max_side: int | None, budget: int) -> None:
    """Refuse an image whose decode would take more memory than the budget, from its header alone."""
    need = _peak_bytes(fmt, im, max_side)
    if need <= budget:
        return
    width, height = im.size
    at_most = budget * width * height // need  # the same kind of file, scaled to fit
    what = f"{_label(fmt)} with transparency" if im.has_transparency_data else _label(fmt)
    raise ImageTooLarge(
        f"The {width}x{height} {what} needs {_mb(need)} MB of memory to decode, over the {_mb(budget)} MB "
        f"we allow one photo; a file like it may have at most {_mp(at_most)} MP. "
        "Upload a smaller photo, or the same photo saved as JPEG."
    )


ICC_TRANSFORM_BYTES = 4_000_000
"""Memory a profile-tagged decode takes for its colour transform, beside the pixels."""


def _peak_bytes(fmt: str, im: Image.Image, max_side: int | None) -> int:
    """Bytes load_image holds at its peak for this opened, not yet decoded image (a bound, not a measurement).

    Each term is an image alive at the same moment as the decoded one; tests/imaging/test_load.py checks
    the sum against the resident size a real decode reaches.
    """
    width, height = im.size
    pixels = width * height
    per_pixel = _STORED_BYTES.get(im.mode, 4) + (_WEBP_DECODER_BYTES if fmt == "webp" else 0)
    alpha = im.has_transparency_data
    converted = im.mode != ("RGBA" if alpha else "RGB")
    if im.mode in _GREY_16:
        per_pixel += 8  # NumPy's copy and its 8-bit grey, then RGB
    elif converted:
        per_pixel += 4  # the RGB or RGBA copy
    resampling = 0
    if max_side is not None and max(width, height) > max_side:
        per_pixel += 4 if alpha else 0  # Pillow resamples alpha premultiplied, from a full-size copy
        out_w, out_h = _fitted((width, height), max_side)
        # At most: a reduce() to a quarter or less, one pass's intermediate image, the result (4 bytes a pixel).
        resampling = 4 * (pixels // 4 + max(out_w * height, width * out_h) + out_w * out_h)
    elif fmt == "webp" and not converted:
        per_pixel += 4  # the copy that lets the WebP decoder go
    # LittleCMS builds the colour transform's tables (imaging/color.py): a few MB, whatever the image's size.
    transform = ICC_TRANSFORM_BYTES if im.info.get("icc_profile") else 0
    return pixels * per_pixel + resampling + transform


def _normalise_mode(im: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image carries any transparency; done before resampling so filters see real colours."""
    if im.mode in _GREY_16:
        im = _grey16_to_8bit(im)
    elif im.mode == "La":
        im = im.convert("LA")  # Pillow has no direct La -> RGBA conversion
    target = "RGBA" if im.has_transparency_data else "RGB"
    # convert() also applies palette/tRNS transparency and Pillow's (profile-free) CMYK -> RGB.
    return im if im.mode == target else im.convert(target)


def _grey16_to_8bit(im: Image.Image) -> Image.Image:
    """8-bit "L" (or "LA") from 16-bit greyscale, keeping the high byte; Pillow's own convert() clips 65535 to 255."""
    values = np.asarray(im)
    if values.dtype != np.uint16:  # "I" (32-bit integers) and "F" (floats) may hold anything
        values = np.clip(values, 0, 65535).astype(np.uint16)
    grey = Image.fromarray((values >> 8).astype(np.uint8))
    transparent = im.info.get("transparency")
    if isinstance(transparent, int):  # greyscale tRNS: one 16-bit grey value is see-through
        grey.putalpha(Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8)))
    return grey


def _fit(im: Image.Image, max_side: int | None) -> Image.Image:
    """Image scaled down so its longest side is exactly max_side; untouched when already small enough."""
    if max_side is None or max(im.size) <= max_side:
        return im
    size = _fitted(im.size, max_side)
    # reducing_gap: when shrinking by 3x or more, a fast integer reduce() does the bulk and LANCZOS the last
    # factor of 3 or less (Pillow documents it as indistinguishable). Below 3x it does nothing: there the
    # JPEG draft (see draft_slack in load_image) is what avoids a full-size resample.
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _fitted(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """size scaled so its longest side is max_side."""
    width, height = size
    if width >= height:
        return max_side, max(1, round(height * max_side / width))
    return max(1, round(width * max_side / height)), max_side


def _mb(size: int) -> str:
    """Megabytes for a message, whole."""
    return f"{math.ceil(size / 1_000_000)}"


def _mp(pixels: int) -> str:
    """Megapixels for a message: 108, 12.3, 0.5."""
    return f"{round(pixels / 1_000_000, 1):g}"


def _label(fmt: str) -> str:
    """Format name as merchants know it: JPEG, PNG, WebP, HEIC."""
    return _LABELS.get(fmt, fmt.upper())
