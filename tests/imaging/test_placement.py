"""Product-exact scenes (imaging/placement.py): place the product, mask it for the model, lay it back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from catalog_service.imaging import placement
from catalog_service.imaging.fidelity import measure
from catalog_service.imaging.placement import Layout

SIZE = (640, 640)
RED = (200, 30, 30)
LABEL = (245, 240, 225)
INK = (20, 20, 60)


@pytest.fixture
def bottle() -> Image.Image:
    """A red bottle with a striped cream label, on a transparent margin (as rembg leaves it)."""
    image = Image.new("RGBA", (400, 800), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((50, 200, 349, 799), radius=60, fill=(*RED, 255))
    draw.rounded_rectangle((155, 40, 244, 260), radius=20, fill=(*RED, 255))
    draw.rounded_rectangle((90, 460, 309, 580), radius=16, fill=(*LABEL, 255))
    for i in range(5):
        draw.rectangle((110 + 40 * i, 480, 130 + 40 * i, 560), fill=(*INK, 255))
    return image


def backdrop(size: tuple[int, int] = SIZE, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Image.Image:
    """A textured warm-grey room the 'model' drew, optionally tinted by its light."""
    y = np.linspace(0.0, 1.0, size[1])[:, None, None]
    x = np.linspace(0.0, 1.0, size[0])[None, :, None]
    rgb = np.asarray((180.0, 172.0, 160.0)) * (0.85 + 0.25 * y) + 14.0 * np.sin(x * 25.0)
    return Image.fromarray(np.clip(rgb * np.asarray(tint), 0, 255).astype(np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def model_redraw(bottle: Image.Image, box: placement.Box, how: str, scene: Image.Image | None = None) -> Image.Image:
    """What an image model might hand back: the room with its own, altered drawing of the product."""
    scene = (scene or backdrop()).copy()
    product = placement.resize_into(placement.trim(bottle), box)
    origin = box[:2]
    if how == "recoloured":
        r, g, b, a = product.split()
        product = Image.merge("RGBA", (g, r, b, a))
    elif how == "moved":
        origin = (box[0] + 9, box[1] - 6)
    elif how == "warped":
        rgba = np.asarray(product)
        rows, cols = np.mgrid[0 : rgba.shape[0], 0 : rgba.shape[1]]
        sway = np.rint(6 * np.sin(rows / rgba.shape[0] * 6 * np.pi)).astype(int)
        product = Image.fromarray(np.ascontiguousarray(rgba[rows, np.clip(cols + sway, 0, rgba.shape[1] - 1)]))
    elif how == "enlarged":
        grown = (round(product.width * 1.1), round(product.height * 1.1))
        product = placement.trim(bottle).resize(grown, Image.Resampling.LANCZOS)
        origin = (box[0] - (grown[0] - (box[2] - box[0])) // 2, box[3] - grown[1])
    scene.paste(product, origin, product)
    return scene


def test_fit_stands_the_product_on_the_layout_base():
    """A tall product is height-limited, centred, its bottom on the base line; a wide one is width-limited."""
    layout = Layout(max_height=0.5, max_width=0.5, base_y=0.8)
    left, top, right, bottom = placement.fit((100, 200), (1000, 600), layout)
    assert (bottom - top, bottom) == (300, 480)
    assert (left + right) / 2 == 500
    left, top, right, bottom = placement.fit((400, 100), (1000, 600), layout)
    assert right - left == 500 and bottom - top == 125


def test_place_puts_the_trimmed_product_into_its_box_on_transparent(bottle):
    """The canvas is transparent outside the box and holds exactly the resized, trimmed product inside it."""
    canvas, box = placement.place(bottle, SIZE)
    assert canvas.mode == "RGBA" and canvas.size == SIZE
    assert box == placement.fit(placement.trim(bottle).size, SIZE, placement.SCENE_LAYOUT)
    alpha = pixels(canvas.getchannel("A"))
    outside = np.ones(alpha.shape, dtype=bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    assert alpha[outside].max() == 0
    expected = placement.resize_into(placement.trim(bottle), box)
    assert canvas.crop(box).tobytes() == expected.tobytes()
    # Bottom-centred with room around: the product's base on the layout's base line.
    assert box[3] == round(placement.SCENE_LAYOUT.base_y * SIZE[1])
    assert abs((box[0] + box[2]) / 2 - SIZE[0] / 2) <= 1


def test_edit_mask_keeps_the_product_and_a_margin_and_frees_the_rest(bottle):
    """Opaque over the product and `grow` px around it (keep), fully transparent beyond (the model may draw)."""
    canvas, box = placement.place(bottle, SIZE)
    mask = placement.edit_mask(canvas, grow=6)
    assert mask.mode == "RGBA" and mask.size == SIZE
    keep = pixels(mask.getchannel("A"))
    assert set(np.unique(keep)) == {0.0, 255.0}
    product = pixels(canvas.getchannel("A")) >= placement.ALPHA_VISIBLE
    assert keep[product].min() == 255
    # The body's left edge at mid-height: kept up to 6 px outside it, free from 7 px on.
    row = (box[1] + box[3]) // 2
    edge = int(np.flatnonzero(product[row])[0])
    assert keep[row, edge - 6] == 255
    assert keep[row, edge - 7] == 0
    assert keep[5, 5] == 0


def test_edit_mask_of_an_empty_canvas_lets_the_model_draw_everything():
    """Nothing placed, nothing kept."""
    mask = placement.edit_mask(Image.new("RGBA", (64, 48), (0, 0, 0, 0)))
    assert mask.size == (64, 48)
    assert mask.getchannel("A").getextrema() == (0, 0)


@pytest.mark.parametrize("how", ["recoloured", "moved", "warped", "enlarged"])
def test_recomposite_brings_back_the_exact_product_whatever_the_model_did(bottle, how):
    """The model altered the product; after re-compositing, the product region matches the cutout."""
    _, box = placement.place(bottle, SIZE)
    scene = model_redraw(bottle, box, how)
    assert not measure(scene, bottle, box).passed()  # the model's own drawing would not do
    out = placement.recomposite(scene, bottle, box)
    assert out.mode == "RGB" and out.size == SIZE
    fidelity = measure(out, bottle, box)
    assert fidelity.delta_e < 2
    assert fidelity.ssim > 0.98
    # Inside the alpha, the pixels are the cutout's own, to the level.
    product = placement.resize_into(placement.trim(bottle), box)
    opaque = pixels(product.getchannel("A")) == 255
    assert np.array_equal(pixels(out.crop(box))[opaque], pixels(product.convert("RGB"))[opaque])


def test_recomposite_softens_the_ghost_of_a_larger_redraw(bottle):
    """A redraw 10% larger leaves a red rim outside the product's alpha; re-compositing blends it into the room."""
    _, box = placement.place(bottle, SIZE)
    scene = model_redraw(bottle, box, "enlarged")
    out = placement.recomposite(scene, bottle, box, light=0, shadow=0)
    naive = scene.copy()
    product = placement.resize_into(placement.trim(bottle), box)
    naive.paste(product, box[:2], product)
    room = backdrop()
    row = (box[1] + box[3]) // 2
    body_left = box[0] + int(np.flatnonzero(pixels(product.getchannel("A"))[row - box[1]] > 0)[0])
    rim = (slice(row - 20, row + 20), slice(body_left - 5, body_left - 1))

    def off_room(image: Image.Image) -> float:
        return float(np.abs(pixels(image)[rim] - pixels(room)[rim]).mean())

    assert off_room(naive) > 40  # the rim is red
    assert off_room(out) < 0.35 * off_room(naive)


def test_recomposite_nudges_the_rooms_light_toward_the_product_not_the_product(bottle):
    """A blue-lit room moves toward the product's neutral light, a little; the product itself is unchanged."""
    _, box = placement.place(bottle, SIZE)
    blue_room = backdrop(tint=(0.85, 0.95, 1.2))
    scene = model_redraw(bottle, box, "recoloured", scene=blue_room)
    out = placement.recomposite(scene, bottle, box)
    corner = (slice(0, 60), slice(0, 60))

    def blueness(image: Image.Image) -> float:
        patch = pixels(image)[corner].reshape(-1, 3).mean(axis=0)
        return float(patch[2] / patch[0])

    assert blueness(out) < blueness(scene) - 0.02  # warmer than the model drew it
    assert blueness(out) > 0.85 * blueness(scene)  # but only nudged
    assert measure(out, bottle, box).delta_e < 2


def test_recomposite_draws_a_contact_shadow_only_when_asked(bottle):
    """Under the base the floor is darker with the scene's own shadow, and untouched with shadow=0."""
    _, box = placement.place(bottle, SIZE)
    room = Image.new("RGB", SIZE, (200, 200, 200))
    scene = model_redraw(bottle, box, "recoloured", scene=room)
    under = (slice(box[3] + 1, box[3] + 4), slice((box[0] + box[2]) // 2 - 10, (box[0] + box[2]) // 2 + 10))
    shadowed = placement.recomposite(scene, bottle, box, light=0)
    plain = placement.recomposite(scene, bottle, box, light=0, shadow=0)
    assert pixels(plain)[under].mean() == 200
    assert pixels(shadowed)[under].mean() < 200 - 30


def test_shadow_style_follows_the_backdrop():
    """A bright high-key floor gets a lighter shadow than a dim one; a flat floor a softer one than a busy one."""
    box = (200, 100, 300, 300)
    bright = placement.shadow_style(Image.new("RGB", (500, 400), (235, 235, 235)), box)
    dim = placement.shadow_style(Image.new("RGB", (500, 400), (50, 45, 40)), box)
    assert bright.opacity < dim.opacity
    stripes = Image.new("RGB", (500, 400), (40, 40, 40))
    draw = ImageDraw.Draw(stripes)
    for x in range(0, 500, 8):
        draw.rectangle((x, 0, x + 3, 399), fill=(220, 220, 220))
    assert placement.shadow_style(stripes, box).softness < bright.softness


def test_fully_transparent_cutout_is_refused():
    """Nothing visible to place: EmptyCutout, from placing and from re-compositing alike."""
    empty = Image.new("RGBA", (50, 80), (255, 0, 0, 0))
    with pytest.raises(placement.EmptyCutout):
        placement.place(empty, SIZE)
    with pytest.raises(placement.EmptyCutout):
        placement.recomposite(backdrop(), empty, (10, 10, 60, 90))
