"""The GPT Image provider against the fake OpenAI server: what is sent, retries, error mapping, cost, refine.

The product-exact path itself (placement, mask, re-composite, tampering, sizes per aspect) is in
test_openai_exact.py.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import socket
import time
import typing

import numpy as np
import openai
import pytest
from openai.types import ImageModel
from PIL import (
    Image,
    ImageDraw,
)

from catalog_service.imaging.encode import encode
from catalog_service.scenes.base import (
    ProductInfo,
    ProviderUnavailable,
    ScenePreset,
    SceneRefused,
    SceneRequest,
)
from catalog_service.scenes.openai_images import (
    MAX_INPUT_IMAGES,
    MODELS,
    OUTPUT_QUALITY,
    RETIRED,
    OpenAIProvider,
    rectangle_mask,
)
from catalog_service.scenes.pricing import PriceTable
from fakes.openai_server import (
    MODERATION_MESSAGE,
    FakeOpenAI,
    Scripted,
)

API_KEY = "sk-test-0123456789abcdef"
SHOP_KEY = hashlib.sha256(b"shop-7").hexdigest()[:32]
PRODUCT = ProductInfo(title="Smoky Chipotle Hot Sauce", product_type="hot sauce", vendor="Casa Fuego")
PRESET = ScenePreset(name="kitchen-counter", style="prompt", prompt="On a stone kitchen counter.",
                     width=1024, height=1024, quality="medium")


def png(size=(64, 64), colour=(200, 30, 30, 255)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=colour)
    return encode(image, "png")


def jpeg(size=(64, 48), colour=(40, 140, 150)) -> bytes:
    return encode(Image.new("RGB", size, colour), "jpeg")


CUTOUT = png()


def request(**kwargs: typing.Any) -> SceneRequest:
    values: dict[str, typing.Any] = {"cutout_png": CUTOUT, "preset": PRESET, "product": PRODUCT, "shop_key": SHOP_KEY,
                                     "text_mode": "model"}
    values.update(kwargs)
    return SceneRequest(**values)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def make_provider(fake):
    """Providers on real openai clients pointed at the fake; the clients are closed before the fake stops."""
    clients: list[openai.OpenAI] = []

    def make(*, max_retries: int = 0, timeout_s: float = 10.0, **kwargs: typing.Any) -> OpenAIProvider:
        client = openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=max_retries,
                               timeout=timeout_s)
        clients.append(client)
        return OpenAIProvider(client=client, **kwargs)

    yield make
    for client in clients:
        client.close()


# what is sent


def test_generate_sends_placed_product_references_and_prompt(fake, make_provider):
    """One images.edit: model, size, quality, format and compression, the placed product first with its mask,
    references in order, the shop's hash; the answer comes back as a scene of the preset's size."""
    references = (jpeg(), png((80, 80), (10, 200, 10, 255)))
    result = make_provider().generate(request(references=references))

    assert fake.calls == 1
    sent = fake.requests[0]
    assert sent.path == "/v1/images/edits"
    assert sent.has_authorization
    fields = sent.fields
    assert (fields["model"], fields["size"], fields["quality"]) == ("gpt-image-2", "1024x1024", "medium")
    assert (fields["n"], fields["output_format"], fields["safety_identifier"]) == ("1", "jpeg", SHOP_KEY)
    assert fields["output_compression"] == str(OUTPUT_QUALITY)
    assert "input_fidelity" not in fields
    assert "Smoky Chipotle Hot Sauce" in fields["prompt"]
    assert "Keep the product unchanged" in fields["prompt"]
    assert "The following 2 input images are style and setting references only" in fields["prompt"]
    assert [(part.field, part.filename, part.content_type) for part in sent.images] == [
        ("image[]", "scene.png", "image/png"),
        ("image[]", "reference-1.jpg", "image/jpeg"),
        ("image[]", "reference-2.png", "image/png"),
    ]
    assert [part.sha256 for part in sent.images[1:]] == list(map(sha, references))
    with Image.open(io.BytesIO(sent.images[0].data)) as placed:
        assert (placed.mode, placed.size) == ("RGBA", (1024, 1024))
    assert sent.mask is not None and sent.mask.content_type == "image/png"

    assert (result.provider, result.model, result.preset) == ("openai", "gpt-image-2", "kitchen-counter")
    assert (result.width, result.height, result.content_type) == (1024, 1024, "image/jpeg")
    assert (result.size, result.source_type) == ("1024x1024", "compositeWithTrainedAlgorithmicMedia")
    with Image.open(io.BytesIO(result.data)) as image:
        assert (image.format, image.size) == ("JPEG", (1024, 1024))
    assert set(result.usage) == {"input_text_tokens", "input_image_tokens", "output_tokens", "total_tokens"}
    assert all(isinstance(value, int) and value > 0 for value in result.usage.values())
    assert result.cost_usd == pytest.approx(PriceTable().cost("gpt-image-2", sent.usage))
    assert result.estimate_usd == pytest.approx(make_provider().estimate_cost(request(references=references)))


def test_provider_default_model_and_png_output(fake, make_provider):
    """Without a model on the request the provider's own is used; output_format follows the provider."""
    result = make_provider(model="gpt-image-2.5-flare", output_format="png").generate(request())
    assert fake.requests[0].fields["model"] == "gpt-image-2.5-flare"
    assert fake.requests[0].fields["output_format"] == "png"
    assert result.content_type == "image/png"


def test_no_safety_identifier_without_a_shop_key(fake, make_provider):
    """An empty shop key sends no safety_identifier at all."""
    make_provider().generate(request(shop_key=""))
    assert "safety_identifier" not in fake.requests[0].fields


def test_text_goes_into_the_prompt_in_model_mode(fake, make_provider):
    """text with text_mode=model is rendered by the model; with overlay it stays out of the prompt."""
    provider = make_provider()
    provider.generate(request(text="Summer Sale"))
    provider.generate(request(text="Summer Sale", text_mode="overlay"))
    assert '"Summer Sale"' in fake.requests[0].fields["prompt"]
    assert "Summer Sale" not in fake.requests[1].fields["prompt"]


def test_custom_size_on_gpt_image_2(fake, make_provider):
    """gpt-image-2 takes any multiple-of-16 size: a 16:9 preset is asked for at its own size."""
    preset = dataclasses.replace(PRESET, width=1536, height=864)
    result = make_provider().generate(request(preset=preset))
    assert fake.requests[0].fields["size"] == "1536x864"
    assert (result.width, result.height, result.size) == (1536, 864, "1536x864")


def test_an_answer_of_another_size_still_makes_the_preset_size():
    """When OpenAI answers with another size than asked, the scene is still exactly the preset's size."""
    with FakeOpenAI(image_size=(96, 64)) as fake:
        with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
            result = OpenAIProvider(client=client).generate(request())
    assert (result.width, result.height) == (1024, 1024)
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.size == (1024, 1024)


def test_references_capped_at_the_model_limit(fake, make_provider):
    """Cutout plus references never pass 16 input images; the first 15 references are kept, in order."""
    references = tuple(jpeg((32, 32), (i * 10, 0, 0)) for i in range(20))
    make_provider().generate(request(references=references))
    sent = fake.requests[0].images
    assert len(sent) == MAX_INPUT_IMAGES
    assert sent[0].filename == "scene.png"
    assert [part.sha256 for part in sent[1:]] == [sha(ref) for ref in references[:MAX_INPUT_IMAGES - 1]]
    assert sent[-1].filename == "reference-15.jpg"


# validation before any call


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((32, 32), "64 to 4096 px"),
        ((5000, 5000), "64 to 4096 px"),
        ((3840, 1200), "between 1:3 and 3:1"),
    ],
)
def test_bad_size_is_refused_before_any_call(fake, make_provider, size, message):
    """A scene size we cannot deliver is refused with a merchant-readable reason and no request."""
    preset = dataclasses.replace(PRESET, width=size[0], height=size[1])
    provider = make_provider()
    with pytest.raises(SceneRefused, match=message) as caught:
        provider.generate(request(preset=preset))
    assert caught.value.reason == "invalid_request"
    assert "kitchen-counter" in str(caught.value)
    with pytest.raises(SceneRefused):
        provider.estimate_cost(request(preset=preset))
    assert fake.calls == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"preset": dataclasses.replace(PRESET, quality="ultra")}, "quality"),
        ({"model": "gpt-image-1"}, "shut down"),
        ({"model": "gpt-image-1.5"}, "Choose gpt-image-2.6-sunburst"),
        ({"model": "gpt-image-9"}, "not offered"),
        ({"preset": dataclasses.replace(PRESET, product_lock="loose")}, "product_lock"),
        ({"cutout_png": encode(Image.new("RGBA", (32, 32)), "png")}, "no visible pixels"),
        ({"references": (b"GIF89a not really",)}, "Reference image 1 is not a PNG, JPEG or WebP"),
        ({"cutout_png": b"plain text"}, "cutout is not a PNG"),
        ({"text": "x" * 81}, "at most 80"),
    ],
)
def test_invalid_requests_are_refused_before_any_call(fake, make_provider, changes, message):
    """Bad quality, retired models, non-images and over-long text are refused without calling OpenAI."""
    with pytest.raises(SceneRefused, match=message) as caught:
        make_provider().generate(request(**changes))
    assert caught.value.reason == "invalid_request"
    assert fake.calls == 0


def test_constructor_refuses_unknown_model_and_format():
    """A provider for a shut-down or unknown model, or an unknown format, is a configuration error."""
    with pytest.raises(ValueError, match="shut down.*gpt-image-2.6-sunburst"):
        OpenAIProvider(client=typing.cast(openai.OpenAI, object()), model="gpt-image-1")
    with pytest.raises(ValueError, match="unknown OpenAI image model"):
        OpenAIProvider(client=typing.cast(openai.OpenAI, object()), model="gpt-image-9")
    with pytest.raises(ValueError, match="output_format"):
        OpenAIProvider(client=typing.cast(openai.OpenAI, object()), output_format="gif")


# retries (the library's) and error mapping


def test_rate_limit_with_retry_after_is_retried(fake, make_provider):
    """429 with Retry-After: 1, then success: one retry, after waiting the second the server asked for."""
    fake.fail(429, retry_after=1)
    started = time.monotonic()
    result = make_provider(max_retries=2).generate(request())
    elapsed = time.monotonic() - started
    assert result.width == 1024
    assert fake.calls == 2
    assert [sent.status for sent in fake.requests] == [429, 200]
    assert fake.requests[1].retry_count == 1
    assert 0.9 <= elapsed < 10


def test_server_errors_twice_then_success(fake, make_provider):
    """500 twice, then success, with max_retries=3: the library retries and the third call succeeds."""
    fake.fail(500, retry_after_ms=1, times=2)  # the wait the server asks for, instead of the library's backoff
    result = make_provider(max_retries=3).generate(request())
    assert result.cost_usd > 0
    assert [sent.status for sent in fake.requests] == [500, 500, 200]
    # The multipart body is replayed on every retry.
    assert len({tuple(part.sha256 for part in sent.images) for sent in fake.requests}) == 1


def test_persistent_server_error_is_unavailable(fake, make_provider):
    """500 on every try: ProviderUnavailable (retryable) after 1 + max_retries calls."""
    fake.fail(500, retry_after_ms=10, times=10)
    with pytest.raises(ProviderUnavailable, match="HTTP 500") as caught:
        make_provider(max_retries=2).generate(request())
    assert caught.value.retryable and caught.value.reason == "upstream"
    assert fake.calls == 3


def test_persistent_rate_limit_is_unavailable(fake, make_provider):
    """429 on every try: ProviderUnavailable with OpenAI's reason."""
    fake.fail(429, retry_after_ms=10, times=5)
    with pytest.raises(ProviderUnavailable, match="rate-limiting") as caught:
        make_provider(max_retries=1).generate(request())
    assert caught.value.reason == "rate_limited"
    assert fake.calls == 2


def test_insufficient_quota_is_permanent(fake, make_provider):
    """429 insufficient_quota needs a human (credit), so it is refused, not retried forever by the job."""
    fake.fail(429, code="insufficient_quota", error_type="insufficient_quota",
              message="You exceeded your current quota, please check your plan and billing details.")
    with pytest.raises(SceneRefused, match="run out of credit") as caught:
        make_provider().generate(request())
    assert caught.value.reason == "quota"


def test_timeout_is_unavailable(fake, make_provider):
    """No answer within the timeout: ProviderUnavailable (the fake's sleeper is woken when it stops)."""
    fake.slow(5)
    with pytest.raises(ProviderUnavailable, match="in time") as caught:
        make_provider(timeout_s=0.3).generate(request())
    assert caught.value.reason == "timeout"


def test_connection_refused_is_unavailable():
    """Nothing listening: ProviderUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with openai.OpenAI(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
        with pytest.raises(ProviderUnavailable, match="connect") as caught:
            OpenAIProvider(client=client).generate(request())
    assert caught.value.reason == "connection"


def test_refusal_is_content_policy_with_openais_message(fake, make_provider):
    """moderation_blocked: SceneRefused(content_policy) quoting OpenAI, never retried."""
    fake.refuse()
    with pytest.raises(SceneRefused) as caught:
        make_provider(max_retries=3).generate(request())
    assert caught.value.reason == "content_policy"
    assert not caught.value.retryable
    assert MODERATION_MESSAGE in str(caught.value)
    assert fake.calls == 1


def test_safety_wording_without_the_code_is_content_policy(fake, make_provider):
    """A 400 that only says 'safety system' in words is still a content-policy refusal."""
    fake.fail(400, message="Your request was rejected as a result of our safety system.", code="")
    with pytest.raises(SceneRefused) as caught:
        make_provider().generate(request())
    assert caught.value.reason == "content_policy"


def test_unauthorized_is_auth_and_never_leaks_the_key(fake, make_provider):
    """401: SceneRefused(auth); the key OpenAI echoes back appears nowhere in our error or its chain."""
    fake.unauthorized()
    with pytest.raises(SceneRefused) as caught:
        make_provider(max_retries=3).generate(request())
    error = caught.value
    assert error.reason == "auth"
    assert "API key was refused" in str(error)
    assert API_KEY in fake.requests[0].headers["authorization"]
    assert API_KEY not in str(error) and API_KEY not in repr(error.args)
    assert error.__cause__ is None and error.__suppress_context__
    assert fake.calls == 1


def test_forbidden_is_auth_with_redacted_detail(fake, make_provider):
    """403: SceneRefused(auth) with OpenAI's reason, anything key-like removed."""
    fake.fail(403, message=f"Project for key {API_KEY[:12]}**** must be verified to use this model.")
    with pytest.raises(SceneRefused, match="must be verified") as caught:
        make_provider().generate(request())
    assert caught.value.reason == "auth"
    assert API_KEY[:12] not in str(caught.value)


def test_other_bad_request_is_invalid_request(fake, make_provider):
    """Any other 400 is SceneRefused(invalid_request) with OpenAI's message."""
    fake.fail(400, message="Invalid 'prompt': too long.", code="string_above_max_length")
    with pytest.raises(SceneRefused, match="Invalid 'prompt': too long") as caught:
        make_provider().generate(request())
    assert caught.value.reason == "invalid_request"


def test_answer_that_is_not_an_image_is_unavailable(fake, make_provider):
    """A 200 whose b64_json is not an image, or no image at all, is a transient bad answer."""
    fake.respond(Scripted(body={"created": 1, "data": [{"b64_json": base64.b64encode(b"nope").decode()}]}))
    fake.respond(Scripted(body={"created": 1, "data": []}))
    provider = make_provider()
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as caught:
            provider.generate(request())
        assert caught.value.reason == "bad_response"


# cost


def test_cost_from_usage_by_hand(fake, make_provider):
    """The cost is the usage priced by the table: 500 text, 1000 image in, 2000 out on gpt-image-2."""
    fake.succeed(usage={"input_tokens": 1500, "input_tokens_details": {"image_tokens": 1000, "text_tokens": 500},
                        "output_tokens": 2000, "total_tokens": 3500})
    result = make_provider().generate(request())
    assert result.cost_usd == pytest.approx((500 * 5.0 + 1000 * 8.0 + 2000 * 30.0) / 1_000_000)
    assert result.usage == {"input_text_tokens": 500, "input_image_tokens": 1000, "output_tokens": 2000,
                            "total_tokens": 3500}


def test_cost_uses_configured_prices(fake, make_provider):
    """Overrides from CATALOG_OPENAI_PRICES change the recorded cost."""
    fake.succeed(usage={"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                        "output_tokens": 1_000_000, "total_tokens": 1_000_000})
    provider = make_provider(prices=PriceTable.from_json('{"gpt-image-2": {"output": 12.5}}'))
    assert provider.generate(request()).cost_usd == pytest.approx(12.5)


def test_answer_without_usage_records_the_estimate(fake, make_provider):
    """An answer without usage cannot be measured, so its conservative estimate is recorded as its cost."""
    image = base64.b64encode(jpeg((1024, 1024))).decode()
    fake.respond(Scripted(body={"created": 1, "data": [{"b64_json": image}]}))
    provider = make_provider()
    result = provider.generate(request())
    assert result.usage == {}
    assert result.cost_usd == pytest.approx(provider.estimate_cost(request())) and result.cost_usd > 0


def test_estimate_is_positive_grows_with_quality_and_calls_nothing(fake, make_provider):
    """estimate_cost is > 0, grows low < medium < high, and makes no request."""
    provider = make_provider()
    estimates = [provider.estimate_cost(request(preset=dataclasses.replace(PRESET, quality=quality)))
                 for quality in ("low", "medium", "high")]
    assert 0 < estimates[0] < estimates[1] < estimates[2]
    with_references = provider.estimate_cost(request(references=(jpeg(), jpeg())))
    assert with_references > estimates[1]
    assert fake.calls == 0


def test_estimate_is_conservative(fake, make_provider):
    """The estimate is not below what the fake's believable usage costs for the same request."""
    provider = make_provider()
    for quality in ("low", "medium", "high"):
        scene = request(preset=dataclasses.replace(PRESET, quality=quality), references=(jpeg(),))
        assert provider.estimate_cost(scene) >= provider.generate(scene).cost_usd


# refine


def test_refine_with_a_rectangle_mask(fake, make_provider):
    """refine sends the scene as the one image, the mask as a PNG with alpha, transparent exactly in the box."""
    scene = jpeg((256, 128))
    box = (32, 16, 96, 64)
    result = make_provider().refine(image_png=scene, instruction="Add a sprig of thyme", mask_png=rectangle_mask(
        (256, 128), box), size="1536x1024", quality="high", model="gpt-image-2.5-flare", shop_key=SHOP_KEY)

    sent = fake.requests[0]
    assert [(part.filename, part.content_type, part.sha256) for part in sent.images] == [
        ("scene.jpg", "image/jpeg", sha(scene))]
    assert (sent.mask.filename, sent.mask.content_type) == ("mask.png", "image/png")
    with Image.open(io.BytesIO(sent.mask.data)) as mask:
        assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", (256, 128))
        alpha = np.asarray(mask.getchannel("A"))
    transparent = np.argwhere(alpha == 0)
    assert alpha.min() == 0 and set(np.unique(alpha)) == {0, 255}
    assert len(transparent) == (box[2] - box[0]) * (box[3] - box[1])
    assert tuple(transparent.min(axis=0)) == (box[1], box[0])
    assert tuple(transparent.max(axis=0) + 1) == (box[3], box[2])

    fields = sent.fields
    assert (fields["model"], fields["size"], fields["quality"]) == ("gpt-image-2.5-flare", "1536x1024", "high")
    assert "input_fidelity" not in fields and fields["safety_identifier"] == SHOP_KEY
    assert fields["output_compression"] == str(OUTPUT_QUALITY)
    assert "Add a sprig of thyme" in fields["prompt"]
    assert "Keep everything else unchanged" in fields["prompt"]
    assert "Keep the product unchanged" in fields["prompt"]
    assert (result.preset, result.model, result.width, result.height) == ("refine", "gpt-image-2.5-flare", 1536, 1024)
    assert (result.size, result.source_type) == ("1536x1024", "trainedAlgorithmicMedia")
    assert result.cost_usd > 0


def test_refine_keeps_the_scenes_own_size(fake, make_provider):
    """A 4:5 scene of 1080x1350 is refined at a size the model takes, in its aspect, and comes back 1080x1350,
    encoded by us and marked as generated."""
    scene = jpeg((1080, 1350))
    result = make_provider().refine(image_png=scene, instruction="warmer light", size="1080x1350")
    asked = fake.requests[0].fields["size"]
    width, height = (int(side) for side in asked.split("x"))
    assert (width % 16, height % 16, width * 5) == (0, 0, height * 4)
    assert (result.width, result.height, result.size) == (1080, 1350, asked)
    with Image.open(io.BytesIO(result.data)) as image:
        assert (image.format, image.size) == ("JPEG", (1080, 1350))
    assert b"trainedAlgorithmicMedia" in result.data


def test_refine_without_mask_defaults(fake, make_provider):
    """Without a mask, refine sends no mask part; size auto and the provider's model are the defaults."""
    result = make_provider().refine(image_png=png((128, 128)), instruction="warmer light")
    sent = fake.requests[0]
    assert sent.mask is None and sent.fields["size"] == "auto" and sent.fields["model"] == "gpt-image-2"
    assert "input_fidelity" not in sent.fields
    assert (result.width, result.height) == sent.response_size


def _opaque_png(size):
    return encode(Image.new("RGBA", size, (0, 0, 0, 255)), "png")


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (encode(Image.new("RGB", (256, 128)), "png"), "alpha channel"),
        (rectangle_mask((128, 128), (0, 0, 10, 10)), "must be the same size"),
        (jpeg((256, 128)), "must be a PNG"),
        (_opaque_png((256, 128)), "no fully transparent area"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 4 * 1024 * 1024, "under 4 MB"),
        (b"\x89PNG\r\n\x1a\nbroken", "cannot be read"),
    ],
)
def test_refine_refuses_bad_masks_before_any_call(fake, make_provider, mask, message):
    """A mask that is not a same-size PNG with a transparent area, under 4 MB, is refused up front."""
    with pytest.raises(SceneRefused, match=message) as caught:
        make_provider().refine(image_png=jpeg((256, 128)), instruction="x", mask_png=mask)
    assert caught.value.reason == "invalid_request"
    assert fake.calls == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instruction": "  "}, "instruction is empty"),
        ({"instruction": "x" * 4001}, "keep it under 4000"),
        ({"size": "big"}, "size cannot be used"),
        ({"size": "5000x5000"}, "64 to 4096 px"),
        ({"size": "4000x1000"}, "between 1:3 and 3:1"),
        ({"quality": "best"}, "quality"),
        ({"image_png": b"not an image"}, "not a PNG, JPEG or WebP"),
        ({"model": "gpt-image-1"}, "shut down"),
    ],
)
def test_refine_refuses_bad_arguments_before_any_call(fake, make_provider, changes, message):
    """Empty or long instructions, bad sizes, qualities, images and models never reach OpenAI."""
    arguments = {"image_png": jpeg((256, 128)), "instruction": "brighter"} | changes
    with pytest.raises(SceneRefused, match=message):
        make_provider().refine(**arguments)
    assert fake.calls == 0


@pytest.mark.parametrize("box", [(0, 0, 0, 10), (10, 10, 5, 20), (-1, 0, 10, 10), (0, 0, 257, 10)])
def test_rectangle_mask_refuses_boxes_outside_the_image(box):
    """An empty box or one outside the image is a ValueError."""
    with pytest.raises(ValueError):
        rectangle_mask((256, 128), box)


# the model table and the client the provider builds


def test_every_model_is_one_the_library_knows():
    """Every MODELS entry is in the installed openai's ImageModel; no shut-down model is offered, and each has a
    current replacement."""
    known = set(typing.get_args(ImageModel))
    assert set(MODELS) <= known
    assert not set(RETIRED) & set(MODELS)
    assert {"gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"} <= set(RETIRED)
    assert set(RETIRED.values()) <= set(MODELS)
    assert "xhigh" in MODELS["gpt-image-2.6-flare"].qualities and "xhigh" not in MODELS["gpt-image-2"].qualities
    assert MODELS["gpt-image-2.5-sunburst"].transparent_background == "ga"
    assert MODELS["gpt-image-2"].transparent_background == "preview"


def test_provider_builds_its_client_from_the_environment(fake, monkeypatch):
    """Without a client, the library reads OPENAI_API_KEY/OPENAI_BASE_URL and retries with our max_retries."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    fake.fail(503, retry_after_ms=10)
    with OpenAIProvider(max_retries=1, timeout_s=5) as provider:
        provider.generate(request())
    assert [sent.status for sent in fake.requests] == [503, 200]
    assert fake.requests[1].headers["authorization"] == f"Bearer {API_KEY}"


def test_provider_without_a_key_is_refused(monkeypatch):
    """No OPENAI_API_KEY and no client: a clear auth refusal at construction."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SceneRefused, match="OPENAI_API_KEY") as caught:
        OpenAIProvider()
    assert caught.value.reason == "auth"


# the fake itself


def test_fake_parses_binary_parts_exactly(fake):
    """Arbitrary bytes (CR, LF, boundary-like runs) survive the multipart round trip through the email parser."""
    tricky = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8 + b"\r\n--\r\n\r\r\n\n--x"
    with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError):
            client.images.edit(model="gpt-image-2", prompt="p", image=[("a.png", tricky, "image/png")])
    part = fake.requests[0].images[0]
    assert (part.filename, part.size, part.sha256) == ("a.png", len(tricky), sha(tricky))


def test_fake_checks_parameters_like_the_api(fake):
    """The fake refuses input_fidelity on gpt-image-2, sizes under its pixel minimum, xhigh on gpt-image-2 and
    output_compression with png, as the API does."""
    with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError, match="input_fidelity"):
            client.images.edit(model="gpt-image-2", prompt="p", image=[("c.png", CUTOUT, "image/png")],
                               input_fidelity="high")
        with pytest.raises(openai.BadRequestError, match="512x512"):
            client.images.generate(model="gpt-image-2", prompt="p", size="512x512")
        with pytest.raises(openai.BadRequestError, match="xhigh"):
            client.images.generate(model="gpt-image-2", prompt="p", quality="xhigh")
        with pytest.raises(openai.BadRequestError, match="output_compression"):
            client.images.generate(model="gpt-image-2", prompt="p", output_format="png", output_compression=80)
        client.images.generate(model="gpt-image-2.6-flare", prompt="p", size="1536x864", quality="max")
    assert [sent.status for sent in fake.requests] == [400, 400, 400, 400, 200]


@pytest.mark.parametrize(("size", "quality", "tokens"), [
    ("1024x1024", "low", 200), ("1024x1024", "medium", 1767), ("1024x1024", "high", 7033),
    ("1536x1024", "low", 167), ("1024x1536", "medium", 1367), ("1536x1024", "high", 5500),
])
def test_fake_usage_follows_openais_examples(fake, size, quality, tokens):
    """Output tokens by quality and shape as in OpenAI's gpt-image-2 examples (they do not grow with area)."""
    with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
        generated = client.images.generate(model="gpt-image-2", prompt="p", size=size, quality=quality)
    assert generated.usage is not None and generated.usage.output_tokens == tokens


def test_fake_edit_keeps_the_first_image_where_the_mask_is_opaque(fake):
    """The fake's edit answers a new scene where the mask is transparent and the first image's pixels where it is
    opaque; a tamper changes those pixels in the next answer only."""
    first = Image.new("RGBA", (1024, 1024), (0, 0, 0, 0))
    ImageDraw.Draw(first).rectangle((400, 400, 623, 623), fill=(200, 30, 30, 255))
    mask = rectangle_mask((1024, 1024), (0, 0, 1024, 380))

    def edit(client: openai.OpenAI) -> np.ndarray:
        answer = client.images.edit(model="gpt-image-2", prompt="p", image=[("f.png", encode(first, "png"),
                                    "image/png")], mask=("m.png", mask, "image/png"), output_format="png")
        assert answer.data and answer.data[0].b64_json
        with Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))) as image:
            return np.asarray(image.convert("RGB")).astype(int)

    with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
        fake.tamper("recolour")
        tampered, kept = edit(client), edit(client)
    assert (kept[410:610, 410:610] == (200, 30, 30)).all()  # kept: opaque in the mask and in the image
    assert not (tampered[410:610, 410:610] == (200, 30, 30)).all()
    assert not (kept[:380] == (200, 30, 30)).all(axis=-1).any()  # the scene, drawn where the mask is transparent
    with pytest.raises(ValueError, match="recolour"):
        fake.tamper("melt")
