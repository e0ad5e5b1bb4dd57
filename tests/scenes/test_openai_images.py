"""The GPT Image provider against the fake OpenAI server: what is sent, retries, error mapping, cost, refine."""

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


def test_generate_sends_cutout_references_and_prompt(fake, make_provider):
    """One images.edit: model, size, quality, format, the cutout first, references in order, the shop's hash."""
    references = (jpeg(), png((80, 80), (10, 200, 10, 255)))
    result = make_provider().generate(request(references=references))

    assert fake.calls == 1
    sent = fake.requests[0]
    assert sent.path == "/v1/images/edits"
    assert sent.has_authorization
    fields = sent.fields
    assert (fields["model"], fields["size"], fields["quality"]) == ("gpt-image-2", "1024x1024", "medium")
    assert (fields["n"], fields["output_format"], fields["safety_identifier"]) == ("1", "jpeg", SHOP_KEY)
    assert "input_fidelity" not in fields
    assert "Smoky Chipotle Hot Sauce" in fields["prompt"]
    assert "Keep the product unchanged" in fields["prompt"]
    assert "The following 2 input images are style and setting references only" in fields["prompt"]
    assert [(part.field, part.filename, part.content_type) for part in sent.images] == [
        ("image[]", "cutout.png", "image/png"),
        ("image[]", "reference-1.jpg", "image/jpeg"),
        ("image[]", "reference-2.png", "image/png"),
    ]
    assert [part.sha256 for part in sent.images] == [sha(CUTOUT), *map(sha, references)]
    assert sent.mask is None

    assert (result.provider, result.model, result.preset) == ("openai", "gpt-image-2", "kitchen-counter")
    assert (result.width, result.height, result.content_type) == (1024, 1024, "image/jpeg")
    with Image.open(io.BytesIO(result.data)) as image:
        assert (image.format, image.size) == ("JPEG", (1024, 1024))
    assert set(result.usage) == {"input_text_tokens", "input_image_tokens", "output_tokens", "total_tokens"}
    assert all(isinstance(value, int) and value > 0 for value in result.usage.values())
    assert result.cost_usd == pytest.approx(PriceTable().cost("gpt-image-2", sent.usage))


@pytest.mark.parametrize(("model", "fidelity"), [("gpt-image-1-mini", "low"), ("gpt-image-1.5", "high")])
def test_input_fidelity_only_where_the_model_takes_it(fake, make_provider, model, fidelity):
    """gpt-image-1-mini gets input_fidelity=low, gpt-image-1.5 high; the model comes from the request."""
    result = make_provider().generate(request(model=model))
    assert fake.requests[0].fields["model"] == model
    assert fake.requests[0].fields["input_fidelity"] == fidelity
    assert result.model == model


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
    """gpt-image-2 takes any multiple-of-16 size; the result reports the decoded image's size."""
    preset = dataclasses.replace(PRESET, width=1536, height=864)
    result = make_provider().generate(request(preset=preset))
    assert fake.requests[0].fields["size"] == "1536x864"
    assert (result.width, result.height) == (1536, 864)


def test_reported_size_is_the_decoded_one():
    """When OpenAI answers with another size than asked, the result says what was really made."""
    with FakeOpenAI(image_size=(96, 64)) as fake:
        with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
            result = OpenAIProvider(client=client).generate(request())
    assert (result.width, result.height) == (96, 64)


def test_references_capped_at_the_model_limit(fake, make_provider):
    """Cutout plus references never pass 16 input images; the first 15 references are kept, in order."""
    references = tuple(jpeg((32, 32), (i * 10, 0, 0)) for i in range(20))
    make_provider().generate(request(references=references))
    sent = fake.requests[0].images
    assert len(sent) == MAX_INPUT_IMAGES
    assert sent[0].sha256 == sha(CUTOUT)
    assert [part.sha256 for part in sent[1:]] == [sha(ref) for ref in references[:MAX_INPUT_IMAGES - 1]]
    assert sent[-1].filename == "reference-15.jpg"


# validation before any call


@pytest.mark.parametrize(
    ("model", "size", "message"),
    [
        ("gpt-image-1.5", (1536, 864), "makes only 1024x1024"),
        ("gpt-image-1-mini", (512, 512), "makes only 1024x1024"),
        ("gpt-image-2", (1000, 1000), "multiples of 16"),
        ("gpt-image-2", (4096, 2160), "largest size"),
        ("gpt-image-2", (3840, 1200), "between 1:3 and 3:1"),
    ],
)
def test_bad_size_is_refused_before_any_call(fake, make_provider, model, size, message):
    """A size the model cannot make is refused with a merchant-readable reason and no request."""
    preset = dataclasses.replace(PRESET, width=size[0], height=size[1])
    provider = make_provider()
    with pytest.raises(SceneRefused, match=message) as caught:
        provider.generate(request(model=model, preset=preset))
    assert caught.value.reason == "invalid_request"
    assert "kitchen-counter" in str(caught.value)
    with pytest.raises(SceneRefused):
        provider.estimate_cost(request(model=model, preset=preset))
    assert fake.calls == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"preset": dataclasses.replace(PRESET, quality="ultra")}, "quality"),
        ({"model": "gpt-image-1"}, "shut down"),
        ({"model": "dall-e-3"}, "not offered"),
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
    """A provider for gpt-image-1 or an unknown format is a configuration error."""
    with pytest.raises(ValueError, match="unknown OpenAI image model"):
        OpenAIProvider(client=typing.cast(openai.OpenAI, object()), model="gpt-image-1")
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
        (256, 128), box), size="1536x1024", quality="high", model="gpt-image-1.5", shop_key=SHOP_KEY)

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
    assert (fields["model"], fields["size"], fields["quality"]) == ("gpt-image-1.5", "1536x1024", "high")
    assert fields["input_fidelity"] == "high" and fields["safety_identifier"] == SHOP_KEY
    assert "Add a sprig of thyme" in fields["prompt"]
    assert "Keep everything else unchanged" in fields["prompt"]
    assert "Keep the product unchanged" in fields["prompt"]
    assert (result.preset, result.model, result.width, result.height) == ("refine", "gpt-image-1.5", 1536, 1024)
    assert result.cost_usd > 0


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
        ({"size": "1536x864", "model": "gpt-image-1.5"}, "makes only"),
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
    """Every MODELS entry is in the installed openai's ImageModel; gpt-image-1 is not offered."""
    known = set(typing.get_args(ImageModel))
    assert set(MODELS) <= known
    assert "gpt-image-1" not in MODELS
    assert MODELS["gpt-image-2"].input_fidelities == ()
    assert MODELS["gpt-image-1-mini"].input_fidelities == ("low",)


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
    """The fake refuses input_fidelity on gpt-image-2 and custom sizes on gpt-image-1.5, as the API does."""
    with openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError, match="input_fidelity"):
            client.images.edit(model="gpt-image-2", prompt="p", image=[("c.png", CUTOUT, "image/png")],
                               input_fidelity="high")
        with pytest.raises(openai.BadRequestError, match="1536x864"):
            client.images.generate(model="gpt-image-1.5", prompt="p", size="1536x864")
        generated = client.images.generate(model="gpt-image-2", prompt="p", size="1024x1024", quality="low")
    assert generated.usage is not None and generated.usage.output_tokens == 272
