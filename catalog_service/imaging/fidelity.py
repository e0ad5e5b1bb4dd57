"""The fidelity check: is the product in a finished scene still the merchant's product?

`measure` compares the product region of the scene (at the recorded placement box) with the trimmed cutout
resized into that box: the mean CIEDE2000 colour difference and the structural similarity of luminance, both
inside the cutout's alpha. A scene below either threshold is held for review with `Fidelity.reason()`.

Both figures are taken at a reduced resolution (the box's longer side at most `MEASURE_SIDE` pixels): a redrawn
label or a recoloured body shows there as clearly as at full size, and the check stays cheap on every scene.
What the expected region looks like is the cutout composited over the scene's own pixels by its alpha, so an
exact paste compares equal at the soft edge too, and a product the model moved shows where it left its place.

References: CIEDE2000 as in G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 Color-Difference Formula:
Implementation Notes, Supplementary Test Data, and Mathematical Observations", Color Res. Appl. 30 (2005);
sRGB to CIELAB with the D65 white of IEC 61966-2-1; SSIM as in Z. Wang et al., "Image Quality Assessment: From
Error Visibility to Structural Similarity", IEEE TIP 13 (2004): an 11x11 Gaussian window of sigma 1.5,
K1 = 0.01, K2 = 0.03.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image
from scipy import ndimage

from catalog_service.imaging.placement import Box, resize_into, trim, visible_box

DELTA_E_LIMIT = 4.0
"""Mean CIEDE2000 difference above which the product's colour has changed: plainly visible side by side."""

SSIM_LIMIT = 0.93
"""Structural similarity below which the product has been moved, warped or redrawn."""

MEASURE_SIDE = 256
"""The product region is compared at most this many pixels on its longer side."""

_MIN_WEIGHT = 0.02
"""Pixels whose alpha (0-1) is below this take no part in the figures."""

_SAME_LEVEL = 1.0
"""Pixels whose channels all differ by less than this (0-255) are not run through CIEDE2000."""

_LUMA = np.asarray((0.299, 0.587, 0.114))
_D65_WHITE = np.asarray((0.95047, 1.0, 1.08883))
_SRGB_TO_XYZ = np.asarray(
    (
        (0.4124564, 0.3575761, 0.1804375),
        (0.2126729, 0.7151522, 0.0721750),
        (0.0193339, 0.1191920, 0.9503041),
    )
)


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """How closely a scene's product matches the cutout: mean CIEDE2000 difference and luminance SSIM."""

    delta_e: float
    ssim: float

    def passed(self, *, delta_e_limit: float = DELTA_E_LIMIT, ssim_limit: float = SSIM_LIMIT) -> bool:
        """True when both figures are within their limits."""
        return self.delta_e <= delta_e_limit and self.ssim >= ssim_limit

    def reason(self, *, delta_e_limit: float = DELTA_E_LIMIT, ssim_limit: float = SSIM_LIMIT) -> str | None:
        """Why the scene waits for review, naming the figures that failed; None when it passes."""
        failed = []
        if self.delta_e > delta_e_limit:
            failed.append(f"colour difference {self.delta_e:.1f} (limit {delta_e_limit:g})")
        if self.ssim < ssim_limit:
            failed.append(f"structural similarity {self.ssim:.2f} (limit {ssim_limit:g}): moved, warped or redrawn")
        return "the product changed: " + "; ".join(failed) if failed else None

    def as_dict(self) -> dict[str, float | bool]:
        """The figures as stored on an asset: {"delta_e", "ssim", "passed"}."""
        return {"delta_e": round(self.delta_e, 2), "ssim": round(self.ssim, 4), "passed": self.passed()}


def measure(scene: Image.Image, cutout: Image.Image, box: Box) -> Fidelity:
    """Compare the scene's region at `box` with the trimmed cutout resized into `box`, inside its alpha.

    ValueError when the box is empty or lies wholly outside the scene; EmptyCutout when the cutout shows nothing.
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if width < 1 or height < 1:
        raise ValueError(f"the placement box {box} is empty")
    scale = min(1.0, MEASURE_SIDE / max(width, height))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    if small == (width, height):
        product = resize_into(trim(cutout), box)
    else:
        # Straight from the visible part to the reduced size: the picture `resize_into` and a box reduction would
        # give, to within a level, without copying the cutout or resampling the whole box first.
        rgba = cutout if cutout.mode == "RGBA" else cutout.convert("RGBA")
        product = rgba.resize(small, Image.Resampling.LANCZOS, box=visible_box(rgba), reducing_gap=3.0)
    expected_rgba = np.asarray(product, dtype=np.float64)
    region = scene.crop(box)  # zero-padded where the box leaves the frame; those pixels are left out below
    region = region.convert("RGB") if region.mode != "RGB" else region
    if region.size != small:
        region = region.resize(small, Image.Resampling.BOX)
    actual = np.asarray(region, dtype=np.float64)
    weight = expected_rgba[..., 3] / 255.0 * _inside_scene(box, scene.size, small)
    if weight.max() < _MIN_WEIGHT:
        raise ValueError(f"the placement box {box} shows none of the product inside the {scene.size} scene")
    # The cutout over the scene's own pixels: equal to the scene wherever the product was pasted unchanged.
    alpha = weight[..., None]
    expected = expected_rgba[..., :3] * alpha + actual * (1.0 - alpha)
    inside = weight >= _MIN_WEIGHT
    # Pixels within a level of each other differ by well under one CIEDE2000 unit: counted as equal, not computed.
    differs = inside & (np.abs(expected - actual).max(axis=2) >= _SAME_LEVEL)
    differences = ciede2000(srgb_to_lab(expected[differs]), srgb_to_lab(actual[differs]))
    delta_e = float(np.sum(differences * weight[differs]) / np.sum(weight[inside]))
    similarity = _ssim_map(expected @ _LUMA, actual @ _LUMA)
    ssim = float(np.average(similarity[inside], weights=weight[inside]))
    return Fidelity(delta_e=delta_e, ssim=ssim)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values 0-255, along the last axis."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack((116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])), axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) between CIELAB arrays, along the last axis."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    delta_l = l2 - l1
    delta_c = c2p - c1p
    chroma_product = c1p * c2p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_product == 0, 0.0, dh)
    delta_h = 2 * np.sqrt(chroma_product) * np.sin(np.radians(dh) / 2)
    l_bar = (l1 + l2) / 2
    c_bar_p = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(
        chroma_product == 0,
        h_sum,
        np.where(np.abs(h1p - h2p) <= 180, h_sum / 2, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)),
    )
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    delta_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(c_bar_p**7 / (c_bar_p**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -np.sin(np.radians(2 * delta_theta)) * r_c
    return np.asarray(
        np.sqrt(
            (delta_l / s_l) ** 2 + (delta_c / s_c) ** 2 + (delta_h / s_h) ** 2 + r_t * (delta_c / s_c) * (delta_h / s_h)
        )
    )


def _ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two luminance arrays (0-255), Gaussian-windowed as in Wang et al."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(values: np.ndarray) -> np.ndarray:
        return np.asarray(ndimage.gaussian_filter(values, 1.5, truncate=3.5, mode="reflect"))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def _inside_scene(box: Box, scene_size: tuple[int, int], small: tuple[int, int]) -> np.ndarray:
    """1 where the reduced box's pixel lies inside the scene, 0 where the box leaves the frame."""
    left, top, right, bottom = box
    sx, sy = small[0] / (right - left), small[1] / (bottom - top)
    inside = np.zeros((small[1], small[0]))
    x0, y0 = math.ceil(max(0, -left) * sx), math.ceil(max(0, -top) * sy)
    x1 = math.floor(min(right - left, scene_size[0] - left) * sx)
    y1 = math.floor(min(bottom - top, scene_size[1] - top) * sy)
    inside[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 1.0
    return inside
