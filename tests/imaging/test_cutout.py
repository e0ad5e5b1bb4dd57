"""The cutout: real u2netp on real and synthetic photos."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from catalog_service.imaging.cutout import CutoutOptions, cut_out, encode_cutout, remove_background, white_variant
from catalog_service.imaging.errors import ImageRejected

FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures"


def synthetic_photo(size: tuple[int, int] = (900, 700), shape: str = "ellipse") -> tuple[bytes, np.ndarray]:
    """A product-like shape on a plain light background, and its exact mask."""
    width, height = size
    photo = Image.new("RGB", size, (232, 230, 226))
    mask = Image.new("L", size, 0)
    box = (int(width * 0.3), int(height * 0.2), int(width * 0.7), int(height * 0.85))
    for target, fill in ((photo, (150, 30, 40)), (mask, 255)):
        draw = ImageDraw.Draw(target)
        if shape == "ellipse":
            draw.ellipse(box, fill=fill)
        else:
            draw.rounded_rectangle(box, radius=40, fill=fill)
    # A little shading so the product is not a flat sticker.
    shade = Image.linear_gradient("L").resize(size).point(lambda v: v // 5)
    shadow = Image.composite(shade, Image.new("L", size, 0), mask)
    photo = Image.composite(Image.eval(photo, lambda v: max(0, v - 25)), photo, shadow)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=92)
    return out.getvalue(), np.asarray(mask) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("name", ["coffee.png", "rocket.jpg"])
def test_fixture_photos_have_transparent_corners_and_opaque_product(model_session, name: str) -> None:
    """On real photos the corners of the cutout are clear and its centre is solid product."""
    cutout = remove_background((FIXTURES / name).read_bytes(), model_session, CutoutOptions(padding=0.05))
    alpha = np.asarray(cutout.image.getchannel("A"))
    for corner in (alpha[:3, :3], alpha[:3, -3:], alpha[-3:, :3], alpha[-3:, -3:]):
        assert corner.max() == 0
    product = np.asarray(cutout.product.getchannel("A"))
    h, w = product.shape
    assert product[h // 2 - 2: h // 2 + 2, w // 2 - 2: w // 2 + 2].min() > 200


@pytest.mark.parametrize("shape", ["ellipse", "rounded"])
def test_synthetic_shape_mask_matches_truth(model_session, shape: str) -> None:
    """A shape with a known mask on a plain background comes out with IoU >= 0.9."""
    data, truth = synthetic_photo(shape=shape)
    cutout = remove_background(data, model_session, CutoutOptions(max_side=900))
    assert cutout.mask.size == (truth.shape[1], truth.shape[0])
    assert iou(np.asarray(cutout.mask) > 127, truth) >= 0.9


def test_cutout_is_trimmed_and_padded(model_session) -> None:
    """The cutout is the product's box plus the padding asked for, not the whole photo."""
    data, truth = synthetic_photo()
    cutout = remove_background(data, model_session, CutoutOptions(max_side=900, padding=0.1))
    ys, xs = np.nonzero(truth)
    true_w, true_h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(cutout.product.width - true_w) <= 0.05 * true_w
    assert abs(cutout.product.height - true_h) <= 0.05 * true_h
    pad = round(max(cutout.product.size) * 0.1)
    assert cutout.image.size == (cutout.product.width + 2 * pad, cutout.product.height + 2 * pad)


def test_square_option_and_max_side(model_session) -> None:
    """square=True gives a square canvas; no side exceeds max_side."""
    data, _ = synthetic_photo((1600, 1200))
    cutout = remove_background(data, model_session, CutoutOptions(max_side=512, square=True))
    assert cutout.image.width == cutout.image.height <= 512
    assert cutout.mask.size == (512, 384)  # the model's mask was computed at output size, not 1600x1200


def test_model_never_sees_more_pixels_than_the_output(model_session) -> None:
    """A 12 MP photo is decoded and masked at the output size."""
    seen: list[tuple[int, int]] = []

    class Recording:
        def predict(self, image):  # type: ignore[no-untyped-def]
            seen.append(image.size)
            return model_session.predict(image)

    big = Image.new("RGB", (4000, 3000), (240, 240, 240))
    ImageDraw.Draw(big).ellipse((1200, 600, 2800, 2600), fill=(20, 60, 160))
    out = io.BytesIO()
    big.save(out, "JPEG", quality=90)
    remove_background(out.getvalue(), Recording(), CutoutOptions(max_side=1024))
    # libjpeg decoded at 1/4 scale (1000 px, within the 5% draft slack of 1024): no 12 MP decode, no resample.
    assert seen == [(1000, 750)]


def test_white_variant_is_pure_white_and_product_fills_85_percent(model_session) -> None:
    """The marketplace image: #FFFFFF around, product's longest side at about 85% of the frame."""
    data, _ = synthetic_photo()
    cutout = remove_background(data, model_session, CutoutOptions(max_side=900))
    white = white_variant(cutout.product, CutoutOptions(max_side=900))
    pixels = np.asarray(white)
    assert white.width == white.height
    assert (pixels[:5, :, :] == 255).all() and (pixels[:, :5, :] == 255).all()
    not_white = np.nonzero((pixels < 240).any(axis=2))
    extent = max(not_white[0].max() - not_white[0].min(), not_white[1].max() - not_white[1].min()) + 1
    assert 0.8 <= extent / white.width <= 0.87


def test_encoded_cutout_round_trips_with_alpha(model_session) -> None:
    """PNG and WebP cutouts keep their transparency."""
    data, _ = synthetic_photo()
    cutout = remove_background(data, model_session, CutoutOptions(max_side=600))
    for fmt in ("png", "webp"):
        decoded = Image.open(io.BytesIO(encode_cutout(cutout, fmt)))
        assert decoded.mode == "RGBA"
        assert decoded.getchannel("A").getextrema() == (0, 255)


def test_photo_without_a_product_is_rejected(model_session) -> None:
    """A blank photo has nothing to cut out, and says so."""
    blank = Image.new("RGB", (400, 300), (128, 128, 128))
    with pytest.raises(ImageRejected, match="No product"):
        cut_out(blank, _EmptyMaskSession())


class _EmptyMaskSession:
    """Stands in for a model that finds nothing (u2netp normalises its output, so it never does)."""

    def predict(self, image):  # type: ignore[no-untyped-def]
        return [Image.new("L", image.size, 0)]


def test_bad_bytes_are_rejected_before_the_model(model_session) -> None:
    """Not-an-image bytes give ImageRejected, not a crash."""
    with pytest.raises(ImageRejected):
        remove_background(b"<html>nope</html>", model_session)


def test_small_product_white_variant_meets_the_marketplace_minimum() -> None:
    """A 300 px product still gets a 1000 px white image, product at 85% of it."""
    product = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(product).rectangle((0, 0, 299, 199), fill=(10, 120, 60, 255))
    white = white_variant(product, CutoutOptions())
    assert white.size == (1000, 1000)
    green = np.nonzero((np.asarray(white) < 200).any(axis=2))
    assert abs((green[1].max() - green[1].min() + 1) - 850) <= 2


# Edge refinement: synthetic photos whose true masks are known exactly, through the real model.

def studio_photo(
    draw: Callable[[ImageDraw.ImageDraw, int], None],
    product: tuple[int, int, int],
    background: tuple[int, int, int],
    size: tuple[int, int] = (1000, 750),
    shadow: float = 0.0,
) -> tuple[bytes, np.ndarray]:
    """JPEG bytes of a flat product drawn by `draw` (anti-aliased, at 4x then averaged), and its true alpha."""
    big = Image.new("L", (size[0] * 4, size[1] * 4), 0)
    draw(ImageDraw.Draw(big), 4)
    alpha = np.asarray(big.resize(size, Image.Resampling.BOX), np.float32)[..., None] / 255
    rng = np.random.default_rng(7)
    floor = np.full((size[1], size[0], 3), background, np.float32)
    if shadow:
        ys, xs = np.nonzero(alpha[..., 0] > 0.5)
        soft = Image.new("L", size, 0)
        cx, width, bottom = (xs.min() + xs.max()) / 2, xs.max() - xs.min(), ys.max()
        ImageDraw.Draw(soft).ellipse((cx - width * 0.55, bottom - 12, cx + width * 0.55, bottom + 22), fill=255)
        floor *= 1 - shadow * np.asarray(soft.filter(ImageFilter.GaussianBlur(14)), np.float32)[..., None] / 255
    photo = floor * (1 - alpha) + np.array(product, np.float32) * alpha + rng.normal(0, 2.5, floor.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=92)
    return out.getvalue(), alpha[..., 0]


def rounded_box(draw: ImageDraw.ImageDraw, k: int) -> None:
    draw.rounded_rectangle((330 * k, 170 * k, 690 * k, 640 * k), radius=60 * k, fill=255)


def mug_with_handle(draw: ImageDraw.ImageDraw, k: int) -> None:
    draw.ellipse((560 * k, 260 * k, 800 * k, 560 * k), fill=255)
    draw.ellipse((620 * k, 330 * k, 740 * k, 490 * k), fill=0)  # the handle's opening
    draw.rounded_rectangle((250 * k, 180 * k, 640 * k, 640 * k), radius=30 * k, fill=255)


def flower_on_stem(draw: ImageDraw.ImageDraw, k: int) -> None:
    draw.ellipse((380 * k, 90 * k, 620 * k, 300 * k), fill=255)
    draw.rectangle((497 * k, 290 * k, 503 * k, 580 * k), fill=255)  # a stem 6 px wide
    draw.rounded_rectangle((400 * k, 570 * k, 600 * k, 660 * k), radius=12 * k, fill=255)


def distance_to_edge(truth: np.ndarray) -> np.ndarray:
    """Each pixel's distance in pixels to the true edge (the 0.5 contour of the true alpha)."""
    from scipy import ndimage

    inside = truth >= 0.5
    return np.where(inside, ndimage.distance_transform_edt(inside), ndimage.distance_transform_edt(~inside))


def working_alpha(cutout) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(cutout.mask, np.float32) / 255


def test_refined_edge_has_no_halo(model_session) -> None:
    """Almost no semi-transparent pixel lies more than 2 px from the true edge; without refinement many do."""
    data, truth = studio_photo(rounded_box, (40, 90, 170), (232, 232, 228))
    far = distance_to_edge(truth) > 2
    perimeter = int((distance_to_edge(truth) <= 1).sum())
    halo = {}
    for refine in (True, False):
        alpha = working_alpha(remove_background(data, model_session, CutoutOptions(max_side=1000, refine=refine)))
        halo[refine] = int((far & (alpha > 0) & (alpha < 1)).sum()) / perimeter  # halo pixels per edge pixel
    assert halo[True] < 0.05
    assert halo[False] > 4 * halo[True]


def test_refined_edge_follows_the_true_edge(model_session) -> None:
    """Within 6 px of the true edge the refined alpha is within 0.06 of the truth on average."""
    data, truth = studio_photo(rounded_box, (40, 90, 170), (232, 232, 228))
    alpha = working_alpha(remove_background(data, model_session, CutoutOptions(max_side=1000)))
    band = distance_to_edge(truth) <= 6
    assert np.abs(alpha - truth)[band].mean() < 0.06


def test_edge_pixels_carry_the_products_colour_not_the_backgrounds(model_session) -> None:
    """On a green sweep, the soft edge of an orange product is orange: no green fringe on white or in a scene."""
    orange, green = (230, 120, 30), (40, 160, 70)
    data, truth = studio_photo(rounded_box, orange, green)
    cutout = remove_background(data, model_session, CutoutOptions(max_side=1000, padding=0))
    rgba = np.asarray(cutout.product, np.float32)
    alpha = rgba[..., 3] / 255
    edge = (alpha > 0.05) & (alpha < 0.95)
    assert edge.sum() > 100  # the anti-aliased edge is kept soft, not cut hard
    colours = rgba[..., :3][edge]
    to_product = np.abs(colours - orange).sum(axis=1)
    to_background = np.abs(colours - green).sum(axis=1)
    assert (to_product < to_background).mean() > 0.95
    assert colours[:, 1].mean() < 150  # orange's green is 120; the sweep's 160 would pull it up


def test_background_seen_through_a_handle_is_transparent(model_session) -> None:
    """The opening of a mug's handle shows the sweep behind it: it comes out clear."""
    data, truth = studio_photo(mug_with_handle, (240, 240, 236), (200, 40, 150))
    cutout = remove_background(data, model_session, CutoutOptions(max_side=1000))
    alpha = working_alpha(cutout)
    hole = (distance_to_edge(truth) > 3) & (truth < 0.5)
    hole[:, :620] = False  # only the opening itself, not the sweep around the mug
    hole[:, 740:] = False
    hole[:330] = hole[490:] = False
    assert hole.sum() > 5000
    assert (alpha[hole] == 0).mean() > 0.98
    assert iou(alpha >= 0.5, truth >= 0.5) > 0.98


def test_label_the_colour_of_the_background_is_not_a_hole(model_session) -> None:
    """A white label on a blue box on a white sweep stays opaque: only background the model doubted is cleared."""
    white = (232, 232, 228)
    data, truth = studio_photo(rounded_box, (40, 90, 170), white)
    photo = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    photo[335:466, 405:616] = white  # the label, exactly the sweep's colour
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "JPEG", quality=92)
    alpha = working_alpha(remove_background(out.getvalue(), model_session, CutoutOptions(max_side=1000)))
    assert (alpha[345:456, 415:606] == 1).mean() > 0.99
    assert iou(alpha >= 0.5, truth >= 0.5) > 0.98


def test_thin_stem_survives(model_session) -> None:
    """A 6 px stem between a flower and its pot stays opaque along its whole length."""
    data, truth = studio_photo(flower_on_stem, (60, 120, 60), (214, 227, 240))
    alpha = working_alpha(remove_background(data, model_session, CutoutOptions(max_side=1000)))
    stem = alpha[310:560, 499:502]
    assert (stem.min(axis=1) > 0.8).mean() > 0.95


def test_shadow_is_dropped_by_default_and_kept_when_asked(model_session) -> None:
    """keep_shadow puts the soft shadow under the product into the cutout; the white variant never has it."""
    data, truth = studio_photo(rounded_box, (40, 90, 170), (236, 236, 232), shadow=0.6)
    plain = remove_background(data, model_session, CutoutOptions(max_side=1000, padding=0))
    shadowed = remove_background(data, model_session, CutoutOptions(max_side=1000, padding=0, keep_shadow=True))
    # Without it the cutout ends at the product; with it the shadow reaches below the product, dark and soft.
    assert abs(plain.image.height - plain.product.height) <= 1
    assert shadowed.image.height > shadowed.product.height + 8
    below = np.asarray(shadowed.image, np.float32)[-8:]
    soft = (below[..., 3] > 20) & (below[..., 3] < 255)
    assert soft.any() and below[..., :3][soft].max() < 60
    # The product itself, and so the white variant, is the same either way.
    assert np.array_equal(np.asarray(plain.product), np.asarray(shadowed.product))
    white = np.asarray(white_variant(shadowed.product, CutoutOptions(max_side=1000)))
    rows = np.nonzero((white < 250).any(axis=(1, 2)))[0]
    assert abs(rows.min() - (white.shape[0] - 1 - rows.max())) <= 2  # centred: no shadow hanging below it


def test_no_refine_keeps_the_models_own_mask(model_session) -> None:
    """refine=False gives the model's mask as it was, its soft rim included."""
    data, truth = studio_photo(rounded_box, (40, 90, 170), (232, 232, 228))
    plain = working_alpha(remove_background(data, model_session, CutoutOptions(max_side=1000, refine=False)))
    refined = working_alpha(remove_background(data, model_session, CutoutOptions(max_side=1000)))
    soft = lambda alpha: int(((alpha > 0) & (alpha < 1)).sum())  # noqa: E731
    assert soft(plain) > 3 * soft(refined)


def test_loading_the_model_compiles_nothing(tmp_path, model_session) -> None:  # type: ignore[no-untyped-def]
    """rembg's import leaves pymatting's numba functions uncompiled, so a fresh install's first cutout never waits."""
    cache = tmp_path / "numba"
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(cache)  # empty: numba would compile and write here
    probe = (
        "import importlib, sys\n"
        "from catalog_service.imaging.cutout import get_session\n"
        "get_session('u2netp', sys.argv[1])\n"
        "boxfilter = importlib.import_module('pymatting.util.boxfilter')\n"
        "print(type(boxfilter.boxfilter_rows_valid).__name__)\n"
    )
    model_dir = FIXTURES.parents[1] / "var" / "models"
    result = subprocess.run([sys.executable, "-c", probe, str(model_dir)], env=env, cwd=FIXTURES.parents[1],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "function"
    assert not cache.exists() or not any(cache.iterdir())
