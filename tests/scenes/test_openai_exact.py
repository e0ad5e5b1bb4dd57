"""Product-exact scenes on the GPT path, through the real openai client against the fake OpenAI server.

The fake answers an edit like a model: a new scene around the first image, and (when told to tamper) a product
recoloured, moved or warped. With `product_lock="exact"` the product's own pixels are laid back, so the final
scene's product region matches the cutout whatever the model did; with `product_lock="model"` the model's product
stays, and the fidelity check sees the change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import typing

import numpy as np
import openai
import pytest
from PIL import Image, ImageDraw

from catalog_service.imaging.encode import encode
from catalog_service.imaging.fidelity import DELTA_E_LIMIT, SSIM_LIMIT, measure
from catalog_service.scenes.base import (
    COMPOSITE_SOURCE,
    GENERATED_SOURCE,
    ProductInfo,
    ScenePreset,
    SceneRefused,
    SceneRequest,
)
from catalog_service.scenes.openai_images import (
    FLEX_MIN_PIXELS,
    FLEX_STABLE_PIXELS,
    MODELS,
    OUTPUT_QUALITY,
    RETIRED,
    STANDARD_SIZES,
    OpenAIProvider,
    check_size,
    parse_size,
    request_size,
)
from fakes.openai_server import FakeOpenAI

API_KEY = "sk-test-0123456789abcdef"
PRODUCT = ProductInfo(title="Smoky Chipotle Hot Sauce", product_type="hot sauce", vendor="Casa Fuego")
SQUARE = ScenePreset(name="kitchen-counter", style="prompt", prompt="On a stone kitchen counter.",
                     width=1024, height=1024, quality="medium")
ASPECTS = {
    "1:1": (1024, 1024),
    "4:5": (864, 1080),
    "16:9": (1280, 720),
    "9:16": (720, 1280),
}


def bottle() -> Image.Image:
    """A product with detail a model could get wrong: a bottle with coloured bands, a label and a logo, on
    transparent, with a margin the cutout's trim removes."""
    image = Image.new("RGBA", (360, 640), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((60, 120, 300, 620), radius=40, fill=(150, 30, 25, 255))
    draw.rectangle((150, 30, 210, 130), fill=(40, 40, 40, 255))
    for number, top in enumerate(range(200, 560, 40)):
        draw.rectangle((60, top, 300, top + 14), fill=(230, 190 - 12 * number, 40 + 18 * number, 255))
    draw.rectangle((90, 300, 270, 460), fill=(245, 240, 225, 255))
    draw.ellipse((130, 320, 230, 420), fill=(20, 90, 160, 255))
    draw.line((100, 440, 260, 440), fill=(10, 10, 10, 255), width=6)
    return image


CUTOUT_IMAGE = bottle()
CUTOUT = encode(CUTOUT_IMAGE, "png")


def preset(aspect: str = "1:1", **changes: typing.Any) -> ScenePreset:
    width, height = ASPECTS[aspect]
    return dataclasses.replace(SQUARE, width=width, height=height, **changes)


def request(**kwargs: typing.Any) -> SceneRequest:
    values: dict[str, typing.Any] = {"cutout_png": CUTOUT, "preset": SQUARE, "product": PRODUCT,
                                     "shop_key": hashlib.sha256(b"shop-7").hexdigest()[:32]}
    values.update(kwargs)
    return SceneRequest(**values)


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def make_provider():
    """Providers on real openai clients pointed at a fake; the clients are closed at the end of the test."""
    clients: list[openai.OpenAI] = []

    def make(server: FakeOpenAI, **kwargs: typing.Any) -> OpenAIProvider:
        client = openai.OpenAI(api_key=API_KEY, base_url=server.url + "/v1", max_retries=0, timeout=20)
        clients.append(client)
        return OpenAIProvider(client=client, **kwargs)

    yield make
    for client in clients:
        client.close()


# exact: the product comes back as it is, whatever the model did


@pytest.mark.parametrize("tamper", [None, "recolour", "move", "warp"])
@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_exact_scene_keeps_the_product_at_the_preset_size(fake, make_provider, aspect, tamper):
    """Whatever the model does to the product, the exact scene is the preset's size and its product region
    matches the cutout; the size asked of the model is one it accepts, in the output's aspect."""
    if tamper:
        fake.tamper(tamper)
    result = make_provider(fake).generate(request(preset=preset(aspect)))

    width, height = ASPECTS[aspect]
    scene = decoded(result.data)
    assert (result.width, result.height) == (width, height) == scene.size
    assert (result.source_type, result.content_type, scene.format) == (COMPOSITE_SOURCE, "image/jpeg", "JPEG")

    (sent,) = fake.requests
    assert sent.status == 200
    asked = parse_size(sent.fields["size"])
    assert asked is not None and result.size == sent.fields["size"]
    assert check_size("gpt-image-2", *asked) is None
    assert asked[0] * height == asked[1] * width  # the same aspect exactly: nothing to crop, nothing stretched

    assert result.placement is not None
    left, top, right, bottom = result.placement
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    fidelity = measure(scene, CUTOUT_IMAGE, result.placement)
    assert fidelity.delta_e < 2, fidelity
    assert fidelity.ssim >= SSIM_LIMIT, fidelity


def test_the_model_really_tampered(fake, make_provider):
    """The fake's tampering is real: its raw answer, at the same placement, fails the fidelity check."""
    fake.tamper("recolour")
    provider = make_provider(fake)
    model_made = provider.generate(request(preset=preset(product_lock="model")))
    exact = provider.generate(request())  # no tamper queued any more: the model kept the product this time
    assert model_made.placement == exact.placement
    assert measure(decoded(model_made.data), CUTOUT_IMAGE, model_made.placement).delta_e > DELTA_E_LIMIT


def test_first_image_is_the_placed_product_and_the_mask_keeps_it(fake, make_provider):
    """The first image is the product placed on a transparent canvas at the request size; the mask is the same
    size, opaque over the product (keep) and transparent around it (the scene); the references follow."""
    reference = encode(Image.new("RGB", (64, 48), (40, 140, 150)), "jpeg")
    make_provider(fake).generate(request(preset=preset("16:9"), references=(reference,)))

    (sent,) = fake.requests
    assert [(part.filename, part.content_type) for part in sent.images] == [
        ("scene.png", "image/png"), ("reference-1.jpg", "image/jpeg")]
    first = decoded(sent.images[0].data)
    assert first.mode == "RGBA" and first.size == parse_size(sent.fields["size"])
    product = np.asarray(first.getchannel("A")) >= 128
    assert 0.05 < product.mean() < 0.5  # a product with room around it

    assert sent.mask is not None
    mask = decoded(sent.mask.data)
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", first.size)
    keep = np.asarray(mask.getchannel("A"))
    assert (keep[product] == 255).all()  # the product's region is opaque: the model is asked to leave it
    assert keep[0, 0] == 0 and keep[-1, -1] == 0 and (keep == 0).mean() > 0.5  # the rest may change
    assert "already standing at its final position" in sent.fields["prompt"]
    assert "references only" in sent.fields["prompt"]


def test_output_is_encoded_by_us_in_the_chosen_format(fake, make_provider):
    """WebP and PNG providers deliver WebP and PNG at the preset's size, product exact, marked as a composite."""
    for output_format, pil_format in (("webp", "WEBP"), ("png", "PNG")):
        result = make_provider(fake, output_format=output_format).generate(request(preset=preset("4:5")))
        scene = decoded(result.data)
        assert (scene.format, scene.size) == (pil_format, ASPECTS["4:5"])
        assert result.content_type == f"image/{output_format}"
        assert COMPOSITE_SOURCE.encode() in result.data  # marked in its XMP as a composite with generated media
        assert measure(scene.convert("RGB"), CUTOUT_IMAGE, result.placement).delta_e < 2


# model: the model may redraw the product, and what it drew stays


@pytest.mark.parametrize("tamper", ["recolour", "move", "warp"])
def test_model_lock_keeps_what_the_model_drew(fake, make_provider, tamper):
    """product_lock=model sends no mask and lays nothing back: a tampered product fails the fidelity check."""
    fake.tamper(tamper)
    result = make_provider(fake).generate(request(preset=preset("9:16", product_lock="model")))

    (sent,) = fake.requests
    assert sent.mask is None
    assert sent.images[0].filename == "scene.png"
    assert (result.width, result.height) == ASPECTS["9:16"]
    assert result.source_type == GENERATED_SOURCE
    assert GENERATED_SOURCE.encode() in result.data and COMPOSITE_SOURCE.encode() not in result.data
    assert result.placement is not None
    fidelity = measure(decoded(result.data), CUTOUT_IMAGE, result.placement)
    assert fidelity.delta_e > DELTA_E_LIMIT or fidelity.ssim < SSIM_LIMIT, fidelity


def test_model_lock_without_tampering_passes(fake, make_provider):
    """When the model leaves the product alone, the model-lock scene passes the check at its placement."""
    result = make_provider(fake).generate(request(preset=preset("1:1", product_lock="model")))
    fidelity = measure(decoded(result.data), CUTOUT_IMAGE, result.placement)
    assert fidelity.delta_e < DELTA_E_LIMIT and fidelity.ssim >= SSIM_LIMIT, fidelity


# options sent per model


@pytest.mark.parametrize(("output_format", "compression"), [("jpeg", str(OUTPUT_QUALITY)),
                                                            ("webp", str(OUTPUT_QUALITY)), ("png", None)])
def test_output_compression_only_for_jpeg_and_webp(fake, make_provider, output_format, compression):
    """output_compression (our encoding quality, not OpenAI's 100) goes with jpeg and webp, never with png."""
    make_provider(fake, output_format=output_format).generate(request())
    fields = fake.requests[0].fields
    assert fields["output_format"] == output_format
    assert fields.get("output_compression") == compression


@pytest.mark.parametrize("model", list(MODELS))
def test_every_current_model_gets_only_what_it_takes(fake, make_provider, model):
    """No current model is sent input_fidelity; each is asked for a size it accepts, and the fake says yes."""
    make_provider(fake).generate(request(model=model))
    (sent,) = fake.requests
    assert sent.status == 200 and sent.fields["model"] == model
    assert "input_fidelity" not in sent.fields
    assert "background" not in sent.fields


def test_xhigh_quality_only_where_the_model_makes_it(fake, make_provider):
    """gpt-image-2.5 is asked for xhigh; gpt-image-2 is refused it before any call, naming what it makes."""
    provider = make_provider(fake)
    provider.generate(request(model="gpt-image-2.5-sunburst", preset=preset(quality="xhigh")))
    assert fake.requests[0].fields["quality"] == "xhigh"
    with pytest.raises(SceneRefused, match="low, medium, high") as caught:
        provider.generate(request(model="gpt-image-2", preset=preset(quality="xhigh")))
    assert caught.value.reason == "invalid_request"
    assert fake.calls == 1


# retired models


@pytest.mark.parametrize("model", sorted(RETIRED))
def test_retired_model_is_refused_naming_the_replacement(fake, make_provider, model):
    """A shut-down model in a request is refused before any call, naming the current model to choose."""
    with pytest.raises(SceneRefused, match="shut down") as caught:
        make_provider(fake).generate(request(model=model))
    assert RETIRED[model] in str(caught.value) and RETIRED[model] in MODELS
    assert caught.value.reason == "invalid_request"
    with pytest.raises(ValueError, match=RETIRED[model]):
        make_provider(fake, model=model)
    assert fake.calls == 0


def test_model_openai_no_longer_offers_is_a_settings_refusal(fake, make_provider):
    """OpenAI's own model_not_found (a model shut down since the settings were saved) says to choose another."""
    fake.fail(404, message="The model `gpt-image-2` has been deprecated, learn more here: "
              "https://platform.openai.com/docs/deprecations", code="model_not_found")
    with pytest.raises(SceneRefused, match="Choose another model in the settings") as caught:
        make_provider(fake).generate(request())
    assert caught.value.reason == "invalid_request"
    assert "gpt-image-2.6-sunburst" in str(caught.value)


def test_the_fake_refuses_retired_models_like_the_api(fake):
    """Called directly, a shut-down model gets OpenAI's 404 model_not_found."""
    with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError, match="deprecated") as caught:
            client.images.edit(model="gpt-image-1.5", prompt="p", image=[("c.png", CUTOUT, "image/png")])
    assert caught.value.code == "model_not_found"


# gpt-image-2.6: custom sizes unconfirmed


def test_2_6_custom_size_refused_falls_back_to_a_standard_size_once(make_provider):
    """When 2.6 refuses the custom size, the scene is asked once more at the nearest standard size, brought to
    the exact output size, product exact; the next scene goes straight to the standard size."""
    with FakeOpenAI(custom_sizes_2_6=False) as server:
        provider = make_provider(server, model="gpt-image-2.6-flare")
        result = provider.generate(request(preset=preset("16:9")))
        assert [(sent.fields["size"], sent.status) for sent in server.requests] == [("1280x720", 400),
                                                                                    ("1536x1024", 200)]
        assert result.size == "1536x1024"
        scene = decoded(result.data)
        assert scene.size == ASPECTS["16:9"]
        assert measure(scene, CUTOUT_IMAGE, result.placement).delta_e < 2

        provider.generate(request(preset=preset("16:9")))
        assert [sent.fields["size"] for sent in server.requests[2:]] == ["1536x1024"]
        assert not server.errors


def test_2_6_custom_size_taken_when_offered(fake, make_provider):
    """Where 2.6 takes the custom size, one call at that size is all."""
    result = make_provider(fake, model="gpt-image-2.6-sunburst").generate(request(preset=preset("4:5")))
    assert [(sent.fields["size"], sent.status) for sent in fake.requests] == [(result.size, 200)]
    assert result.size not in STANDARD_SIZES


def test_other_models_never_retry_a_size_refusal(fake, make_provider):
    """On gpt-image-2 (custom sizes documented) a size refusal is a plain invalid request: one call."""
    fake.fail(400, message="Invalid value: '1280x720'. Supported values are ...", code="invalid_value")
    with pytest.raises(SceneRefused, match="Invalid value") as caught:
        make_provider(fake).generate(request(preset=preset("16:9")))
    assert caught.value.reason == "invalid_request"
    assert fake.calls == 1


# the request size


@pytest.mark.parametrize("output", [(1024, 1024), (1080, 1350), (1536, 2048), (1920, 1080), (1080, 1920),
                                    (4096, 4096), (4096, 2304), (512, 512), (1001, 1000), (3000, 1000)])
def test_request_size_is_one_the_model_takes_in_the_outputs_aspect(output):
    """A custom request size: multiples of 16, within the pixel limits, the output's aspect (to a pixel or two),
    about as many pixels as the output needs, within the limits."""
    width, height = request_size("gpt-image-2", *output)
    assert check_size("gpt-image-2", width, height) is None
    assert FLEX_MIN_PIXELS <= width * height <= FLEX_STABLE_PIXELS
    assert width * height <= 1.25 * max(output[0] * output[1], FLEX_MIN_PIXELS)  # one rounding step at most
    assert math.isclose(width / height, output[0] / output[1], rel_tol=0.02)


@pytest.mark.parametrize(("output", "standard"), [((1024, 1024), (1024, 1024)), ((1280, 720), (1536, 1024)),
                                                  ((864, 1080), (1024, 1536)), ((720, 1280), (1024, 1536))])
def test_standard_size_is_the_nearest_in_aspect(output, standard):
    """Without custom sizes, the standard size nearest in aspect."""
    assert request_size("gpt-image-2.6-flare", *output, custom=False) == standard


def test_2_6_refine_falls_back_too(make_provider):
    """Refining a 4:5 scene on 2.6 without custom sizes: once at the custom size, once at the nearest standard
    size, and the refined scene is the scene's own size."""
    scene = encode(Image.new("RGB", ASPECTS["4:5"], (90, 120, 80)), "jpeg")
    with FakeOpenAI(custom_sizes_2_6=False) as server:
        result = make_provider(server, model="gpt-image-2.6-sunburst").refine(
            image_png=scene, instruction="warmer light", size="864x1080")
        assert [(sent.fields["size"], sent.status) for sent in server.requests] == [("896x1120", 400),
                                                                                    ("1024x1536", 200)]
        assert (result.width, result.height, result.size) == (864, 1080, "1024x1536")
        assert not server.errors
