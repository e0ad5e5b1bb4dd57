"""The offline scene provider: presets, JPEG results, determinism and refusals."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from catalog_service.imaging.encode import encode
from catalog_service.scenes import ASPECTS, DEFAULT_SCENES, builtin_presets, dimensions
from catalog_service.scenes.base import ProductInfo, ScenePreset, SceneRefused, SceneRequest
from catalog_service.scenes.compositor import BUILTIN_PRESETS, STYLES, CompositorProvider, scene_seed

PRESETS = {preset.name: preset for preset in BUILTIN_PRESETS}


@pytest.fixture
def cutout_png() -> bytes:
    """A red rounded bottle with a see-through hole, as the RGBA PNG the cutout stage produces."""
    image = Image.new("RGBA", (300, 600), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 150, 299, 599), radius=60, fill=(200, 30, 30, 255))
    draw.rounded_rectangle((105, 0, 194, 200), radius=20, fill=(200, 30, 30, 255))
    draw.ellipse((115, 480, 185, 550), fill=(0, 0, 0, 0))
    return encode(image, "png")


@pytest.fixture
def reference_jpeg() -> bytes:
    """A merchant's reference photo: a teal wall over a darker counter."""
    image = Image.new("RGB", (1200, 800), (40, 140, 150))
    ImageDraw.Draw(image).rectangle((0, 520, 1199, 799), fill=(90, 70, 60))
    return encode(image, "jpeg")


@pytest.fixture
def provider() -> CompositorProvider:
    return CompositorProvider()


def request_for(cutout: bytes, preset: ScenePreset, references: tuple[bytes, ...] = ()) -> SceneRequest:
    return SceneRequest(cutout_png=cutout, preset=preset, product=ProductInfo(title="Hot sauce"), references=references)


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.convert("RGB")


def test_builtin_presets_cover_every_style():
    """The built-in presets have unique names, human prompts, a square 2048 px frame (the default shop's), and cover
    all compositor styles."""
    assert set(PRESETS) >= {"studio", "marble-counter", "wooden-table", "brand-gradient", "reference"}
    assert len(PRESETS) == len(BUILTIN_PRESETS)
    assert {preset.style for preset in BUILTIN_PRESETS} == {"studio", "surface", "gradient", "reference"}
    assert PRESETS["marble-counter"].surface == "marble"
    assert PRESETS["wooden-table"].surface == "wood"
    for preset in BUILTIN_PRESETS:
        assert (preset.width, preset.height) == (2048, 2048)
        assert len(preset.prompt.split()) >= 8
        assert preset.product_lock == "exact"


def test_the_default_scenes_are_the_ones_that_look_photographed():
    """A new shop gets the studio sweep, the brand gradient and its own backdrop photos; the drawn marble and wood
    surfaces stay available by name but are not defaults."""
    assert DEFAULT_SCENES == ("studio", "brand-gradient", "reference")
    assert {PRESETS[name].style for name in DEFAULT_SCENES} == {"studio", "gradient", "reference"}
    assert {"marble-counter", "wooden-table"} <= set(builtin_presets("compositor"))
    assert not {"marble-counter", "wooden-table"} & set(DEFAULT_SCENES)


@pytest.mark.parametrize("name", PRESETS)
def test_each_builtin_preset_gives_a_free_jpeg(provider, cutout_png, reference_jpeg, name):
    """Every built-in preset returns a JPEG of the preset's size, at no cost, labelled as the compositor's."""
    result = provider.generate(request_for(cutout_png, PRESETS[name], (reference_jpeg,)))
    image = decode(result.data)
    assert image.size == (result.width, result.height) == (2048, 2048)
    assert result.content_type == "image/jpeg"
    assert (result.provider, result.model, result.cost_usd, result.preset) == ("compositor", "compositor-v1", 0, name)
    assert result.source_type == ""  # no generative model drew any of it
    # The bottle's red shows in the middle of the frame, horizontally.
    column = np.asarray(image, dtype=np.int32)[:, 1024]
    red = (column[:, 0] > 130) & (column[:, 0] > column[:, 1] + 80) & (column[:, 0] > column[:, 2] + 80)
    assert red.sum() > 200


@pytest.mark.parametrize("name", PRESETS)
def test_same_request_gives_identical_bytes(provider, cutout_png, reference_jpeg, name):
    """Two runs of one request produce byte-identical JPEGs."""
    request = request_for(cutout_png, PRESETS[name], (reference_jpeg,))
    assert provider.generate(request).data == provider.generate(request).data


def test_presets_give_different_images(provider, cutout_png, reference_jpeg):
    """Each built-in preset draws a different scene of the same product."""
    images = {
        name: np.asarray(decode(provider.generate(request_for(cutout_png, preset, (reference_jpeg,))).data), float)
        for name, preset in PRESETS.items()
    }
    names = list(images)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert np.abs(images[first] - images[second]).mean() > 5, (first, second)


def test_preset_size_and_brand_colour_are_used(provider, cutout_png):
    """A preset's own size and brand colour shape the scene."""
    preset = dataclasses.replace(PRESETS["brand-gradient"], width=640, height=800, brand_color="#1e8449")
    result = provider.generate(request_for(cutout_png, preset))
    image = decode(result.data)
    assert image.size == (640, 800) and (result.width, result.height) == (640, 800)
    r, g, b = image.getpixel((10, 10))
    assert g > r + 10 and g > b


def red_mask(image: Image.Image) -> np.ndarray:
    """Where the red bottle shows in a scene."""
    pixels = np.asarray(image, dtype=np.int32)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return (red > 130) & (red > green + 80) & (red > blue + 80)


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("style", STYLES)
def test_every_style_draws_exactly_the_size_of_every_aspect(provider, cutout_png, reference_jpeg, aspect, style):
    """At each aspect (a long side of 1000 px, so the short side rounds), every style draws exactly width x height,
    and the placement it reports is inside the frame and holds the product."""
    width, height = dimensions(aspect, 1000)
    preset = ScenePreset(name=f"{style}-{aspect}", style=style, width=width, height=height)
    result = provider.generate(request_for(cutout_png, preset, (reference_jpeg,)))
    image = decode(result.data)
    assert image.size == (result.width, result.height) == (width, height)
    assert result.placement is not None
    left, top, right, bottom = result.placement
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    # The product is where the compositor says it put it: it fills most of the box, and nothing of it shows
    # beside or above the box (below it, a surface may reflect it).
    red = red_mask(image)
    assert red[top:bottom, left:right].mean() > 0.6
    above_the_base = red[:bottom]
    assert above_the_base.sum() - red[top:bottom, left:right].sum() < 0.01 * above_the_base.sum()


def test_the_short_side_is_rounded_to_whole_pixels():
    """4:5, 3:4, 16:9 and 9:16 at the default long side give whole-pixel sizes, the long side exact."""
    assert dimensions("1:1", 2048) == (2048, 2048)
    assert dimensions("4:5", 2048) == (1638, 2048)  # 1638.4
    assert dimensions("3:4", 2048) == (1536, 2048)
    assert dimensions("16:9", 2048) == (2048, 1152)
    assert dimensions("9:16", 1000) == (563, 1000)  # 562.5 rounds half up
    with pytest.raises(ValueError, match="4:5"):
        dimensions("4x5", 2048)


def test_seed_depends_on_cutout_and_preset_name(cutout_png):
    """The seed is stable for the same inputs and changes with the cutout or the preset name."""
    assert scene_seed(cutout_png, "marble-counter") == scene_seed(cutout_png, "marble-counter")
    assert scene_seed(cutout_png, "marble-counter") != scene_seed(cutout_png, "wooden-table")
    assert scene_seed(cutout_png, "marble-counter") != scene_seed(cutout_png + b"\0", "marble-counter")
    assert 0 <= scene_seed(cutout_png, "studio") < 2**63


def test_reference_choice_is_stable_and_uses_the_given_photos(provider, cutout_png, reference_jpeg):
    """With several references the pick is the same on every run, and always one of the merchant's photos."""
    other = encode(Image.new("RGB", (900, 600), (200, 180, 40)), "jpeg")
    request = request_for(cutout_png, PRESETS["reference"], (reference_jpeg, other))
    first = decode(provider.generate(request).data)
    assert provider.generate(request).data == provider.generate(request).data
    # The photo's light is nudged toward the product's, so its colours move a little; the two photos stay far apart.
    corner = np.asarray(first.getpixel((5, 5)), dtype=float)
    assert min(np.abs(corner - (40, 140, 150)).max(), np.abs(corner - (200, 180, 40)).max()) < 24


def test_reference_preset_without_references_is_refused(provider, cutout_png):
    """The reference style with no reference photos asks the merchant to add one in settings."""
    with pytest.raises(SceneRefused, match="add a reference image in settings") as caught:
        provider.generate(request_for(cutout_png, PRESETS["reference"]))
    assert caught.value.reason == "no_reference"
    assert not caught.value.retryable


def test_transparent_cutout_is_refused(provider):
    """A fully transparent cutout is refused with a message saying there is no product."""
    empty = encode(Image.new("RGBA", (200, 300), (0, 0, 0, 0)), "png")
    with pytest.raises(SceneRefused, match="fully transparent") as caught:
        provider.generate(request_for(empty, PRESETS["studio"]))
    assert caught.value.reason == "empty_cutout"


@pytest.mark.parametrize(
    ("change", "reason", "message"),
    [
        ({"style": "watercolour"}, "unknown_style", "studio, surface, gradient, reference"),
        ({"style": "surface", "surface": "granite"}, "invalid_preset", "marble or wood"),
        ({"style": "gradient", "brand_color": "not-a-colour"}, "invalid_preset", "brand colour"),
        ({"width": 20000}, "invalid_preset", "64-4096"),
        ({"height": 10}, "invalid_preset", "64-4096"),
    ],
)
def test_invalid_preset_is_refused(provider, cutout_png, change, reason, message):
    """Presets the compositor cannot draw are refused before any drawing, naming what to fix."""
    preset = dataclasses.replace(PRESETS["studio"], **change)
    with pytest.raises(SceneRefused, match=message) as caught:
        provider.generate(request_for(cutout_png, preset))
    assert caught.value.reason == reason


@pytest.mark.parametrize("which", ["cutout", "reference"])
def test_undecodable_images_are_refused(provider, cutout_png, which):
    """Bytes that are not an image, as the cutout or as the reference, become a permanent refusal."""
    junk = b"this is not an image at all"
    cutout, references = (junk, ()) if which == "cutout" else (cutout_png, (junk,))
    preset = PRESETS["studio" if which == "cutout" else "reference"]
    with pytest.raises(SceneRefused, match=f"The {which}") as caught:
        provider.generate(request_for(cutout, preset, references))
    assert caught.value.reason == "bad_image"
