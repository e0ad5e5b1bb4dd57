"""The fidelity check (imaging/fidelity.py): an exact product passes, a changed one is held with its figure."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from catalog_service.imaging import fidelity, placement
from catalog_service.imaging.fidelity import Fidelity, measure

SIZE = (768, 768)

# Sharma, Wu & Dalal (2005), Table 1: (L1, a1, b1), (L2, a2, b2), CIEDE2000.
SHARMA_PAIRS = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
]


def jar(size: tuple[int, int] = (500, 700)) -> Image.Image:
    """A blue jar with a white label of dark text-like marks and a gold lid, on transparent."""
    width, height = size
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0.12 * height, width - 1, height - 1), radius=width // 8, fill=(40, 80, 170, 255))
    draw.rectangle((0.1 * width, 0, 0.9 * width, 0.14 * height), fill=(200, 160, 60, 255))
    draw.rectangle((0.1 * width, 0.4 * height, 0.9 * width, 0.75 * height), fill=(250, 250, 245, 255))
    for row in range(4):
        for col in range(6):
            x, y = (0.15 + 0.12 * col) * width, (0.44 + 0.07 * row) * height
            draw.rectangle((x, y, x + 0.08 * width, y + 0.035 * height), fill=(30, 30, 30, 255))
    return image


def room(size: tuple[int, int] = SIZE) -> Image.Image:
    y = np.linspace(0.0, 1.0, size[1])[:, None, None]
    x = np.linspace(0.0, 1.0, size[0])[None, :, None]
    rgb = np.asarray((190.0, 180.0, 165.0)) * (0.8 + 0.3 * y) + 15.0 * np.cos(x * 17.0)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def pasted(cutout: Image.Image, box: placement.Box, scene: Image.Image | None = None) -> Image.Image:
    """The product pasted unchanged into the room at its box."""
    out = (scene or room()).copy()
    product = placement.resize_into(placement.trim(cutout), box)
    out.paste(product, box[:2], product)
    return out


def test_ciede2000_matches_sharmas_published_pairs():
    """Our CIEDE2000 gives the published differences to four decimals."""
    first = np.asarray([pair[0] for pair in SHARMA_PAIRS])
    second = np.asarray([pair[1] for pair in SHARMA_PAIRS])
    published = np.asarray([pair[2] for pair in SHARMA_PAIRS])
    assert np.allclose(fidelity.ciede2000(first, second), published, atol=1e-4)
    assert np.allclose(fidelity.ciede2000(second, first), published, atol=1e-4)


def test_srgb_to_lab_of_white_and_red():
    """sRGB white is L*100 a*0 b*0 under D65; pure red is the textbook (53.24, 80.09, 67.20)."""
    lab = fidelity.srgb_to_lab(np.asarray([[255, 255, 255], [255, 0, 0]]))
    assert np.allclose(lab[0], (100.0, 0.0, 0.0), atol=1e-3)
    assert np.allclose(lab[1], (53.24, 80.09, 67.20), atol=0.01)


def test_an_exact_paste_passes():
    """The product pasted unchanged measures as the cutout, even after JPEG encoding."""
    cutout = jar()
    _, box = placement.place(cutout, SIZE)
    scene = pasted(cutout, box)
    exact = measure(scene, cutout, box)
    assert exact.delta_e < 1 and exact.ssim > 0.98
    assert exact.passed() and exact.reason() is None
    buffer = io.BytesIO()
    scene.save(buffer, "JPEG", quality=85)
    assert measure(Image.open(buffer), cutout, box).passed()


def test_a_recoloured_product_is_held_with_its_colour_difference():
    """A product whose blue turned teal fails, and the reason names the colour difference."""
    cutout = jar()
    _, box = placement.place(cutout, SIZE)
    r, g, b, a = cutout.split()
    teal = Image.merge("RGBA", (r, b, g, a))
    figures = measure(pasted(teal, box), cutout, box)
    assert figures.delta_e > fidelity.DELTA_E_LIMIT
    assert not figures.passed()
    reason = figures.reason()
    assert reason is not None and reason.startswith("the product changed: colour difference ")
    assert f"{figures.delta_e:.1f}" in reason


def test_a_slightly_darker_product_is_held_too():
    """A 15% darker product (the model relit it) crosses the colour limit."""
    cutout = jar()
    _, box = placement.place(cutout, SIZE)
    darker = Image.eval(cutout.convert("RGB"), lambda v: round(v * 0.85))
    darker.putalpha(cutout.getchannel("A"))
    assert measure(pasted(darker, box), cutout, box).delta_e > fidelity.DELTA_E_LIMIT


@pytest.mark.parametrize("shift", [(6, 0), (0, -6), (5, 5)])
def test_a_moved_product_is_held_with_its_structural_similarity(shift):
    """The same product drawn a few pixels (about 1.5% of its width) off its place fails on similarity."""
    cutout = jar()
    _, box = placement.place(cutout, SIZE)
    moved = (box[0] + shift[0], box[1] + shift[1], box[2] + shift[0], box[3] + shift[1])
    figures = measure(pasted(cutout, moved), cutout, box)
    assert figures.ssim < fidelity.SSIM_LIMIT
    reason = figures.reason()
    assert reason is not None and f"structural similarity {figures.ssim:.2f}" in reason


def test_a_warped_product_is_held():
    """A label bent sideways by a few pixels (the model's redraw) fails the check."""
    cutout = jar()
    canvas, box = placement.place(cutout, SIZE)
    rgba = np.asarray(canvas)
    rows, cols = np.mgrid[0 : rgba.shape[0], 0 : rgba.shape[1]]
    sway = np.rint(5 * np.sin((rows - box[1]) / (box[3] - box[1]) * 4 * np.pi)).astype(int)
    warped = Image.fromarray(np.ascontiguousarray(rgba[rows, np.clip(cols + sway, 0, rgba.shape[1] - 1)]))
    scene = room()
    scene.paste(warped, (0, 0), warped)
    figures = measure(scene, cutout, box)
    assert not figures.passed()
    assert figures.ssim < fidelity.SSIM_LIMIT


def test_only_the_product_region_counts():
    """Whatever the model did to the room outside the product's alpha, an exact product still passes."""
    cutout = jar()
    _, box = placement.place(cutout, SIZE)
    other_room = Image.new("RGB", SIZE, (20, 120, 40))
    first = measure(pasted(cutout, box), cutout, box)
    second = measure(pasted(cutout, box, scene=other_room), cutout, box)
    assert second.passed()
    assert abs(first.delta_e - second.delta_e) < 0.5


def test_a_box_partly_outside_the_frame_measures_the_visible_part():
    """A product placed half out of the frame is compared where it shows; wholly outside is an error."""
    cutout = jar()
    box = (-150, 300, 200, 790)
    figures = measure(pasted(cutout, box), cutout, box)
    assert figures.passed()
    with pytest.raises(ValueError, match="none of the product"):
        measure(room(), cutout, (SIZE[0] + 10, 0, SIZE[0] + 100, 100))
    with pytest.raises(ValueError, match="empty"):
        measure(room(), cutout, (10, 10, 10, 50))


def test_figures_as_stored_on_the_asset():
    """as_dict() rounds the figures and says whether they passed."""
    assert Fidelity(delta_e=9.3412, ssim=0.712345).as_dict() == {"delta_e": 9.34, "ssim": 0.7123, "passed": False}
    assert Fidelity(delta_e=0.4, ssim=0.99).as_dict()["passed"] is True
    assert Fidelity(delta_e=9.34, ssim=0.99).reason() == "the product changed: colour difference 9.3 (limit 4)"


def test_measuring_a_2048_px_scene_is_fast():
    """The check runs on every scene: at 2048 px it reads a reduced copy of the box, well within a quarter second."""
    cutout = jar((1400, 1960))
    size = (2048, 2048)
    _, box = placement.place(cutout, size)
    scene = pasted(cutout, box, scene=room(size))
    measure(scene, cutout, box)  # warm up numpy and scipy
    started = time.perf_counter()
    figures = measure(scene, cutout, box)
    elapsed = time.perf_counter() - started
    assert figures.passed()
    assert elapsed < 0.25  # a few tens of ms when the machine is quiet; full-size work would take seconds
