"""Background removal with rembg: one model session per process, the mask computed at output size.

rembg's own `remove()` decodes the full photo, stretches the 320x320 mask back to every source pixel
and composites at full resolution. We decode (JPEG draft) straight to the size the cutout will have,
let the model see the same 320x320 input, and do all mask work at that size. There the stretched mask,
a soft rim that still holds the old background's colour, is refined with the photo as guide
(`refine_edges`): crisp edges, true holes and thin parts, and edge colours without the old background.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .edges import ALPHA_FLOOR as _ALPHA_FLOOR
from .edges import CLEAN_LUT, box_mean, refine_edges
from .encode import encode
from .errors import ImageRejected
from .load import load_image

# The offline model and the checksum rembg itself verifies for it.
OFFLINE_MODEL = "u2netp"
OFFLINE_MODEL_MD5 = "8e83ca70e441ab06c318d82300c84806"

# A JPEG may decode this much below max_side when that skips a full-size decode and resample.
DRAFT_SLACK = 0.05
# A pixel counts as product for trimming once the model is this sure.
_TRIM_THRESHOLD = 32
WHITE_JPEG_QUALITY = 92


class ModelMissing(RuntimeError):
    """The cutout model is not installed where rembg looks."""


@dataclasses.dataclass(frozen=True)
class CutoutOptions:
    """How a cutout is shaped. Sizes in pixels; padding as a fraction of the product's longest side."""

    max_side: int = 2048
    padding: float = 0.05
    square: bool = False
    white_fill: float = 0.85  # the product's share of the white variant's frame, as marketplaces ask
    white_min_side: int = 1000  # marketplaces want at least 1000 px for zoom; a small product is scaled up
    refine: bool = True  # snap the model's soft 320 px mask to the photo's edges and clean the colours there
    keep_shadow: bool = False  # keep the product's own contact shadow in the transparent cutout

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise ValueError("max_side must be at least 16 pixels")
        if not 0 <= self.padding <= 1:
            raise ValueError("padding must be between 0 and 1")
        if not 0.1 <= self.white_fill <= 1:
            raise ValueError("white_fill must be between 0.1 and 1")


@dataclasses.dataclass
class Cutout:
    """The product without its background."""

    image: Image.Image  # RGBA: trimmed, padded, optionally square, longest side <= max_side
    product: Image.Image  # RGBA: trimmed tight to the product, no padding
    mask: Image.Image  # L: the mask over the whole working image (before trimming)
    box: tuple[int, int, int, int]  # the product's box in the working image


def model_path(model_dir: str | Path, model_name: str = OFFLINE_MODEL) -> Path:
    """Where `catalog-service models install` puts a model so that rembg finds it with U2NET_HOME."""
    return Path(model_dir) / f"{model_name}.onnx"


@functools.cache
def get_session(model_name: str = OFFLINE_MODEL, model_dir: str = "var/models") -> Any:
    """The rembg session for a model, created once per process and reused by every job."""
    # Importing rembg imports pymatting, whose numba functions compile eagerly at import: a long silent wait on a
    # fresh install, for alpha matting, which we never ask rembg for (refine_edges does our edges). numba's
    # documented NUMBA_DISABLE_JIT leaves them plain Python and uncompiled. It must be set before numba is
    # first imported, which is here; an operator's own value wins.
    os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
    from rembg import new_session

    # rembg reads its model home from the environment; point it at ours.
    os.environ["U2NET_HOME"] = str(Path(model_dir).resolve())
    if model_name == OFFLINE_MODEL and not model_path(model_dir, model_name).exists():
        # Without this check rembg would try to download it, and hang on a machine without internet.
        raise ModelMissing(
            f"the cutout model {model_name} is not installed in {model_dir}: run `catalog-service models install`"
        )
    import onnxruntime

    # onnxruntime's CPU memory arena keeps the largest inference's buffers for the life of the process (the
    # worker stayed hundreds of MB above its idle size after one cutout); without it they are freed after
    # each run, for slightly slower inference.
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    return new_session(model_name, sess_opts=options)


def predict_mask(image: Image.Image, session: Any) -> Image.Image:
    """The model's mask (mode L) at the size of `image`."""
    mask = session.predict(image.convert("RGB"))[0]
    if mask.size != image.size:
        mask = mask.resize(image.size, Image.Resampling.BILINEAR)
    return mask.convert("L")


def clean_mask(mask: Image.Image) -> Image.Image:
    """Snap the model's noise floor to fully transparent and its near-certain pixels to opaque."""
    return mask.point(CLEAN_LUT.tolist())


_SHADOW_FLOOR = 0.03  # floor darker than the lit floor by less than this is lighting noise, not shadow


def cut_out(image: Image.Image, session: Any, options: CutoutOptions = CutoutOptions()) -> Cutout:
    """Remove the background of an already-decoded image (its longest side at most max_side)."""
    if max(image.size) > options.max_side:
        image = image.copy()
        image.thumbnail((options.max_side, options.max_side), Image.Resampling.LANCZOS)
    rgb = image.convert("RGB")
    mask = clean_mask(predict_mask(rgb, session))
    if options.refine:
        refined = refine_edges(np.asarray(rgb), np.asarray(mask))
        mask, rgb = Image.fromarray(refined.mask), Image.fromarray(refined.colour)
    if image.mode == "RGBA":
        # A source that is already transparent keeps its own transparency too.
        mask = Image.fromarray(np.minimum(np.asarray(mask), np.asarray(image.getchannel("A"))))
    box = mask.point(lambda v: 255 if v >= _TRIM_THRESHOLD else 0).getbbox()
    if box is None:
        raise ImageRejected("No product could be found in this photo. Use a photo where the product stands out.")
    product = _with_alpha(rgb.crop(box), mask.crop(box))
    framed = product
    if options.keep_shadow:
        # The shadow goes into the transparent cutout only; `product` (and so the white variant) stays without it.
        alpha = np.asarray(mask, np.float32) / 255
        shadow = contact_shadow(np.asarray(rgb), alpha, box)
        combined = alpha + shadow * (1 - alpha)
        # Product over a black shadow: the colour is the product's, weighted by how much of it shows.
        colour = np.asarray(rgb, np.float32) * (alpha / np.maximum(combined, 1e-6))[..., None]
        full = _with_alpha(Image.fromarray(np.clip(colour + 0.5, 0, 255).astype(np.uint8)),
                           Image.fromarray(np.round(combined * 255).astype(np.uint8)))
        framed = full.crop(full.getchannel("A").point(lambda v: 255 if v >= _ALPHA_FLOOR else 0).getbbox() or box)
    return Cutout(image=_frame(framed, options), product=product, mask=mask, box=box)


def contact_shadow(rgb: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The product's own soft shadow on the floor as an alpha (float32 0..1) of black, outside the product."""
    height, width = alpha.shape
    x0, y0, x1, y1 = box
    # The floor under the product, a little wider than it: a shadow elsewhere is the studio's, not the product's.
    fx0, fx1 = max(0, x0 - (x1 - x0) // 5), min(width, x1 + (x1 - x0) // 5)
    fy0, fy1 = (y0 + y1) // 2, min(height, y1 + (y1 - y0) // 5)
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    # The lit floor as a smooth quadratic surface fitted to the background, twice, the second time without the
    # pixels the first fit found darker: the shadow itself must not pull the fit down.
    ys, xs = np.mgrid[0:height:4, 0:width:4]
    sample = alpha[::4, ::4] == 0
    terms = np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=-1).astype(np.float64) / [
        1, width, height, width**2, width * height, height**2]
    values = luma[::4, ::4]
    for _ in range(2):
        if sample.sum() < 12:
            return np.zeros_like(alpha)
        coef, *_ = np.linalg.lstsq(terms[sample], values[sample], rcond=None)
        sample &= values > (terms @ coef) * (1 - _SHADOW_FLOOR)
    fy, fx = np.mgrid[fy0:fy1, fx0:fx1]
    floor_terms = np.stack([np.ones_like(fx), fx, fy, fx * fx, fx * fy, fy * fy], axis=-1).astype(np.float64) / [
        1, width, height, width**2, width * height, height**2]
    lit = np.maximum(floor_terms @ coef, 1.0).astype(np.float32)
    darkening = box_mean(1 - luma[fy0:fy1, fx0:fx1] / lit, 2)
    shadow = np.zeros_like(alpha)
    shadow[fy0:fy1, fx0:fx1] = np.clip((darkening - _SHADOW_FLOOR) / (1 - _SHADOW_FLOOR), 0, 1)
    # Only where no product shows: mixed into the product's own soft edge, the shadow would draw a dark rim.
    shadow[alpha > 0] = 0
    return shadow


def remove_background(
    data: bytes, session: Any, options: CutoutOptions = CutoutOptions(), *, max_pixels: int = 50_000_000
) -> Cutout:
    """Decode untrusted bytes at the size the output needs, then cut out the product."""
    image = load_image(data, max_pixels=max_pixels, max_side=options.max_side, draft_slack=DRAFT_SLACK)
    return cut_out(image, session, options)


def white_variant(product: Image.Image, options: CutoutOptions = CutoutOptions()) -> Image.Image:
    """The product on pure #FFFFFF, centred on a square frame it fills to `white_fill`."""
    longest = max(product.size)
    side = min(options.max_side, max(options.white_min_side, math.ceil(longest / options.white_fill)))
    scale = side * options.white_fill / longest
    if abs(scale - 1) > 1e-3:
        size = (max(1, round(product.width * scale)), max(1, round(product.height * scale)))
        product = product.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    offset = ((side - product.width) // 2, (side - product.height) // 2)
    canvas.paste(product, offset, mask=product.getchannel("A"))
    return canvas


def encode_cutout(cutout: Cutout, fmt: str = "png") -> bytes:
    if fmt not in {"png", "webp"}:
        raise ValueError("a transparent cutout is PNG or WebP")
    return encode(cutout.image, fmt)


def _with_alpha(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    # Fully transparent pixels get black RGB: invisible either way, and PNG compresses them to nothing.
    pixels = np.dstack([np.asarray(rgb), np.asarray(alpha)])
    pixels[pixels[..., 3] == 0, :3] = 0
    return Image.fromarray(pixels, "RGBA")


def _frame(product: Image.Image, options: CutoutOptions) -> Image.Image:
    pad = round(max(product.size) * options.padding)
    width, height = product.width + 2 * pad, product.height + 2 * pad
    if options.square:
        width = height = max(width, height)
    scale = min(1.0, options.max_side / max(width, height))
    if scale < 1.0:
        product = product.resize(
            (max(1, round(product.width * scale)), max(1, round(product.height * scale))), Image.Resampling.LANCZOS
        )
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    canvas.paste(product, ((width - product.width) // 2, (height - product.height) // 2))
    return canvas
