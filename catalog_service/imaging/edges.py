"""Edge refinement: the model's soft 320 px mask snapped to the photo's own edges, at output size.

A fast guided filter (He & Sun 2015) with the photo as guide, corrected first where the model hesitated
and the photo clearly shows background (holes) or product (thin parts); then a soft threshold that drops
the halo and keeps true semi-transparency, and the old background unmixed out of the edge colours.
Pure NumPy/SciPy on arrays; no I/O.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image
from scipy import ndimage

# Mask values this close to 0 or 255 are the model's noise floor, not real transparency: left in,
# they put a grey haze over the white variant and bloat PNGs.
ALPHA_FLOOR = 8
ALPHA_CEIL = 247
CLEAN_LUT = np.array([0 if v < ALPHA_FLOOR else 255 if v > ALPHA_CEIL else v for v in range(256)], np.uint8)
"""The noise floor to 0 and near-certain values to 255, as a lookup table."""

# Edge refinement. Lengths are in pixels of the working image (the output); colour distances in 8-bit levels.
_REFINE_SCALE_DIVISOR = 400  # the fast guided filter works at about this long side, so its cost barely grows with size
_REFINE_RADIUS_DIVISOR = 80  # window radius: 20 px at 1600 px, about two of the model's 320 px mask cells
_REFINE_EPS = 2e-4  # guided-filter regulariser on colour variance (0-1 units): small = follow weak photo edges too
_SOFT_LOW, _SOFT_HIGH = 0.2, 0.8  # filtered mask below / above these becomes clear / opaque; between stays soft
_UNSURE_LOW, _UNSURE_HIGH = 0.03, 0.97  # the model's own mask between these is a guess the photo may correct
_BACKGROUND_DISTANCE = 14.0  # a pixel this close to the background behind it shows background (noise and JPEG)
_PRODUCT_DISTANCE = 40.0  # an unsure pixel this far from the background is product the model half-lost
_SHADOW_CHROMA = 0.04  # a darker pixel whose colour direction is this close to the background's may be a shadow
_CONTRAST_RADIUS = 16  # product colour for the contrast check is averaged this far (at the filter's small size)
_QUIET_GAIN = 4.0  # filter gain (alpha per unit of colour) above which the guide is smoothed against noise
_HOLE_HESITANCY = 0.2  # share of a background-coloured patch where the model must hesitate for it to be a hole
_OPAQUE = 0.98  # edge colour is pulled in from product pixels at least this opaque
_UNMIX_FROM, _UNMIX_FULL = 0.3, 0.8  # alpha where unmixing starts to be trusted, and where it is trusted alone


@dataclasses.dataclass
class RefinedEdges:
    """The refined mask and the product's estimated own colour, both at the working image's size."""

    mask: np.ndarray  # uint8 HxW, 0 clear .. 255 opaque
    colour: np.ndarray  # uint8 HxWx3: the photo, with the old background unmixed out of semi-transparent pixels


def refine_edges(rgb: np.ndarray, mask: np.ndarray) -> RefinedEdges:
    """Snap the model's soft mask (uint8) to the photo's edges (uint8 HxWx3) and decontaminate the edge colours."""
    height, width = mask.shape
    long_side = max(height, width)
    scale = max(1, round(long_side / _REFINE_SCALE_DIVISOR))
    radius = max(2, round(long_side / _REFINE_RADIUS_DIVISOR))
    # Only the region round the product can change: margin for the filter window and the background estimate.
    box = Image.fromarray(mask).point(lambda v: 255 if v > ALPHA_FLOOR else 0).getbbox()
    if box is None:
        return RefinedEdges(mask.copy(), rgb.copy())
    margin = 3 * radius
    x0, y0 = max(0, box[0] - margin), max(0, box[1] - margin)
    x1, y1 = min(width, box[2] + margin), min(height, box[3] + margin)
    refined, colour = mask.copy(), rgb.copy()
    refined[y0:y1, x0:x1], (ys, xs, colours) = _refine_crop(rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1], scale, radius)
    colour[ys + y0, xs + x0] = colours
    return RefinedEdges(refined, colour)


def _refine_crop(
    rgb: np.ndarray, coarse: np.ndarray, scale: int, radius: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The refined mask (uint8) of a crop, and the rows, columns and new colours of its semi-transparent pixels."""
    height, width = coarse.shape
    small_size = (max(1, round(width / scale)), max(1, round(height / scale)))
    small = np.asarray(Image.fromarray(rgb).resize(small_size, Image.Resampling.BOX), np.float32)
    p = np.asarray(Image.fromarray(coarse).resize(small_size, Image.Resampling.BOX), np.float32) / 255
    target, background, separable = _corrected_mask(small, p)

    # The fast guided filter (He & Sun 2015): local linear coefficients at the small size, applied at full size.
    a, b = _guided_coefficients(small / 255, target, max(1, round(radius / scale)), _REFINE_EPS)
    # Where product and background look alike (white on white) the photo's edges are mostly noise and texture:
    # there the model's own contour is the better guess, only sharpened by the soft threshold below.
    trust = box_mean(separable.astype(np.float32), 1)
    gain = np.sqrt((a**2).sum(axis=2))
    b = trust * b + (1 - trust) * p
    a *= trust[..., None]
    # The soft threshold (the halo's low values go, a truly mixed pixel stays mixed) and the guide's 0-255 range
    # are folded into the coefficients at the small size: at full size only q = b + a . guide is left to do.
    stretch = 1 / (_SOFT_HIGH - _SOFT_LOW)
    b = (b - _SOFT_LOW) * (255 * stretch) + 0.5
    a *= stretch
    planes = [np.asarray(band, np.float32) for band in Image.fromarray(rgb).split()]
    # On a dark or low-contrast edge the filter's gain is high and would turn sensor noise into speckles along
    # the edge; there (and only there, a crisp edge would lose a pixel of sharpness) the guide is smoothed 3x3.
    loud_rows, loud_cols = np.nonzero(gain > _QUIET_GAIN)
    if loud_rows.size:
        blend = _resize(np.clip((gain - _QUIET_GAIN) / _QUIET_GAIN, 0, 1), (width, height), Image.Resampling.BILINEAR)
        # Only the block that holds such edges is smoothed: a 3x3 box over the whole crop would cost more than
        # the rest of the filter.
        top, bottom = max(0, (loud_rows.min() - 1) * scale), min(height, (loud_rows.max() + 2) * scale)
        left, right = max(0, (loud_cols.min() - 1) * scale), min(width, (loud_cols.max() + 2) * scale)
        weight = blend[top:bottom, left:right]
        for plane in planes:
            block = plane[top:bottom, left:right]
            block += weight * (box_mean(block, 1) - block)
    q = _resize(b, (width, height), Image.Resampling.BILINEAR)
    for c, plane in enumerate(planes):
        term = _resize(a[..., c], (width, height), Image.Resampling.BILINEAR)
        np.multiply(term, plane, out=term)
        q += term
    refined = np.take(CLEAN_LUT, np.clip(q, 0, 255).astype(np.uint8))
    return refined, _decontaminate(rgb, refined, small, background, scale)


def _corrected_mask(small: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's mask with the photo's verdict where the model hesitated, the background behind each pixel,
    and where product and background differ enough for the photo to have a say."""
    # What the background looks like behind every pixel, pulled in from where the model is sure of background,
    # and what the product looks like round about, from where it is sure of product.
    # Twice: a stem the model missed entirely sits among its "sure background" and would tint the first estimate.
    sure_background = p < _UNSURE_LOW
    if not sure_background.any():
        # The product fills the frame: nothing shows what the background looks like, so the model's mask stands
        # and edge colours are left as they are (unmixing the photo from itself changes nothing).
        return p.copy(), small.copy(), np.ones(p.shape, bool)
    background = _fill(small, sure_background.astype(np.float32), radius=2)
    distance = np.sqrt(((small - background) ** 2).sum(axis=2))
    background = _fill(small, (sure_background & (distance < _PRODUCT_DISTANCE)).astype(np.float32), radius=2)
    distance = np.sqrt(((small - background) ** 2).sum(axis=2))
    # (Pixels that look like background do not count as product here, or a filled-in hole would vouch for itself.)
    product = _fill(small, ((p > _UNSURE_HIGH) & (distance >= _BACKGROUND_DISTANCE)).astype(np.float32),
                    radius=_CONTRAST_RADIUS)
    # Where the model hesitates, the photo decides, but only where product and background differ enough to tell
    # (a white vase on a white sweep does not): background showing through a handle or between legs is clear,
    # a stem clearly unlike the background is product. A darker pixel of the background's own hue may be a
    # shadow (or a dark product's rim): the model's guess stands there.
    contrast = np.sqrt(((product - background) ** 2).sum(axis=2))
    separable = contrast > 2 * _BACKGROUND_DISTANCE
    unsure = (p > _UNSURE_LOW) & (p < _UNSURE_HIGH)
    # Where the model is sure of product, background-coloured pixels stay: a white label on a box on a white
    # sweep looks exactly like a hole, and labels are far more common than holes the model fills in with
    # full confidence.
    target = p.copy()
    backgroundlike = separable & (distance < _BACKGROUND_DISTANCE)
    target[backgroundlike & unsure] = 0
    # A handle's opening or the gap under a chair's back, though, is a patch of background colour in which the
    # model hesitated over a good part and was sure of product only in places: all of it is clear. (A label
    # is a patch where the model never hesitated.)
    patches, count = ndimage.label(backgroundlike & (p >= _UNSURE_LOW))
    if count:
        index = np.arange(1, count + 1)
        hesitant = np.asarray(ndimage.mean(unsure.astype(np.float32), patches, index))
        target[np.isin(patches, index[hesitant >= _HOLE_HESITANCY])] = 0
    productlike = separable & (distance > _PRODUCT_DISTANCE) & ~_shadow_like(small, background)
    target[productlike & unsure & (p > 0.1)] = 1
    # A stem or strap thinner than one of the model's 320 px cells can vanish from its mask altogether: what
    # clearly is not background and hangs together with the product is product.
    parts, _ = ndimage.label(productlike | (p >= 0.5))
    attached = np.unique(parts[p >= 0.5])
    target[productlike & (p < 0.5) & np.isin(parts, attached[attached > 0])] = 1
    return target, background, separable


def _decontaminate(
    rgb: np.ndarray, mask: np.ndarray, small: np.ndarray, background: np.ndarray, scale: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The product's own colour in semi-transparent pixels: the old background unmixed, or nearby product colour."""
    ys, xs = np.nonzero((mask > 0) & (mask < 255))
    if ys.size == 0:
        return ys, xs, rgb[ys, xs]
    # The estimates live at the filter's small size; each soft pixel reads its cell there. Only the few
    # edge pixels are touched at full size.
    cell_y = np.minimum(ys // scale, small.shape[0] - 1)
    cell_x = np.minimum(xs // scale, small.shape[1] - 1)
    a = mask[ys, xs][:, None].astype(np.float32) / 255
    seen = rgb[ys, xs].astype(np.float32)
    opaque = np.asarray(Image.fromarray(mask).resize((small.shape[1], small.shape[0]), Image.Resampling.BOX))
    full_cells = (opaque >= round(255 * _OPAQUE)).astype(np.float32)
    # (A product with no opaque pixel at all, a glass say, has no colour to pull in: its own stays.)
    product = _fill(small, full_cells)[cell_y, cell_x] if full_cells.any() else seen
    # I = aF + (1-a)B solved for F is exact when B is right but noisy at low alpha; there the colour of the
    # nearest opaque product pixels is the safer guess.
    unmixed = np.clip((seen - (1 - a) * background[cell_y, cell_x]) / np.maximum(a, 1e-3), 0, 255)
    trust = np.clip((a - _UNMIX_FROM) / (_UNMIX_FULL - _UNMIX_FROM), 0, 1)
    return ys, xs, np.clip(trust * unmixed + (1 - trust) * product + 0.5, 0, 255).astype(np.uint8)


def _shadow_like(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels darker than the background behind them with the same colour direction, as a shadow is."""
    lum_i = image.sum(axis=2) + 1e-3
    lum_b = background.sum(axis=2) + 1e-3
    chroma = np.abs(image / lum_i[..., None] - background / lum_b[..., None]).sum(axis=2)
    return (chroma < _SHADOW_CHROMA) & (lum_i < lum_b)


def _guided_coefficients(
    guide: np.ndarray, target: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean-filtered a (HxWx3) and b (HxW) of the colour guided filter: output = a . guide + b."""
    mean_i = np.dstack([box_mean(guide[..., c], radius) for c in range(3)])
    mean_p = box_mean(target, radius)
    cov_ip = np.dstack([box_mean(guide[..., c] * target, radius) for c in range(3)]) - mean_i * mean_p[..., None]
    var = {}
    for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
        covariance = box_mean(guide[..., i] * guide[..., j], radius) - mean_i[..., i] * mean_i[..., j]
        var[i, j] = covariance + eps if i == j else covariance
    rr, rg, rb, gg, gb, bb = var[0, 0], var[0, 1], var[0, 2], var[1, 1], var[1, 2], var[2, 2]
    # The 3x3 covariance inverted per pixel by cofactors: vectorised, no per-pixel Python.
    inv_rr, inv_rg, inv_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    inv_gg, inv_gb, inv_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * inv_rr + rg * inv_rg + rb * inv_rb
    x, y, z = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    a = np.dstack([inv_rr * x + inv_rg * y + inv_rb * z,
                   inv_rg * x + inv_gg * y + inv_gb * z,
                   inv_rb * x + inv_gb * y + inv_bb * z]) / det[..., None]
    b = mean_p - (a * mean_i).sum(axis=2)
    return np.dstack([box_mean(a[..., c], radius) for c in range(3)]), box_mean(b, radius)


def _fill(image: np.ndarray, weight: np.ndarray, radius: int = 1) -> np.ndarray:
    """Every pixel's colour averaged from the weighted pixels nearby, reaching further where none are near."""
    den = box_mean(weight, radius)
    out = np.dstack([box_mean(image[..., c] * weight, radius) for c in range(3)]) / np.maximum(den, 1e-6)[..., None]
    missing = den <= 1e-3
    height, width = weight.shape
    if missing.any() and min(height, width) >= 8 and weight.any():
        # Push-pull: the same at a quarter of the size, where a box of the same radius reaches four times as far.
        size = (max(1, width // 4), max(1, height // 4))
        small_weight = _resize(weight, size, Image.Resampling.BOX)
        small = np.dstack([_resize(image[..., c] * weight, size, Image.Resampling.BOX) for c in range(3)])
        small = _fill(small / np.maximum(small_weight, 1e-6)[..., None], small_weight, radius)
        for c in range(3):
            out[..., c][missing] = _resize(small[..., c], (width, height), Image.Resampling.BILINEAR)[missing]
    return out


def box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """The mean over a (2 radius + 1) square window, edges repeated."""
    return ndimage.uniform_filter(values, size=2 * radius + 1, mode="nearest")


def _resize(values: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    if values.shape[1] == size[0] and values.shape[0] == size[1]:
        return values.astype(np.float32, copy=True)
    return np.array(Image.fromarray(values.astype(np.float32), "F").resize(size, resample))
