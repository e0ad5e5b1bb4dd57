"""Scenes drawn by imaging/compose.py: size, placement, shadow, reflection, the exact product, determinism."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from catalog_service.imaging import compose, placement
from catalog_service.imaging.fidelity import measure

SIZE = (768, 512)
RED = (200, 30, 30)
CUTOUT_SIZE = (300, 600)
HOLE_CENTER = (150, 515)  # in cutout pixels


@pytest.fixture
def bottle() -> Image.Image:
    """A red rounded bottle with a cream label and a see-through hole, on transparent."""
    image = Image.new("RGBA", CUTOUT_SIZE, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 150, 299, 599), radius=60, fill=(*RED, 255))
    draw.rounded_rectangle((105, 0, 194, 200), radius=20, fill=(*RED, 255))
    draw.rounded_rectangle((40, 340, 259, 440), radius=16, fill=(245, 240, 225, 255))
    draw.ellipse((115, 480, 185, 550), fill=(0, 0, 0, 0))
    return image


def solid(color: tuple[int, int, int], size: tuple[int, int] = (640, 480)) -> Image.Image:
    return Image.new("RGB", size, color)


def blue_photo(size: tuple[int, int] = (900, 600)) -> Image.Image:
    """A strongly blue 'photo' with some texture, so colour matching has something to match."""
    rng = np.random.default_rng(3)
    y = np.linspace(0, 1, size[1])[:, None, None]
    base = np.asarray((30, 70, 190), dtype=np.float64) * (0.8 + 0.3 * y)
    noise = rng.normal(0, 12, (size[1], size[0], 1))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


SCENES = {
    "studio": lambda cut, size: compose.studio(cut, size),
    "marble": lambda cut, size: compose.surface(cut, size, material="marble", seed=11),
    "wood": lambda cut, size: compose.surface(cut, size, material="wood", seed=11),
    "gradient": lambda cut, size: compose.gradient(cut, size, color="#3b6ea5"),
    "reference": lambda cut, size: compose.reference_scene(cut, blue_photo(), size),
}
LAYOUTS = {
    "studio": compose.STUDIO_LAYOUT,
    "marble": compose.SURFACE_LAYOUT,
    "wood": compose.SURFACE_LAYOUT,
    "gradient": compose.GRADIENT_LAYOUT,
}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def red_mask(image: Image.Image) -> np.ndarray:
    """Where the image shows the bottle's red (also after a mild colour match)."""
    rgb = pixels(image)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 130) & (r > g + 90) & (r > b + 90)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the True pixels, right and bottom exclusive."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def luma(image: Image.Image, x: float, y: float, radius: int = 2) -> float:
    """Mean brightness of a small patch centred on (x, y)."""
    x, y = round(x), round(y)
    patch = pixels(image)[y - radius : y + radius + 1, x - radius : x + radius + 1]
    return float((patch @ np.asarray((0.299, 0.587, 0.114))).mean())


def redness(image: Image.Image, x: float, y: float, radius: int = 3) -> float:
    """Share of red in a small patch's colour (1/3 for a neutral grey), unaffected by plain darkening."""
    x, y = round(x), round(y)
    patch = pixels(image)[y - radius : y + radius + 1, x - radius : x + radius + 1].reshape(-1, 3).sum(axis=0)
    return float(patch[0] / patch.sum())


def hue_degrees(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb) / 255.0))[0] * 360.0


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("size", [(768, 512), (401, 603), (1536, 1024)])
def test_scene_is_rgb_of_exact_size(bottle, scene, size):
    """Every scene is an RGB image of exactly the requested size, landscape or portrait."""
    out = SCENES[scene](bottle, size)
    assert out.mode == "RGB"
    assert out.size == size


@pytest.mark.parametrize("scene", ["studio", "marble", "wood", "gradient"])
def test_product_is_placed_where_its_layout_says(bottle, scene):
    """The bottle's red fills the layout's box: centred, full height, base (or centre) where the layout puts it."""
    out = SCENES[scene](bottle, SIZE)
    layout = LAYOUTS[scene]
    width, height = SIZE
    left, top, right, bottom = bbox(red_mask(out))
    assert abs((left + right) / 2 - layout.center_x * width) <= 2
    assert abs((bottom - top) - layout.max_height * height) <= 3  # a tall bottle is height-limited
    if layout.base_y is None:
        assert abs((top + bottom) / 2 - layout.center_y * height) <= 2
    else:
        assert abs(bottom - layout.base_y * height) <= 2
    # The product's own colour at the middle of its box, and the backdrop through the hole.
    scale = (bottom - top) / CUTOUT_SIZE[1]
    assert red_mask(out)[(top + bottom) // 2, (left + right) // 2]
    hole = (round(left + HOLE_CENTER[0] * scale), round(top + HOLE_CENTER[1] * scale))
    assert not red_mask(out)[hole[1], hole[0]]


def test_wide_product_is_capped_by_width(bottle):
    """A product wider than tall is scaled to the layout's maximum width, not its maximum height."""
    wide = bottle.rotate(90, expand=True)
    out = compose.studio(wide, SIZE)
    left, top, right, bottom = bbox(red_mask(out))
    assert abs((right - left) - compose.STUDIO_LAYOUT.max_width * SIZE[0]) <= 3
    assert bottom - top < compose.STUDIO_LAYOUT.max_height * SIZE[1]


def test_studio_contact_shadow_is_darkest_at_the_base_and_fades(bottle):
    """Just under the bottle the floor is darker than the same row off to the side, and less so further down."""
    out = compose.studio(bottle, SIZE)
    width, height = SIZE
    base = round(compose.STUDIO_LAYOUT.base_y * height)
    centre = width / 2

    def darkness(below: int) -> float:
        row = base + below
        side = (luma(out, centre - 0.3 * width, row) + luma(out, centre + 0.3 * width, row)) / 2
        return side - luma(out, centre, row)

    near, middle, far = darkness(3), darkness(12), darkness(40)
    assert near > 40
    assert near > middle > far
    assert darkness(80) < 3  # no shadow left this far from the product


def test_reference_contact_shadow_darkens_a_plain_floor(bottle):
    """On a uniform grey photo the shadow is measured against the photo: dark at the base, gone further down."""
    out = compose.reference_scene(bottle, solid((150, 150, 150)), SIZE)
    base = round(compose.REFERENCE_LAYOUT.base_y * SIZE[1])
    centre = SIZE[0] / 2
    photo = luma(out, 20, 20)  # the photo away from the product, after its light was matched
    assert abs(photo - 150) <= 150 * 0.07  # nudged, not regraded
    assert luma(out, centre, base + 2) < photo - 30
    assert luma(out, centre, base + 2) < luma(out, centre, base + 10) < luma(out, centre, base + 25)
    assert abs(luma(out, centre, base + 70) - photo) <= 1


def test_reference_shadow_is_lighter_on_a_high_key_photo(bottle):
    """A bright, high-key backdrop gets a lighter contact shadow than a dim one, relative to each photo."""
    base = round(compose.REFERENCE_LAYOUT.base_y * SIZE[1])

    def darkening(level: int) -> float:
        out = compose.reference_scene(bottle, solid((level, level, level)), SIZE)
        return 1.0 - luma(out, SIZE[0] / 2, base + 2) / luma(out, 20, 20)

    assert darkening(240) < darkening(60) - 0.05


def test_marble_reflection_tints_the_surface_below_the_product(bottle):
    """Below the base the marble turns toward the bottle's red (darkening alone would not), fading with depth."""
    out = compose.surface(bottle, SIZE, material="marble", seed=5)
    width, height = SIZE
    base = round(compose.SURFACE_LAYOUT.base_y * height)
    product_h = round(compose.SURFACE_LAYOUT.max_height * height)
    left, _, right, _ = bbox(red_mask(out))
    body = left + 0.2 * (right - left)  # below the bottle's body, clear of its hole's mirror image

    def tint(below: int) -> float:
        row = base + below
        return redness(out, body, row) - redness(out, 0.1 * width, row)

    assert tint(8) > 0.03
    assert tint(8) > tint(round(0.1 * product_h)) > tint(round(0.2 * product_h)) > 0


def test_wood_reflection_is_fainter_than_marble(bottle):
    """Oiled wood reflects the bottle more faintly than polished marble does."""
    width, height = SIZE
    row = round(compose.SURFACE_LAYOUT.base_y * height) + 8

    def tint(material: str) -> float:
        out = compose.surface(bottle, SIZE, material=material, seed=5)
        return redness(out, width / 2, row) - redness(out, width / 2 - 0.35 * width, row)

    assert 0 < tint("wood") < tint("marble")


def test_surface_seed_and_material_change_the_table_only(bottle):
    """The seed changes the drawn texture, the material changes the table, and the wall stays plain."""
    first = pixels(compose.surface(bottle, SIZE, material="marble", seed=1))
    second = pixels(compose.surface(bottle, SIZE, material="marble", seed=2))
    wood = pixels(compose.surface(bottle, SIZE, material="wood", seed=1))
    table = slice(round(0.9 * SIZE[1]), SIZE[1])
    corner = (slice(0, 40), slice(0, 40))
    assert np.abs(first[table] - second[table]).mean() > 1
    assert np.abs(first[table] - wood[table]).mean() > 20
    assert np.array_equal(first[corner], second[corner])
    assert first[corner].std(axis=(0, 1)).max() < 2  # plain wall: no texture


def test_unknown_material_is_refused(bottle):
    """Only marble and wood are drawn; anything else is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="marble, wood"):
        compose.surface(bottle, SIZE, material="granite", seed=1)


def test_gradient_is_made_of_tones_of_the_brand_colour(bottle):
    """The backdrop keeps the brand colour's hue, lighter in the middle than in the corners."""
    out = compose.gradient(bottle, SIZE, color="#2a9d5c")
    brand_hue = hue_degrees(np.asarray((0x2A, 0x9D, 0x5C)))
    corner = pixels(out)[5, 5]
    middle = pixels(out)[round(0.1 * SIZE[1]), SIZE[0] // 2]
    assert abs(hue_degrees(corner) - brand_hue) < 8
    assert abs(hue_degrees(middle) - brand_hue) < 8
    assert luma(out, SIZE[0] / 2, 0.1 * SIZE[1]) > luma(out, 5, 5) + 30


def test_gradient_drop_shadow_falls_down_and_right(bottle):
    """The drop shadow darkens the backdrop to the right of the product more than the mirrored spot on its left."""
    out = compose.gradient(bottle, SIZE)
    left, top, right, bottom = bbox(red_mask(out))
    row = (top + bottom) / 2
    gap = 0.01 * SIZE[1]
    assert luma(out, right + gap, row) < luma(out, left - gap, row) - 10
    assert luma(out, (left + right) / 2, bottom + gap) < luma(out, (left + right) / 2, top - gap) - 10


def test_reference_scene_stands_the_product_low_and_plausibly_sized(bottle):
    """In a photo the product's base is in the lower part of the frame and its height is plausible."""
    out = compose.reference_scene(bottle, blue_photo(), (1536, 1024))
    left, top, right, bottom = bbox(red_mask(out))
    height = 1024
    assert 0.75 * height <= bottom <= 0.88 * height
    assert 0.35 * height <= bottom - top <= 0.55 * height
    assert right - left <= 0.45 * 1536


def test_reference_scene_keeps_the_products_own_pixels(bottle):
    """In the merchant's photo the product is exactly the cutout: the photo's light moves, the product's does not."""
    photo = blue_photo()
    out = compose.reference_scene(bottle, photo, SIZE)
    box = compose.product_box(bottle, SIZE, "reference")
    fidelity = measure(out, bottle, box)
    assert fidelity.delta_e < 1 and fidelity.ssim > 0.98
    product = placement.resize_into(placement.trim(bottle), box)
    opaque = pixels(product.getchannel("A")) == 255
    assert np.array_equal(pixels(out.crop(box))[opaque], pixels(product.convert("RGB"))[opaque])


@pytest.mark.parametrize(
    "style, scene", [("studio", "studio"), ("surface", "marble"), ("gradient", "gradient"), ("reference", "reference")]
)
@pytest.mark.parametrize("size", [(768, 512), (401, 603)])
def test_product_box_is_where_the_style_draws_the_product(bottle, style, scene, size):
    """product_box() reports the box each style resized the product into: its red fills exactly that box."""
    out = SCENES[scene](bottle, size)
    box = compose.product_box(bottle, size, style)
    assert all(abs(a - b) <= 1 for a, b in zip(bbox(red_mask(out)), box, strict=True))
    assert measure(out, bottle, box).passed()


def test_product_box_refuses_an_unknown_style(bottle):
    """Only the compositor's styles have a placement."""
    with pytest.raises(ValueError, match="studio, surface, gradient, reference"):
        compose.product_box(bottle, SIZE, "watercolour")


def test_cover_fills_the_size_from_the_centre():
    """cover() scales to fill the size and crops the overflow evenly from both sides."""
    photo = Image.new("RGB", (400, 100), (0, 0, 255))
    ImageDraw.Draw(photo).rectangle((175, 0, 224, 99), fill=(255, 0, 0))
    out = compose.cover(photo, (200, 200))  # the middle 100x100 of the photo, doubled
    assert out.size == (200, 200)
    assert tuple(pixels(out)[100, 100]) == (255, 0, 0)
    assert tuple(pixels(out)[100, 10]) == (0, 0, 255)
    assert tuple(pixels(out)[100, 190]) == (0, 0, 255)


@pytest.mark.parametrize("scene", SCENES)
def test_scenes_are_deterministic(bottle, scene):
    """The same inputs draw byte-identical images."""
    assert SCENES[scene](bottle, SIZE).tobytes() == SCENES[scene](bottle, SIZE).tobytes()


def test_scenes_differ_from_each_other(bottle):
    """Each scene style draws a different picture of the same product."""
    drawn = {name: pixels(render(bottle, SIZE)) for name, render in SCENES.items()}
    names = list(drawn)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert np.abs(drawn[first] - drawn[second]).mean() > 5, (first, second)


@pytest.mark.parametrize("scene", SCENES)
def test_fully_transparent_cutout_is_refused(scene):
    """A cutout with nothing visible raises EmptyCutout rather than drawing an empty scene."""
    with pytest.raises(compose.EmptyCutout):
        SCENES[scene](Image.new("RGBA", (50, 80), (255, 0, 0, 0)), SIZE)


def test_trim_ignores_faint_halo(bottle):
    """trim() crops to the visible product, ignoring near-transparent fringe pixels around it."""
    padded = Image.new("RGBA", (500, 800), (255, 255, 255, compose.ALPHA_VISIBLE - 1))
    padded.paste(bottle, (100, 100))
    assert compose.trim(padded).size == CUTOUT_SIZE


def test_opaque_rgb_input_is_placed_as_a_rectangle():
    """An RGB 'cutout' without alpha is treated as fully opaque and still placed."""
    out = compose.studio(Image.new("RGB", (200, 400), RED), SIZE)
    left, top, right, bottom = bbox(red_mask(out))
    assert abs((bottom - top) - compose.STUDIO_LAYOUT.max_height * SIZE[1]) <= 2
