"""Local scene compositor: a product cutout placed on a drawn backdrop or into a merchant's reference photo.

Pure functions: an RGBA cutout (product on transparent) and a target size in, an RGB image of exactly that
size out. Gradients and textures are drawn at reduced resolution with numpy and upscaled; shadows are blurred
at reduced size. The only randomness comes from a `seed` argument, so equal inputs give equal pixels.

Every scene is built the same way: backdrop, then `_place` (scale and position the product by a `Layout`),
then the shared effects (`_reflection`, `contact_shadow` or `_drop_shadow`), then the product on top. The
reference scene goes through placement.py's `recomposite`, the same light match and matched shadow a generated
scene gets. `product_box` says where each style puts the product, for the fidelity check.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageChops, ImageColor, ImageFilter

from catalog_service.imaging.placement import (
    ALPHA_VISIBLE,
    Box,
    EmptyCutout,
    Layout,
    Size,
    contact_shadow,
    fit,
    recomposite,
    resize_into,
    shade,
    trim,
    visible_size,
)

__all__ = [
    "ALPHA_VISIBLE",
    "BRAND_COLOR",
    "GRADIENT_LAYOUT",
    "MATERIALS",
    "REFERENCE_LAYOUT",
    "STUDIO_BACKDROP",
    "STUDIO_LAYOUT",
    "SURFACE_LAYOUT",
    "Box",
    "EmptyCutout",
    "Layout",
    "Size",
    "cover",
    "gradient",
    "product_box",
    "reference_scene",
    "studio",
    "surface",
    "trim",
]

RGB = tuple[int, int, int]

STUDIO_BACKDROP: RGB = (242, 242, 240)
BRAND_COLOR = "#3b6ea5"

_GRADIENT_SCALE = 8
"""Smooth backdrops (sweeps, vignettes, brand gradients) are drawn at 1/8 of the output size."""

_TEXTURE_SCALE = 2
"""Surface textures (marble veins, wood grain) are drawn at 1/2 of the output size."""

_SURFACE_EDGE = 0.56
"""Where the tabletop meets the wall in `surface` scenes, as a fraction of the height."""

STUDIO_LAYOUT = Layout(max_height=0.62, max_width=0.56, base_y=0.82)
SURFACE_LAYOUT = Layout(max_height=0.58, max_width=0.50, base_y=0.80)
GRADIENT_LAYOUT = Layout(max_height=0.68, max_width=0.58, center_y=0.48)
REFERENCE_LAYOUT = Layout(max_height=0.46, max_width=0.40, base_y=0.84)

_LAYOUTS = {
    "studio": STUDIO_LAYOUT,
    "surface": SURFACE_LAYOUT,
    "gradient": GRADIENT_LAYOUT,
    "reference": REFERENCE_LAYOUT,
}
"""Each compositor style's layout: `product_box` and the style itself read the same one."""


@dataclasses.dataclass(frozen=True)
class _Finish:
    """How a tabletop material looks around the product: the wall behind it and how glossy it is."""

    wall: RGB
    reflection_opacity: float  # 0-1, right at the contact line
    reflection_depth: float  # how far down the reflection fades out, as a fraction of the product's height
    reflection_blur: float  # Gaussian radius, as a fraction of the frame's height


_FINISHES = {
    "marble": _Finish(wall=(226, 223, 218), reflection_opacity=0.24, reflection_depth=0.4, reflection_blur=0.004),
    "wood": _Finish(wall=(230, 224, 214), reflection_opacity=0.14, reflection_depth=0.25, reflection_blur=0.012),
}
MATERIALS = tuple(_FINISHES)


# --- scenes -----------------------------------------------------------------------------------------------


def studio(cutout: Image.Image, size: Size, *, backdrop: RGB = STUDIO_BACKDROP) -> Image.Image:
    """The product standing on a seamless studio sweep (wall curving into floor), with a contact shadow."""
    product = trim(cutout)
    canvas = _studio_backdrop(size, backdrop)
    placed, box = _place(product, size, STUDIO_LAYOUT)
    contact_shadow(canvas, placed, box, opacity=0.5)
    return _paste(canvas, placed, box)


def surface(cutout: Image.Image, size: Size, *, material: str = "marble", seed: int) -> Image.Image:
    """The product standing on a drawn tabletop (marble or wood) in front of a plain wall, reflected in it.

    `seed` draws the texture (veins, grain, plank tones): the same seed gives the same table.
    """
    if material not in _FINISHES:
        raise ValueError(f"unknown surface material {material!r} (one of {', '.join(MATERIALS)})")
    finish = _FINISHES[material]
    product = trim(cutout)
    canvas = _surface_backdrop(size, material, np.random.default_rng(seed))
    placed, box = _place(product, size, SURFACE_LAYOUT)
    _reflection(
        canvas,
        placed,
        box,
        opacity=finish.reflection_opacity,
        depth=finish.reflection_depth,
        blur=finish.reflection_blur * size[1],
    )
    contact_shadow(canvas, placed, box, opacity=0.55)
    return _paste(canvas, placed, box)


def gradient(cutout: Image.Image, size: Size, *, color: str = BRAND_COLOR) -> Image.Image:
    """The product centred on a radial gradient of lighter and darker tones of a brand colour, drop-shadowed."""
    base = ImageColor.getrgb(color)[:3]
    product = trim(cutout)
    canvas = _radial_backdrop(size, base)
    placed, box = _place(product, size, GRADIENT_LAYOUT)
    _drop_shadow(canvas, placed, box, offset=(0.012 * size[1], 0.024 * size[1]), blur=0.022 * size[1], opacity=0.4)
    return _paste(canvas, placed, box)


def reference_scene(cutout: Image.Image, reference: Image.Image, size: Size) -> Image.Image:
    """The product standing in the lower part of a merchant's photo, with a shadow matched to the photo.

    The product keeps its own pixels; the photo's light is nudged toward the product's (`recomposite`), as
    for a generated scene. There is no model redraw here, so no ghost to soften.
    """
    box = product_box(cutout, size, "reference")
    return recomposite(cover(reference, size), cutout, box, ghosts=False)


# --- public helpers ---------------------------------------------------------------------------------------


def product_box(cutout: Image.Image, size: Size, style: str) -> Box:
    """The box (left, top, right, bottom) the scene style `style` resizes the trimmed product into."""
    if style not in _LAYOUTS:
        raise ValueError(f"unknown scene style {style!r} (one of {', '.join(_LAYOUTS)})")
    return fit(visible_size(cutout), size, _LAYOUTS[style])


def cover(image: Image.Image, size: Size) -> Image.Image:
    """`image` as RGB, scaled to cover `size` and centre-cropped to it."""
    width, height = size
    src_w, src_h = image.size
    scale = max(width / src_w, height / src_h)
    crop_w, crop_h = min(src_w, width / scale), min(src_h, height / scale)  # min(): float rounding
    left, top = (src_w - crop_w) / 2, (src_h - crop_h) / 2
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return rgb.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h), reducing_gap=2.0)


# --- placement and shared effects -------------------------------------------------------------------------


def _place(product: Image.Image, size: Size, layout: Layout) -> tuple[Image.Image, Box]:
    """The product scaled to fit the layout, and the box (left, top, right, bottom) it occupies in the frame."""
    box = fit(product.size, size, layout)
    return resize_into(product, box), box


def _paste(canvas: Image.Image, product: Image.Image, box: Box) -> Image.Image:
    """`canvas` with the RGBA product drawn over it at `box`."""
    canvas.paste(product, box[:2], product)
    return canvas


def _drop_shadow(
    canvas: Image.Image, product: Image.Image, box: Box, *, offset: tuple[float, float], blur: float, opacity: float
) -> None:
    """The product's silhouette, offset and blurred, as a shadow behind it."""
    shade(canvas, product.getchannel("A"), (box[0] + offset[0], box[1] + offset[1]), blur=blur, opacity=opacity)


def _reflection(
    canvas: Image.Image, product: Image.Image, box: Box, *, opacity: float, depth: float, blur: float
) -> None:
    """A mirrored copy of the product's lower part below its base, fading out over `depth` of its height."""
    left, _, _, base = box
    width, height = product.size
    rows = max(1, round(height * depth))
    mirrored = product.transpose(Image.Transpose.FLIP_TOP_BOTTOM).crop((0, 0, width, rows))
    fade = (np.linspace(1.0, 0.0, rows) ** 2) * (255 * opacity)
    fade_mask = Image.fromarray(np.ascontiguousarray(np.broadcast_to(fade[:, None], (rows, width)).astype(np.uint8)))
    mirrored.putalpha(ImageChops.multiply(mirrored.getchannel("A"), fade_mask))
    if blur >= 0.5:
        mirrored = mirrored.convert("RGBa").filter(ImageFilter.GaussianBlur(blur)).convert("RGBA")
    canvas.paste(mirrored, (left, base), mirrored)


# --- backdrops --------------------------------------------------------------------------------------------


def _studio_backdrop(size: Size, color: RGB) -> Image.Image:
    """A seamless sweep: a wall darkening slightly upward, curving into a flat floor, gently vignetted."""
    x, y = _grid(size, _GRADIENT_SCALE)
    bend = _smoothstep((y - 0.46) / 0.3)  # 0 on the wall, 1 on the floor
    wall = 0.93 + 0.07 * np.clip(y / 0.6, 0.0, 1.0)
    floor = 1.0 - 0.05 * np.clip((y - 0.76) / 0.24, 0.0, 1.0)
    shade = (wall * (1.0 - bend) + floor * bend) * _vignette(x, y, 0.1)
    return _upscale(shade[..., None] * np.asarray(color, dtype=np.float64), size)


def _radial_backdrop(size: Size, color: RGB) -> Image.Image:
    """A radial gradient from a lighter tone of `color` in the middle to a darker tone at the corners."""
    x, y = _grid(size, _GRADIENT_SCALE)
    aspect = size[0] / size[1]
    distance = np.sqrt(((x - 0.5) * aspect) ** 2 + (y - 0.45) ** 2) / math.hypot(0.5 * aspect, 0.55)
    t = np.clip(distance, 0.0, 1.0) ** 1.3
    base = np.asarray(color, dtype=np.float64)
    light = base + (255.0 - base) * 0.3
    dark = base * 0.55
    return _upscale(light * (1.0 - t[..., None]) + dark * t[..., None], size)


def _surface_backdrop(size: Size, material: str, rng: np.random.Generator) -> Image.Image:
    """A plain wall above a tabletop of `material` drawn in perspective."""
    width, height = size
    edge = round(height * _SURFACE_EDGE)
    wall_color = np.asarray(_FINISHES[material].wall, dtype=np.float64)
    x, y = _grid((width, edge), _GRADIENT_SCALE)
    frame_y = y * _SURFACE_EDGE
    # Darker toward the ceiling, and a soft occlusion where the wall meets the table.
    shade = 0.94 + 0.06 * y - 0.1 * np.exp(-(1.0 - y) * _SURFACE_EDGE / 0.025)
    wall = _upscale(shade[..., None] * _vignette(x, frame_y, 0.12)[..., None] * wall_color, (width, edge))

    x, y = _grid((width, height - edge), _TEXTURE_SCALE)
    frame_y = _SURFACE_EDGE + y * (1.0 - _SURFACE_EDGE)
    depth = 1.0 / (y + 0.5)  # 2 at the back edge, 2/3 at the front: the table recedes
    u = (x - 0.5) * (width / height) * depth
    v = depth
    if material == "marble":
        texture = _marble(u, v, rng)
    else:
        # How far one output pixel reaches in u and in v (their screen gradients), against aliasing.
        pixel_v = depth**2 / (height - edge)
        pixel_u = np.hypot(depth / height, (x - 0.5) * (width / height) * pixel_v)
        texture = _wood(u, v, rng, pixel_u=pixel_u, pixel_v=pixel_v)
    light = (1.04 - 0.1 * y) * _vignette(x, frame_y, 0.12)
    table = _upscale(texture * light[..., None], (width, height - edge))

    canvas = Image.new("RGB", size)
    canvas.paste(wall, (0, 0))
    canvas.paste(table, (0, edge))
    return canvas


def _marble(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White marble: a faint cloudy tone with dark main veins and fainter secondary ones."""
    angle = rng.uniform(0.3, 1.2)
    along = u * math.cos(angle) + v * math.sin(angle)
    across = u * math.cos(angle + 1.1) + v * math.sin(angle + 1.1)
    closeness = 1.0 - np.abs(np.sin(math.pi * (along * 1.1 + 2.2 * _fbm(u * 1.3, v * 1.3, rng, octaves=5))))
    main, halo = closeness**18, closeness**3  # a sharp vein inside a soft cloud of grey
    fine = (1.0 - np.abs(np.sin(math.pi * (across * 2.6 + 3.0 * _fbm(u * 2.0, v * 2.0, rng, octaves=4))))) ** 14
    cloud = _fbm(u * 0.7, v * 0.7, rng, octaves=3)
    # Veins fade in and out along their length; thin ones fade into the distance instead of aliasing.
    main = main * np.clip(0.3 + 1.2 * cloud, 0.0, 1.0)
    fine = fine * np.clip(1.6 - 0.7 * v, 0.2, 1.0)
    base = np.asarray((236, 234, 230), dtype=np.float64)
    vein = np.asarray((128, 128, 134), dtype=np.float64)
    tone = base * (0.95 + 0.07 * cloud)[..., None]
    mix = np.clip(0.7 * main + 0.25 * fine + 0.18 * halo, 0.0, 1.0)[..., None]
    return tone * (1.0 - mix) + vein * mix


def _wood(
    u: np.ndarray, v: np.ndarray, rng: np.random.Generator, *, pixel_u: np.ndarray, pixel_v: np.ndarray
) -> np.ndarray:
    """Oiled oak planks running away from the viewer: grain along each plank, tones varying by plank, seams."""
    plank_w = 0.24
    position = u / plank_w
    plank = np.floor(position)
    index = plank.astype(np.int64) % 64
    offsets = rng.random(64)
    tones = rng.uniform(0.86, 1.08, 64)
    # Grain: fine stripes across the plank, bent by noise stretched along it, over broader tone streaks.
    warp = _fbm(u * 5.0, v * 0.5, rng, octaves=4)
    grain = (0.5 + 0.5 * np.sin(2.0 * math.pi * (u * 26.0 + 5.0 * warp + offsets[index] * 7.0))) ** 4
    # Where a grain stripe would be only a few output pixels wide it would alias: fade it to its average.
    stripe_px = 1.0 / (26.0 * pixel_u)
    fade = np.clip((stripe_px - 4.0) / 8.0, 0.0, 1.0)
    grain = grain * fade + 0.27 * (1.0 - fade)
    streak = _fbm(u * 30.0, v * 1.2, rng, octaves=3)
    light = np.asarray((198, 150, 104), dtype=np.float64)
    dark = np.asarray((138, 92, 56), dtype=np.float64)
    t = np.clip(0.55 * grain + 0.7 * streak - 0.2, 0.0, 1.0)[..., None]
    color = (light * (1.0 - t) + dark * t) * tones[index][..., None]
    # Seams between planks and butt joints along them, the same few output pixels wide near and far.
    seam_u, seam_v = 0.8 * _TEXTURE_SCALE * pixel_u, 0.8 * _TEXTURE_SCALE * pixel_v
    side = np.minimum(position - plank, plank + 1.0 - position) * plank_w
    along = (v + offsets[index] * 3.0) / 1.7
    joint = np.minimum(along - np.floor(along), np.ceil(along) - along) * 1.7
    gap = np.maximum(np.exp(-((side / seam_u) ** 2)), np.exp(-((joint / seam_v) ** 2)))
    return color * (1.0 - 0.55 * gap[..., None])


# --- low-resolution drawing -------------------------------------------------------------------------------


def _grid(size: Size, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (0-1 across the width and the height) of `size` drawn `scale` times smaller."""
    cols, rows = max(2, math.ceil(size[0] / scale)), max(2, math.ceil(size[1] / scale))
    x = (np.arange(cols) + 0.5) / cols
    y = (np.arange(rows) + 0.5) / rows
    return np.meshgrid(x, y)


def _upscale(pixels: np.ndarray, size: Size) -> Image.Image:
    """An RGB image of `size` from a smaller float array of shape (rows, cols, 3)."""
    small = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return small if small.size == size else small.resize(size, Image.Resampling.BICUBIC)


def _vignette(x: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """A multiplier falling from 1 near the centre of the frame to 1 - strength in the corners."""
    return 1.0 - strength * (((x - 0.5) * 1.6) ** 2 + ((y - 0.55) * 1.4) ** 2) / 1.05


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _fbm(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, *, octaves: int) -> np.ndarray:
    """Fractal value noise in [0, 1] at texture coordinates (u, v), from lattices drawn from `rng`."""
    lattice_size = 64
    total = np.zeros_like(u)
    amplitude, frequency, norm = 1.0, 1.0, 0.0
    for _ in range(octaves):
        lattice = rng.random((lattice_size, lattice_size))
        x, y = u * frequency, v * frequency
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = _smoothstep(x - x0), _smoothstep(y - y0)
        xi, yi = x0.astype(np.int64) % lattice_size, y0.astype(np.int64) % lattice_size
        xj, yj = (xi + 1) % lattice_size, (yi + 1) % lattice_size
        top = lattice[yi, xi] + (lattice[yi, xj] - lattice[yi, xi]) * fx
        bottom = lattice[yj, xi] + (lattice[yj, xj] - lattice[yj, xi]) * fx
        total += amplitude * (top + (bottom - top) * fy)
        norm += amplitude
        amplitude *= 0.5
        frequency *= 2.0
    return total / norm
