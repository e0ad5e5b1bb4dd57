"""Where a product stands in a scene, and laying its own pixels back over a scene a model drew around it.

Pure functions on Pillow images. The product-exact path (issue 19): `place` puts the trimmed cutout on a
transparent canvas at a `Layout`'s position and scale; `edit_mask` tells the image model which pixels to leave
alone; once the model has drawn the scene, `recomposite` lays the product's own pixels back at the same box, with
a contact shadow, after a light match that changes the scene (never the product) and softening any
product-coloured ghost the model left just outside the product's alpha. The compositor's reference scene uses the
same `recomposite`, so a merchant's backdrop photo gets the same shadow and light match.

Every statistic is taken on small copies and every full-resolution change is limited to the region it touches,
except the light match, which is one lookup table over the scene.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from scipy import ndimage

Size = tuple[int, int]
Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in scene pixels; right and bottom exclusive."""

ALPHA_VISIBLE = 8
"""Alpha (0-255) below which a cutout pixel counts as background when trimming: rembg leaves faint halos."""

EDIT_MASK_GROW = 6
"""Pixels the edit mask's keep-region reaches beyond the product, so the model leaves its edge alone."""

LIGHT_MATCH = 0.25
"""How far (0-1) the scene's white balance moves toward the product's light; exposure moves a half of that."""

_MAX_GAIN_CHANGE = 0.06
"""No channel of the scene is scaled by more than this fraction: a nudge, never a regrade."""

_NEUTRAL_CHROMA = 0.25
"""(max - min) / max of an RGB pixel below which it is near-neutral: a surface that shows the light's colour."""

_MIN_NEUTRAL_SHARE = 0.02
"""Share of near-neutral pixels (product or scene) below which white balance is left alone: nothing to read it from."""

_GHOST_REACH = 0.06
"""How far outside the product's alpha a ghost is looked for, as a fraction of the box's longer side."""

_GHOST_CONTRAST = 30.0
"""RGB distance between the product's edge colour and the background below which a ghost cannot be told apart."""

_GHOST_SHARE = (0.15, 0.65)
"""Share of the product's colour in a rim pixel from which it starts giving way to the background, and fully does."""

_GHOST_OFF_LINE = (0.2, 0.6)
"""Distance from the background-to-product colour line (over that line's length) up to which a rim pixel's share is
fully trusted, and beyond which it is not trusted at all: such a pixel is something else the model drew."""

_SHADOW_SCALE = 4
"""Shadow masks are blurred at up to 1/4 of the output size."""

_STATS_SIDE = 96
"""Colour statistics are read from copies at most this many pixels on their longer side."""

_LUMA = np.asarray((0.299, 0.587, 0.114))
"""Rec. 601 weights: the brightness of an RGB triple."""

_VISIBLE_LUT = [255 if value >= ALPHA_VISIBLE else 0 for value in range(256)]


class EmptyCutout(ValueError):
    """The cutout has no visible pixels: there is no product to place."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where and how large the product goes, as fractions of the frame.

    The product is scaled to the largest size within `max_height` x `max_width` of the frame, centred on
    `center_x`, with its bottom edge on `base_y` (or centred vertically on `center_y` when `base_y` is None).
    """

    max_height: float
    max_width: float
    center_x: float = 0.5
    base_y: float | None = None
    center_y: float = 0.5


SCENE_LAYOUT = Layout(max_height=0.56, max_width=0.5, base_y=0.84)
"""A generated scene: the product standing bottom-centre, with room above and around it for the setting."""


@dataclasses.dataclass(frozen=True)
class ShadowStyle:
    """A contact shadow's darkness (0-1) and softness (a multiplier of its blur) for one backdrop."""

    opacity: float
    softness: float


# How the contact shadow follows the backdrop around the product's base (mean luma 0-255; contrast is the luma's
# standard deviation over its mean): darkness from brightness, softness from contrast, linear between the ends.
_DIM_LUMA, _HIGH_KEY_LUMA = 60.0, 220.0
_DIM_SHADOW = ShadowStyle(opacity=0.6, softness=1.0)
_HIGH_KEY_SHADOW = ShadowStyle(opacity=0.3, softness=1.0)
_FLAT_CONTRAST, _HARD_CONTRAST = 0.05, 0.35
_FLAT_SHADOW_SOFTNESS, _HARD_SHADOW_SOFTNESS = 1.5, 0.8
_PLAIN_SHADOW = ShadowStyle(opacity=0.45, softness=1.0)
"""When no backdrop shows around the base (the product fills the frame's bottom)."""


# --- placement --------------------------------------------------------------------------------------------


def trim(cutout: Image.Image) -> Image.Image:
    """The RGBA cutout cropped to its visible pixels; EmptyCutout when there are none."""
    rgba = cutout if cutout.mode == "RGBA" else cutout.convert("RGBA")
    return rgba.crop(visible_box(rgba))


def visible_box(cutout: Image.Image) -> Box:
    """The bounding box of the cutout's visible pixels (what `trim` keeps); EmptyCutout when there are none."""
    if cutout.mode in ("RGBA", "LA"):
        alpha = cutout.getchannel("A")
    elif cutout.mode == "RGBa":
        alpha = cutout.getchannel("a")
    else:
        return 0, 0, cutout.width, cutout.height
    box = alpha.point(_VISIBLE_LUT).getbbox()
    if box is None:
        raise EmptyCutout("the cutout is fully transparent: no product to place in a scene")
    return box


def visible_size(cutout: Image.Image) -> Size:
    """The size `trim` would give, without copying the pixels."""
    left, top, right, bottom = visible_box(cutout)
    return right - left, bottom - top


def fit(product_size: Size, size: Size, layout: Layout) -> Box:
    """The box the trimmed product is resized into: as large as the layout allows, keeping its proportions."""
    width, height = size
    src_w, src_h = product_size
    scale = min(layout.max_height * height / src_h, layout.max_width * width / src_w)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    left = round(layout.center_x * width - new_w / 2)
    if layout.base_y is None:
        top = round(layout.center_y * height - new_h / 2)
    else:
        top = round(layout.base_y * height) - new_h
    return left, top, left + new_w, top + new_h


def resize_into(product: Image.Image, box: Box) -> Image.Image:
    """The trimmed RGBA product resized to the box's size, the one resampling every caller shares."""
    box_size = (box[2] - box[0], box[3] - box[1])
    if box_size[0] < 1 or box_size[1] < 1:
        raise ValueError(f"the placement box {box} is empty")
    if box_size == product.size:
        return product
    return product.resize(box_size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def place(cutout: Image.Image, size: Size, layout: Layout = SCENE_LAYOUT) -> tuple[Image.Image, Box]:
    """A transparent RGBA canvas of `size` with the trimmed cutout resized into its box, and that box."""
    product = trim(cutout)
    box = fit(product.size, size, layout)
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(resize_into(product, box), box[:2])  # no mask: the product's alpha is copied as it is
    return canvas, box


def edit_mask(placed: Image.Image, *, grow: int = EDIT_MASK_GROW) -> Image.Image:
    """The mask for an image edit: opaque (keep) over the product and `grow` px around it, transparent elsewhere.

    OpenAI's edit endpoint reads the mask's alpha: fully transparent means the model may change the pixel, and
    the mask must be a PNG the size of the first image (API-NOTES.md, `images.edit`). On GPT image models this
    is guidance only, which is why `recomposite` lays the product back afterwards.
    """
    alpha = placed.getchannel("A") if placed.mode in ("RGBA", "LA") else Image.new("L", placed.size, 255)
    keep = Image.new("L", placed.size, 0)
    bbox = alpha.point(_VISIBLE_LUT).getbbox()
    if bbox is not None:
        grow = max(0, grow)
        region = _clip(_expand(bbox, grow), placed.size)
        visible = np.asarray(alpha.crop(region)) >= ALPHA_VISIBLE
        if grow:
            # A square reach, two passes of a 1-D maximum: its cost does not grow with `grow`.
            visible = ndimage.maximum_filter1d(visible, 2 * grow + 1, axis=0)
            visible = ndimage.maximum_filter1d(visible, 2 * grow + 1, axis=1)
        keep.paste(Image.fromarray(visible.astype(np.uint8) * 255), region[:2])
    black = Image.new("L", placed.size, 0)
    return Image.merge("RGBA", (black, black, black, keep))


# --- re-composite -----------------------------------------------------------------------------------------


def recomposite(
    scene: Image.Image,
    cutout: Image.Image,
    box: Box,
    *,
    shadow: float | None = None,
    light: float = LIGHT_MATCH,
    ghosts: bool = True,
) -> Image.Image:
    """`scene` (RGB) with the product's own pixels laid over it at `box`: inside the alpha, exactly the cutout's.

    Before the product goes down the scene is changed to suit it: its white balance and exposure nudged `light`
    (0-1) of the way toward the product's light, a product-coloured ghost just outside the alpha softened into the
    background around it (`ghosts`), and a contact shadow drawn under the product's base. `shadow` is the
    shadow's darkness (0-1, 0 for none); None reads darkness and softness from the scene (`shadow_style`).
    """
    canvas = scene.convert("RGB") if scene.mode != "RGB" else scene.copy()
    product = resize_into(trim(cutout), box)
    if light > 0:
        canvas = match_light(canvas, product, box, strength=light)
    if ghosts:
        _soften_ghosts(canvas, product, box)
    style = shadow_style(canvas, box)
    opacity = style.opacity if shadow is None else shadow
    if opacity > 0:
        contact_shadow(canvas, product, box, opacity=opacity, softness=style.softness)
    canvas.paste(product, box[:2], product)
    return canvas


def match_light(scene: Image.Image, product: Image.Image, box: Box, *, strength: float) -> Image.Image:
    """`scene` (RGB) with its white balance and exposure moved `strength` (0-1) toward the product's light.

    White balance is read from near-neutral pixels only (a grey label, a white cap; the wall around the product),
    so a red product does not redden the room. Exposure compares the product's brightness with its surroundings
    at half the strength: a product's brightness is partly its own colour (a black bottle is not dim light).
    Both are clamped to a nudge; the product itself is never changed here.
    """
    product_px = _opaque_pixels(product)
    around_px = _pixels_around(scene, _expand(box, _reach(box, 0.5)), box)
    if product_px.size == 0 or around_px.size == 0:
        return scene
    around_luma = float((around_px @ _LUMA).mean())
    exposure = 1.0 + 0.5 * strength * (float((product_px @ _LUMA).mean()) / max(around_luma, 1.0) - 1.0)
    gains = np.full(3, min(max(exposure, 1.0 - _MAX_GAIN_CHANGE), 1.0 + _MAX_GAIN_CHANGE))
    product_cast, around_cast = _neutral_cast(product_px), _neutral_cast(around_px)
    if product_cast is not None and around_cast is not None:
        balance = 1.0 + strength * (product_cast / around_cast - 1.0)
        balance = balance / float(balance @ _LUMA)  # white balance changes colour, not brightness
        gains = gains * np.clip(balance, 1.0 - _MAX_GAIN_CHANGE, 1.0 + _MAX_GAIN_CHANGE)
    if np.all(np.abs(gains - 1.0) < 0.002):
        return scene
    levels = np.arange(256, dtype=np.float64)
    table: list[int] = []
    for gain in gains:
        table.extend(np.clip(np.rint(levels * gain), 0, 255).astype(int).tolist())
    return scene.point(table)


def shadow_style(scene: Image.Image, box: Box) -> ShadowStyle:
    """A contact shadow to suit the backdrop around the product's base.

    A bright, high-key backdrop (soft, wrapping light) gets a lighter shadow than a dim one; a flat, low-contrast
    backdrop (diffuse light) a softer one than a contrasty backdrop (a hard light casts crisper shadows).
    """
    left, top, right, bottom = box
    reach_x, reach_y = round(0.3 * (right - left)), round(0.15 * (bottom - top))
    px = _pixels_around(scene, (left - reach_x, bottom - reach_y, right + reach_x, bottom + 2 * reach_y), box)
    if px.size == 0:
        return _PLAIN_SHADOW
    luma = px @ _LUMA
    brightness = float(luma.mean())
    contrast = float(luma.std()) / max(brightness, 1.0)
    key = _ramp(brightness, _DIM_LUMA, _HIGH_KEY_LUMA)
    hardness = _ramp(contrast, _FLAT_CONTRAST, _HARD_CONTRAST)
    return ShadowStyle(
        opacity=round(_DIM_SHADOW.opacity + key * (_HIGH_KEY_SHADOW.opacity - _DIM_SHADOW.opacity), 3),
        softness=round(_FLAT_SHADOW_SOFTNESS + hardness * (_HARD_SHADOW_SOFTNESS - _FLAT_SHADOW_SOFTNESS), 3),
    )


# --- shadows (shared with compose.py) ---------------------------------------------------------------------


def shade(canvas: Image.Image, mask: Image.Image, origin: tuple[float, float], *, blur: float, opacity: float) -> None:
    """Darken `canvas` in place under a blurred `mask` (L) whose top-left corner sits at `origin`.

    The mask is padded, shrunk, blurred and grown back, so a wide blur costs little; only the padded
    mask's area of the canvas is touched.
    """
    pad = math.ceil(2 * blur) + 2
    mask_w, mask_h = mask.size
    padded = Image.new("L", (mask_w + 2 * pad, mask_h + 2 * pad))
    padded.paste(mask, (pad, pad))
    shrink = max(1, min(_SHADOW_SCALE, int(blur // 2)))
    small = padded.reduce(shrink) if shrink > 1 else padded
    soft = small.filter(ImageFilter.GaussianBlur(blur / shrink)).resize(padded.size, Image.Resampling.BILINEAR)
    left, top = round(origin[0]) - pad, round(origin[1]) - pad
    right, bottom = left + padded.width, top + padded.height
    region = (max(0, left), max(0, top), min(canvas.width, right), min(canvas.height, bottom))
    if region[0] >= region[2] or region[1] >= region[3]:
        return
    soft = soft.crop((region[0] - left, region[1] - top, region[2] - left, region[3] - top))
    shade_lut = soft.point([255 - round(opacity * value) for value in range(256)])
    darkened = ImageChops.multiply(canvas.crop(region), Image.merge("RGB", (shade_lut, shade_lut, shade_lut)))
    canvas.paste(darkened, region[:2])


def contact_shadow(
    canvas: Image.Image, product: Image.Image, box: Box, *, opacity: float, softness: float = 1.0
) -> None:
    """A soft pool on the floor under the product's footprint, darkest in a thin line where it touches.

    `product` is the RGBA product at the box's size; `softness` multiplies both blurs.
    """
    left, _, _, base = box
    width, height = product.size
    alpha = np.asarray(product.getchannel("A"))
    band = max(2, round(height * 0.03))
    footprint = alpha[height - band :].max(axis=0)
    columns = np.flatnonzero(footprint > 64)
    foot_left, foot_right = (int(columns[0]), int(columns[-1]) + 1) if columns.size else (0, width)
    foot_w = foot_right - foot_left
    # The pool: a flat ellipse a little wider than the footprint, as a floor seen at a low angle.
    pool_w = foot_w * 1.1 + width * 0.12
    pool_h = max(4.0, pool_w * 0.12)
    pool = Image.new("L", (math.ceil(pool_w), math.ceil(pool_h)))
    ImageDraw.Draw(pool).ellipse((0, 0, pool.width - 1, pool.height - 1), fill=255)
    pool_x = left + foot_left + foot_w / 2 - pool.width / 2
    shade(canvas, pool, (pool_x, base - pool.height * 0.45), blur=pool_h * 0.55 * softness, opacity=opacity * 0.6)
    # The contact line: the footprint itself squashed to a few pixels at the base.
    line_h = max(2, round(height * 0.012))
    line = Image.fromarray(np.ascontiguousarray(footprint[None, :])).resize((width, line_h), Image.Resampling.NEAREST)
    shade(canvas, line, (left, base - line_h / 2), blur=max(1.5, height * 0.01) * softness, opacity=opacity)


# --- ghosts -----------------------------------------------------------------------------------------------


def _soften_ghosts(canvas: Image.Image, product: Image.Image, box: Box) -> None:
    """Blend product-coloured pixels just outside the alpha toward the background around them, in place.

    A model asked to draw around a placed product often redraws it a little larger or shifted; once the real
    product is laid back, that redraw shows as a coloured rim. Near the product's edge, the share of the
    product's own edge colour in each pixel, over the background beyond the rim, decides how far it gives way
    to that background. The two colour estimates are made at a scale where the rim is a few pixels wide; the
    decision is per pixel, on the rim's pixels only.
    """
    reach = max(2, _reach(box, _GHOST_REACH))
    region = _clip(_expand(box, 2 * reach), canvas.size)
    if region[0] >= region[2] or region[1] >= region[3]:
        return
    full = (region[2] - region[0], region[3] - region[1])
    layer = Image.new("RGBA", full, (0, 0, 0, 0))
    layer.paste(product, (box[0] - region[0], box[1] - region[1]))
    scene_region = canvas.crop(region)
    factor = max(1, reach // 4)
    small_scene = np.asarray(scene_region.reduce(factor) if factor > 1 else scene_region, dtype=np.float64)
    premultiplied = layer.convert("RGBa")
    small_product = np.asarray(premultiplied.reduce(factor) if factor > 1 else premultiplied, dtype=np.float64)
    alpha = small_product[..., 3] / 255.0
    reach_small = max(1, math.ceil(reach / factor))
    near = ndimage.maximum_filter(alpha > 0.03, size=2 * reach_small + 1)
    # The background beyond the rim, carried inward across it; the product's own colour at its edge, outward.
    sigma = float(reach_small)
    beyond = (~near).astype(np.float64)
    spread_beyond = ndimage.gaussian_filter(beyond, sigma)
    background = ndimage.gaussian_filter(small_scene * beyond[..., None], (sigma, sigma, 0))
    background /= np.maximum(spread_beyond, 1e-6)[..., None]
    spread_alpha = ndimage.gaussian_filter(alpha, sigma / 2)
    edge_color = ndimage.gaussian_filter(small_product[..., :3], (sigma / 2, sigma / 2, 0))
    edge_color /= np.maximum(spread_alpha, 1e-6)[..., None]
    usable = near & (spread_beyond > 0.01) & (spread_alpha > 0.01)
    usable &= np.linalg.norm(edge_color - background, axis=2) > _GHOST_CONTRAST
    # Only where the small copy already shows some of the product's colour (and next to it): on a clean
    # background most of the rim needs no per-pixel look.
    toward_small = edge_color - background
    share_small = ((small_scene - background) * toward_small).sum(axis=2) / np.maximum(
        (toward_small * toward_small).sum(axis=2), 1.0
    )
    usable &= ndimage.maximum_filter(usable & (share_small > _GHOST_SHARE[0] / 2), size=3)
    if not usable.any():
        return
    # Per pixel, on the rim only: outside the product's full opacity, where both estimates are usable.
    rim = np.asarray(_upscale_mask(usable, full)) & (np.asarray(layer.getchannel("A")) < 255)
    if not rim.any():
        return
    rows, cols = np.nonzero(rim)
    scene_px = np.array(scene_region)
    here = scene_px[rows, cols].astype(np.float32)
    background_px = _sample(background, rows, cols, factor)
    edge_px = _sample(edge_color, rows, cols, factor)
    # How much of the product's colour each pixel holds: 0 on the background, 1 on a solid ghost, between on a
    # ghost's soft edge; trusted only for pixels near the line from background to product colour. A clear share
    # gives way to the background; a faint one (the background's own texture) is left alone.
    toward = edge_px - background_px
    length2 = np.maximum((toward * toward).sum(axis=1), 1.0)
    along = ((here - background_px) * toward).sum(axis=1) / length2
    off_line = np.linalg.norm(here - background_px - along[:, None] * toward, axis=1)
    off_share = off_line / np.sqrt(length2)
    trust = np.clip((_GHOST_OFF_LINE[1] - off_share) / (_GHOST_OFF_LINE[1] - _GHOST_OFF_LINE[0]), 0.0, 1.0)
    ghost = np.clip((along - _GHOST_SHARE[0]) / (_GHOST_SHARE[1] - _GHOST_SHARE[0]), 0.0, 1.0) * trust
    scene_px[rows, cols] = np.rint(here + ghost[:, None] * (background_px - here)).astype(np.uint8)
    canvas.paste(Image.fromarray(scene_px), region[:2])


def _upscale_mask(mask: np.ndarray, size: Size) -> np.ndarray:
    """A boolean mask brought to `size`, each cell covering its share of the frame."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    return np.asarray(image) > 0


def _sample(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear samples of a copy reduced `factor` times (rows, cols, channels) at full-size pixel positions."""
    coords = np.stack(((rows + 0.5) / factor - 0.5, (cols + 0.5) / factor - 0.5))
    channels = [ndimage.map_coordinates(values[..., c], coords, order=1, mode="nearest") for c in range(3)]
    return np.stack(channels, axis=1).astype(np.float32)


# --- small helpers ----------------------------------------------------------------------------------------


def _ramp(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    return min(max((value - low) / (high - low), 0.0), 1.0)


def _reach(box: Box, fraction: float) -> int:
    """`fraction` of the box's longer side, in whole pixels."""
    return round(fraction * max(box[2] - box[0], box[3] - box[1]))


def _expand(box: Box, by: int) -> Box:
    return box[0] - by, box[1] - by, box[2] + by, box[3] + by


def _clip(box: Box, size: Size) -> Box:
    """`box` limited to a frame of `size` (possibly empty: right <= left)."""
    left, top = max(0, box[0]), max(0, box[1])
    return left, top, max(left, min(size[0], box[2])), max(top, min(size[1], box[3]))


def _opaque_pixels(product: Image.Image) -> np.ndarray:
    """A small copy's nearly opaque RGB pixels of an RGBA product, as an (n, 3) float array."""
    scale = _STATS_SIDE / max(product.size)
    if scale < 1:
        small_size = (max(1, round(product.width * scale)), max(1, round(product.height * scale)))
        product = product.resize(small_size, Image.Resampling.BOX)
    rgba = np.asarray(product.convert("RGBA"), dtype=np.float64).reshape(-1, 4)
    return rgba[rgba[:, 3] > 230, :3]


def _pixels_around(scene: Image.Image, region: Box, exclude: Box) -> np.ndarray:
    """A small copy's RGB pixels of `region` (clipped to the scene) outside `exclude`, as an (n, 3) float array.

    `exclude` is the product's box: in a generated scene it holds the model's own drawing of the product.
    """
    region = _clip(region, scene.size)
    width, height = region[2] - region[0], region[3] - region[1]
    if width < 1 or height < 1:
        return np.zeros((0, 3))
    scale = min(1.0, _STATS_SIDE / max(width, height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    crop = scene.crop(region)
    crop = crop.convert("RGB") if crop.mode != "RGB" else crop
    px = np.asarray(crop.resize(small_size, Image.Resampling.BOX) if scale < 1 else crop, dtype=np.float64)
    sx, sy = small_size[0] / width, small_size[1] / height
    keep = np.ones(px.shape[:2], dtype=bool)
    inner = (
        math.floor((exclude[0] - region[0]) * sx),
        math.floor((exclude[1] - region[1]) * sy),
        math.ceil((exclude[2] - region[0]) * sx),
        math.ceil((exclude[3] - region[1]) * sy),
    )
    keep[max(0, inner[1]) : max(0, inner[3]), max(0, inner[0]) : max(0, inner[2])] = False
    return px[keep]


def _neutral_cast(px: np.ndarray) -> np.ndarray | None:
    """The light's colour read from near-neutral, unclipped pixels: their channel means over their luma."""
    top = px.max(axis=1)
    chroma = (top - px.min(axis=1)) / np.maximum(top, 1.0)
    neutral = px[(chroma < _NEUTRAL_CHROMA) & (top > 40) & (top < 250)]
    if len(neutral) < max(4, _MIN_NEUTRAL_SHARE * len(px)):
        return None
    mean = neutral.mean(axis=0)
    return np.asarray(mean / max(float(mean @ _LUMA), 1.0))
