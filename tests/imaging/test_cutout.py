"""The cutout: real u2netp on real and synthetic photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

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
    photo = Image.composite(Image.eval(photo, lambda v: max(0, v - 25)), photo, Image.composite(shade, Image.new("L", size, 0), mask))
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
