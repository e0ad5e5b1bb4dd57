"""The GPT Image scene provider: the product placed on the canvas, the scene asked for around it, the product's
own pixels laid back over the answer.

How a scene is made (`generate`):
1. The output is the preset's width x height exactly, any aspect. The request size is one the model accepts
   (`request_size`): on models with custom sizes the output's aspect in multiples of 16, between about 655,360
   pixels and 2560x1440's count (above it is experimental; never more pixels than the output needs), else the
   standard size nearest in aspect. gpt-image-2.6 is tried at the custom size and, when OpenAI refuses the size,
   once more at the nearest standard size (remembered for the process).
2. The trimmed product is placed on a transparent canvas at the request size (`imaging.placement.place`) inside
   the region that will become the output, and sent as the first image, the shop's references after it, with a
   prompt that asks for the scene around the product. With `product_lock == "exact"` (the default) the mask
   (`edit_mask`) leaves the product's region alone; on GPT image models a mask is guidance, not a guarantee.
3. The answer is brought to the exact output size (that region, resized; never stretched). `exact`: the
   product's own pixels, from the full-resolution cutout, are laid back at the placement scaled to the output
   (`recomposite`), so the product is exact by construction (IPTC COMPOSITE_SOURCE). `model`: the model's
   product stays (stylised scenes; GENERATED_SOURCE) and the pipeline's fidelity check decides.
4. The final image is encoded by us (JPEG/WebP/PNG per output_format, sRGB, marked with its source type).

Models and options (openai-python 3.63 `src/openai/types/image_edit_params.py`, `image_model.py`;
../shared/API-NOTES.md): `MODELS` says what each current model accepts, and only that is sent; `input_fidelity`
is left out for every current model; `output_compression` is sent for jpeg and webp. The shut-down models are in
`RETIRED` with what to choose instead.

Retries are the openai library's own (openai-python `src/openai/_base_client.py`, as installed at 3.57):
`SyncAPIClient.request` retries up to `max_retries` times when `_should_retry` says so (HTTP 408, 409, 429 and
any 5xx, unless the server sends `x-should-retry: false`) and on timeouts and connection errors. Before each retry
`_calculate_retry_timeout` sleeps what the server asks in `retry-after-ms` or `retry-after` (seconds or an HTTP
date) when that is between 0 and 120 s; a longer Retry-After stops the retries; otherwise it backs off
exponentially, 0.5 s * 2^n capped at 8 s, minus up to 25 % jitter. Our multipart bodies are bytes, so the library
can replay them (`_RequestBodyReplay`). This module adds no retry loop of its own (the one size fallback aside):
what is still failing after the library's retries becomes ProviderUnavailable, and the render job retries later
with its own bounded backoff.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import io
import logging
import math
import re
import time
import typing
from collections.abc import Callable

import openai
from openai.types import ImageModel
from PIL import Image

from catalog_service.imaging.compose import cover
from catalog_service.imaging.encode import CONTENT_TYPES, encode
from catalog_service.imaging.placement import SCENE_LAYOUT, edit_mask, place, recomposite, trim
from catalog_service.scenes.base import (
    COMPOSITE_SOURCE,
    GENERATED_SOURCE,
    PRODUCT_LOCKS,
    ProviderUnavailable,
    SceneRefused,
    SceneRequest,
    SceneResult,
)
from catalog_service.scenes.openai_batch import BatchEdit, OpenAIBatchClient
from catalog_service.scenes.openai_errors import OpenAIErrors
from catalog_service.scenes.pricing import Calibration, PriceTable, flat_usage
from catalog_service.scenes.prompts import (
    MAX_INSTRUCTION_CHARS,
    MAX_TEXT_CHARS,
    build_prompt,
    build_refine_prompt,
    clean_text,
)

log = logging.getLogger(__name__)

Size = tuple[int, int]
Box = tuple[int, int, int, int]
_T = typing.TypeVar("_T")

DEFAULT_MODEL = "gpt-image-2"
STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
"""Sizes every GPT Image model makes (besides `auto`)."""
QUALITIES = ("low", "medium", "high", "auto")
"""Qualities every current GPT Image model makes."""
EXTRA_QUALITIES = ("xhigh", "max")
"""Further qualities of gpt-image-2.5 (and, by third-party reports, 2.6)."""
OUTPUT_FORMATS = ("png", "jpeg", "webp")
OUTPUT_QUALITY = 90
"""JPEG/WebP quality we encode scenes at, and the output_compression we ask of OpenAI for them."""
MAX_INPUT_IMAGES = 16
"""Input images per edit: the placed product plus up to 15 references."""
MAX_INPUT_IMAGE_BYTES = 50 * 1024 * 1024
"""Largest input image OpenAI accepts, in bytes."""
MAX_MASK_BYTES = 4 * 1024 * 1024
"""Largest mask OpenAI accepts, in bytes."""
FLEX_MAX_SIDE = 3840
"""Longest side, in px, of a custom size on the models that take one."""
FLEX_MAX_PIXELS = 3840 * 2160
"""Most pixels of a custom size on the models that take one."""
FLEX_STABLE_PIXELS = 2560 * 1440
"""Most pixels we ask for: above 2560x1440 OpenAI calls custom sizes experimental."""
FLEX_MIN_PIXELS = 655_360
"""Fewest pixels of a custom size (reported, not in the library's docs: we stay above it)."""
FLEX_MAX_RATIO = 3
"""Custom sizes keep their aspect ratio between 1:3 and 3:1."""
FLEX_MULTIPLE = 16
"""Custom widths and heights are multiples of this, in px."""
MAX_OUTPUT_SIDE = 4096
"""Longest side, in px, of a scene we deliver (the model's answer is resized to it)."""
MIN_OUTPUT_SIDE = 64
"""Shortest side, in px, of a scene we deliver."""

CustomSizes = typing.Literal["yes", "no", "try"]


@dataclasses.dataclass(frozen=True)
class ModelCaps:
    """What one GPT Image model accepts, so we send each model only the options it takes."""

    qualities: tuple[str, ...] = QUALITIES
    # yes: WIDTHxHEIGHT in multiples of 16 within the FLEX_* limits; no: the standard sizes only; try: not
    # confirmed, so ask for the custom size and fall back to the nearest standard size once it is refused.
    custom_sizes: CustomSizes = "yes"
    transparent_background: str = ""  # "ga", "preview" or "" (not offered); our scenes are opaque
    max_input_images: int = MAX_INPUT_IMAGES
    output_formats: tuple[str, ...] = OUTPUT_FORMATS


_GPT_IMAGE_2 = ModelCaps(transparent_background="preview")
_GPT_IMAGE_2_5 = ModelCaps(qualities=QUALITIES + EXTRA_QUALITIES, transparent_background="ga")
_GPT_IMAGE_2_6 = ModelCaps(qualities=QUALITIES + EXTRA_QUALITIES, custom_sizes="try", transparent_background="ga")

# The current models (API-NOTES, December 2026). flare: faster; sunburst: more precise edits.
MODELS: dict[str, ModelCaps] = {
    "gpt-image-2": _GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": _GPT_IMAGE_2,
    "gpt-image-2.5-sunburst": _GPT_IMAGE_2_5,
    "gpt-image-2.5-sunburst-2026-09-08": _GPT_IMAGE_2_5,
    "gpt-image-2.5-flare": _GPT_IMAGE_2_5,
    "gpt-image-2.5-flare-2026-09-08": _GPT_IMAGE_2_5,
    "gpt-image-2.6-sunburst": _GPT_IMAGE_2_6,
    "gpt-image-2.6-flare": _GPT_IMAGE_2_6,
}

RETIRED: dict[str, str] = {
    "gpt-image-1": "gpt-image-2.6-sunburst",
    "gpt-image-1.5": "gpt-image-2.6-sunburst",
    "gpt-image-1.5-2025-12-16": "gpt-image-2.6-sunburst",
    "gpt-image-1-mini": "gpt-image-2.6-flare",
    "chatgpt-image-latest": "gpt-image-2.6-sunburst",
    "dall-e-2": "gpt-image-2.6-flare",
    "dall-e-3": "gpt-image-2.6-sunburst",
}
"""Shut-down image models, each with the current model to choose instead (API-NOTES: gpt-image-2.6-sunburst for
precise edits, -flare for speed)."""

LIBRARY_MODELS = frozenset(typing.get_args(ImageModel))
"""The model names the installed openai library knows."""
_UNKNOWN = sorted(set(MODELS) - LIBRARY_MODELS)
if _UNKNOWN:  # the library pin and the table have drifted apart: fail at startup, not at the first render
    raise ImportError(
        f"catalog_service.scenes.openai_images lists models the installed openai {openai.__version__} does not "
        f"know: {', '.join(_UNKNOWN)}; update MODELS or the openai pin"
    )


def retired_message(model: str) -> str:
    """What to tell a merchant whose settings or request name the shut-down `model`."""
    replacement = RETIRED.get(model, DEFAULT_MODEL)
    other = "gpt-image-2.6-flare" if replacement.endswith("sunburst") else "gpt-image-2.6-sunburst"
    return (f"The OpenAI image model {model!r} has been shut down by OpenAI. Choose {replacement} instead "
            f"(or {other}) in the settings.")



_SNIFFED = (
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
)
_FORMAT_KEYS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}


def sniff_image(data: bytes) -> tuple[str, str] | None:
    """(extension, mime type) of PNG, JPEG or WebP bytes by their magic numbers; None for anything else."""
    for magic, ext, mime in _SNIFFED:
        if data.startswith(magic):
            return ext, mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    return None


def rectangle_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    """A PNG mask for an image of `size`: fully opaque, except `box` (left, top, right, bottom; right and bottom
    exclusive, as in Image.crop), which is fully transparent: the area OpenAI edits."""
    width, height = size
    left, top, right, bottom = box
    if width <= 0 or height <= 0:
        raise ValueError(f"the image size must be positive, not {width}x{height}")
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"the box {box} must be a non-empty rectangle inside the {width}x{height} image")
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (left, top, right, bottom))
    return encode(mask, "png")


def parse_size(size: str) -> tuple[int, int] | None:
    """(width, height) of a `WIDTHxHEIGHT` string, None for `auto`; ValueError for anything else."""
    if size == "auto":
        return None
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size or "")
    if not match:
        raise ValueError(f"a size looks like 1536x1024 or is auto, not {size!r}")
    return int(match[1]), int(match[2])


def check_size(model: str, width: int, height: int) -> str | None:
    """Why `model` cannot be asked for a `width`x`height` image, in words for the merchant; None when it can."""
    size = f"{width}x{height}"
    if size in STANDARD_SIZES:
        return None
    if MODELS[model].custom_sizes == "no":
        return f"{model} makes only {', '.join(STANDARD_SIZES)} (or auto), not {size}"
    problems = []
    if width <= 0 or height <= 0 or width % FLEX_MULTIPLE or height % FLEX_MULTIPLE:
        problems.append(f"width and height must be multiples of {FLEX_MULTIPLE} px")
    if max(width, height) > FLEX_MAX_SIDE or width * height > FLEX_MAX_PIXELS:
        problems.append("the largest size is 3840x2160 (or 2160x3840)")
    elif width * height < FLEX_MIN_PIXELS:
        problems.append(f"the smallest is {FLEX_MIN_PIXELS:,} pixels (about 810x810)")
    if min(width, height) > 0 and max(width, height) > FLEX_MAX_RATIO * min(width, height):
        problems.append("the aspect ratio must be between 1:3 and 3:1")
    if problems:
        return f"{model} cannot make {size}: {'; '.join(problems)}"
    return None


def check_output_size(width: int, height: int) -> str | None:
    """Why a scene of `width`x`height` cannot be delivered, in words for the merchant; None when it can."""
    if min(width, height) < MIN_OUTPUT_SIDE or max(width, height) > MAX_OUTPUT_SIDE:
        return f"a scene is {MIN_OUTPUT_SIDE} to {MAX_OUTPUT_SIDE} px on each side, not {width}x{height}"
    if max(width, height) > FLEX_MAX_RATIO * min(width, height):
        return f"a scene's aspect ratio is between 1:3 and 3:1, not {width}x{height}"
    return None


def nearest_standard_size(width: int, height: int) -> Size:
    """The standard size closest in aspect to `width`x`height` (square on a tie)."""
    aspect = math.log(width / height)
    sizes = [parse_size(size) for size in STANDARD_SIZES]
    return min((size for size in sizes if size is not None), key=lambda size: abs(math.log(size[0] / size[1]) - aspect))


def custom_size(width: int, height: int) -> Size:
    """A custom request size for a `width`x`height` output: the same aspect (exactly, when a multiple of 16 allows
    it), as many pixels as the output but within FLEX_MIN_PIXELS..FLEX_STABLE_PIXELS."""
    target = min(max(width * height, FLEX_MIN_PIXELS), FLEX_STABLE_PIXELS)
    divisor = math.gcd(width, height)
    p, q = width // divisor, height // divisor
    unit = FLEX_MULTIPLE * FLEX_MULTIPLE * p * q  # pixels of (16p x 16q), the smallest exact-aspect size
    lowest, highest = math.ceil(math.sqrt(FLEX_MIN_PIXELS / unit)), math.floor(math.sqrt(FLEX_STABLE_PIXELS / unit))
    if lowest <= highest:
        m = min(max(round(math.sqrt(target / unit)), lowest), highest)
        return FLEX_MULTIPLE * p * m, FLEX_MULTIPLE * q * m
    # No exact multiple fits (an aspect like 1001:1000): the nearest multiples of 16; the crop is a pixel or two.
    aspect = width / height
    w, h = math.sqrt(target * aspect) / FLEX_MULTIPLE, math.sqrt(target / aspect) / FLEX_MULTIPLE
    size = (max(1, round(w)) * FLEX_MULTIPLE, max(1, round(h)) * FLEX_MULTIPLE)
    if size[0] * size[1] < FLEX_MIN_PIXELS:
        size = (math.ceil(w) * FLEX_MULTIPLE, math.ceil(h) * FLEX_MULTIPLE)
    elif size[0] * size[1] > FLEX_STABLE_PIXELS:
        size = (math.floor(w) * FLEX_MULTIPLE, math.floor(h) * FLEX_MULTIPLE)
    return size


def request_size(model: str, width: int, height: int, *, custom: bool = True) -> Size:
    """The size to ask `model` for when the scene is `width`x`height`: a custom size of the same aspect where the
    model takes one (and `custom`), else the standard size nearest in aspect."""
    if custom and MODELS[model].custom_sizes != "no":
        return custom_size(width, height)
    return nearest_standard_size(width, height)


def output_region(request: Size, output: Size) -> Box:
    """The centred part of a `request`-sized answer that has the output's aspect: what becomes the scene."""
    rw, rh = request
    ow, oh = output
    if rw * oh > ow * rh:  # the request is wider than the output
        width = min(rw, round(rh * ow / oh))
        left = (rw - width) // 2
        return left, 0, left + width, rh
    height = min(rh, round(rw * oh / ow))
    top = (rh - height) // 2
    return 0, top, rw, top + height


class OpenAIProvider:
    """Scenes from GPT Image: the product placed on the canvas, the scene drawn around it, the product kept."""

    name = "openai"

    def __init__(
        self,
        *,
        client: openai.OpenAI | None = None,
        model: str = DEFAULT_MODEL,
        prices: PriceTable | None = None,
        max_retries: int = 3,
        timeout_s: float = 120.0,
        output_format: str = "jpeg",
    ) -> None:
        if model in RETIRED:
            raise ValueError(retired_message(model))
        if model not in MODELS:
            raise ValueError(f"unknown OpenAI image model {model!r}; choose one of {', '.join(MODELS)}")
        if output_format not in MODELS[model].output_formats:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
        self.model = model
        self.prices = prices if prices is not None else PriceTable()
        self.prices.price(model)  # an unpriced default model is a configuration error: raise now
        self.output_format = output_format
        # Models that refused a custom size in this process (custom_sizes == "try"): asked at standard sizes since.
        self._standard_only: set[str] = set()
        self._owns_client = client is None
        if client is None:
            # The library reads OPENAI_API_KEY and OPENAI_BASE_URL itself, and owns the retries (module docstring).
            try:
                client = openai.OpenAI(max_retries=max_retries, timeout=timeout_s)
            except openai.OpenAIError as exc:
                raise SceneRefused(
                    "The OpenAI scene provider needs an API key: set OPENAI_API_KEY for the web app and the workers.",
                    reason="auth",
                ) from exc
        # A client passed in keeps its own max_retries and timeout.
        self._client = client
        self._batches: OpenAIBatchClient | None = None

    def close(self) -> None:
        """Closes the HTTP client if this provider made it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # SceneProvider

    def generate(self, request: SceneRequest) -> SceneResult:
        """One scene for the request, or ProviderUnavailable (retry later) / SceneRefused (permanent)."""
        plan = self._prepare(request)
        estimate = self._plan_estimate(plan, request)
        cutout = _decoded_cutout(request.cutout_png)
        started = time.perf_counter()

        def build(size: Size | None) -> tuple[dict[str, typing.Any], _Canvas]:
            canvas = _Canvas.build(cutout, size or plan.size, plan.output, masked=plan.lock == "exact")
            return plan.arguments(canvas, self.output_format), canvas

        response, _, canvas = self._edit(plan.model, plan.size, plan.output, build)
        finishing = _Finishing.of(plan, canvas, estimate, self.output_format)
        return self._finish(finishing, self._answer(response), cutout, batch=False, started=started)

    def prepare_batch(self, request: SceneRequest, custom_id: str) -> tuple[BatchEdit, dict[str, typing.Any]]:
        """The scene as one edit of an OpenAI batch, and the JSON-ready context `finish` needs for its answer.

        The same plan and placed canvas as `generate`; the estimate is at the batch price. A model whose custom
        sizes are unconfirmed is asked at the standard size nearest the output's aspect: a batch line refused for
        its size could only be retried a day later. SceneRefused before anything is sent if the request is invalid.
        """
        plan = self._prepare(request, batch=True)
        estimate = self._plan_estimate(plan, request, batch=True)
        canvas = _Canvas.build(_decoded_cutout(request.cutout_png), plan.size, plan.output,
                               masked=plan.lock == "exact")
        edit = BatchEdit.from_edit_kwargs(custom_id, plan.arguments(canvas, self.output_format))
        return edit, _Finishing.of(plan, canvas, estimate, self.output_format).as_dict()

    def finish(self, context: typing.Mapping[str, typing.Any], image: bytes, usage_raw: dict[str, typing.Any],
               *, cutout_png: bytes, batch: bool) -> SceneResult:
        """The scene from a batch answer: `image` (the decoded bytes OpenAI returned) and its usage (OpenAI's shape),
        finished exactly as `generate` finishes a direct answer, priced at the batch price when `batch`.
        ProviderUnavailable when the image cannot be read (a direct call may do better)."""
        return self._finish(_Finishing.from_dict(context), _decode_answer(image, usage_raw),
                            _decoded_cutout(cutout_png), batch=batch)

    def batch_client(self) -> OpenAIBatchClient:
        """An OpenAIBatchClient on this provider's OpenAI client (the same key, address and retries), made once."""
        if self._batches is None:
            self._batches = OpenAIBatchClient(client=self._client)
        return self._batches

    def _finish(self, finishing: _Finishing, answer: _Answer, cutout: Image.Image, *, batch: bool,
                started: float | None = None) -> SceneResult:
        """The answer brought to the output size, the product laid back (exact), encoded, marked and priced."""
        image = answer.image
        if not _same_aspect(image.size, finishing.size):  # not what was asked: centre it on the frame we placed in
            image = cover(image, finishing.size)
        scene = _to_output(image, finishing.size, finishing.region, finishing.output)
        box = _output_box(finishing.size, finishing.region, finishing.box, image.size, finishing.output)
        if finishing.lock == "exact":
            scene = recomposite(scene, cutout, box)
            source_type = COMPOSITE_SOURCE
        else:
            source_type = GENERATED_SOURCE
        fmt = finishing.output_format
        data = encode(scene, fmt, quality=OUTPUT_QUALITY, source_type=source_type)
        cost = self._cost(finishing.model, answer.usage_raw, finishing.estimate_usd, batch=batch)
        width, height = finishing.output
        size = finishing.size
        log.info(
            "openai scene preset=%s model=%s lock=%s batch=%s size=%dx%d out=%dx%d cost_usd=%.4f estimate_usd=%.4f "
            "tokens_in=%d tokens_out=%d ms=%d", finishing.preset, finishing.model, finishing.lock, batch, *size,
            width, height, cost, finishing.estimate_usd,
            answer.usage.get("input_text_tokens", 0) + answer.usage.get("input_image_tokens", 0),
            answer.usage.get("output_tokens", 0), (time.perf_counter() - started) * 1000 if started else 0,
        )
        return SceneResult(
            data=data, content_type=CONTENT_TYPES[fmt], width=width, height=height, preset=finishing.preset,
            provider=self.name, model=finishing.model, cost_usd=cost, usage=answer.usage,
            estimate_usd=finishing.estimate_usd, size=f"{size[0]}x{size[1]}", placement=box, source_type=source_type,
            image=scene,
        )

    def estimate_cost(self, request: SceneRequest, *, batch: bool = False) -> float:
        """A conservative USD estimate of `generate(request)` (`batch`: of its batch edit), made before any call."""
        return self._plan_estimate(self._prepare(request, batch=batch), request, batch=batch)

    def _plan_estimate(self, plan: _Plan, request: SceneRequest, *, batch: bool = False) -> float:
        """The estimate of a planned scene: the placed canvas is the first input image, at the size asked; the
        figures recorded for this model, quality and size calibrate it when there are enough."""
        return self._estimate(plan.model, plan.quality, plan.size, len(plan.references) + 1, len(plan.prompt),
                              input_sizes=(plan.size,), calibration=request.calibration, batch=batch)

    def refine(
        self,
        *,
        image_png: bytes,
        instruction: str,
        mask_png: bytes | None = None,
        size: str = "auto",
        quality: str = "medium",
        model: str | None = None,
        shop_key: str = "",
        preset: str = "refine",
    ) -> SceneResult:
        """A new version of a scene from the merchant's instruction; with a mask, only its transparent area
        changes. `image_png` may be PNG, JPEG or WebP bytes (scenes are usually JPEG)."""
        model = model or self.model
        caps = _caps(model)
        instruction = (instruction or "").strip()
        if not instruction:
            raise _invalid("Say what to change in the scene: the instruction is empty.")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise _invalid(f"The instruction is {len(instruction)} characters; keep it under {MAX_INSTRUCTION_CHARS}.")
        _check_quality(model, caps, quality)
        try:
            dimensions = parse_size(size)
        except ValueError as exc:
            raise _invalid(f"The size cannot be used: {exc}.") from None
        if dimensions is not None and (problem := check_output_size(*dimensions)):
            raise _invalid(f"The size cannot be used: {problem}.")
        image_size = _check_input_image(image_png, what="The scene to refine")
        if mask_png is not None:
            _check_mask(mask_png, image_size)
        self._check_priced(model)
        ext, mime = sniff_image(image_png) or ("png", "image/png")
        kwargs: dict[str, typing.Any] = {
            "model": model,
            "image": [(f"scene.{ext}", image_png, mime)],
            "prompt": build_refine_prompt(instruction, masked=mask_png is not None),
            "quality": quality,
            "n": 1,
            **_format_options(self.output_format),
        }
        if mask_png is not None:
            kwargs["mask"] = ("mask.png", mask_png, "image/png")
        if shop_key:
            kwargs["safety_identifier"] = shop_key

        def build(asked: Size | None) -> tuple[dict[str, typing.Any], None]:
            return {**kwargs, "size": "auto" if asked is None else f"{asked[0]}x{asked[1]}"}, None

        # A scene's own size (any aspect, up to 4096 px) is asked as a size the model takes, then restored.
        wanted = None if dimensions is None else request_size(model, *dimensions, custom=model not in
                                                             self._standard_only)
        started = time.perf_counter()
        response, asked, _ = self._edit(model, wanted, dimensions, build)
        answer = self._answer(response)
        image = answer.image
        if dimensions is not None and image.size != dimensions:
            image = cover(image, dimensions)
        # Encoded by us, marked: the model redrew what it liked, the product included.
        data = encode(image, self.output_format, quality=OUTPUT_QUALITY, source_type=GENERATED_SOURCE)
        asked_size = "auto" if asked is None else f"{asked[0]}x{asked[1]}"
        estimate = self._estimate(model, quality, asked_size, 1, len(kwargs["prompt"]), input_sizes=(image.size,))
        cost = self._cost(model, answer.usage_raw, estimate)
        width, height = image.size
        log.info("openai refine model=%s size=%s out=%dx%d cost_usd=%.4f ms=%d", model, asked_size, width, height,
                 cost, (time.perf_counter() - started) * 1000)
        return SceneResult(
            data=data, content_type=CONTENT_TYPES[self.output_format], width=width, height=height, preset=preset,
            provider=self.name, model=model, cost_usd=cost, usage=answer.usage, size=asked_size,
            source_type=GENERATED_SOURCE, estimate_usd=estimate,
        )

    def _edit(
        self, model: str, size: Size | None, output: Size | None,
        build: Callable[[Size | None], tuple[dict[str, typing.Any], _T]],
    ) -> tuple[typing.Any, Size | None, _T]:
        """images.edit with the arguments `build` makes for `size`: (the response, the size asked, what `build`
        made). A model whose custom sizes are unconfirmed (2.6) that refuses one is asked once more at the
        standard size nearest the output's aspect, and at standard sizes from then on in this process."""
        with self._mapped_errors(model):
            while True:
                kwargs, made = build(size)
                try:
                    return self._client.images.edit(**kwargs), size, made
                except openai.BadRequestError as exc:
                    if size is None or output is None or MODELS[model].custom_sizes != "try":
                        raise
                    fallback = nearest_standard_size(*output)
                    if size == fallback or not _size_refused(exc):
                        raise
                    log.info("openai model=%s size=%dx%d refused; retrying at %dx%d", model, *size, *fallback)
                    self._standard_only.add(model)
                    size = fallback

    # internals

    def _prepare(self, request: SceneRequest, *, batch: bool = False) -> _Plan:
        """The validated plan for a scene request (`batch`: for a batch edit); SceneRefused before any call if
        invalid."""
        model = request.model or self.model
        caps = _caps(model)
        preset = request.preset
        if preset.product_lock not in PRODUCT_LOCKS:
            raise _invalid(f"Preset {preset.name!r} has product_lock {preset.product_lock!r}; use "
                           f"{' or '.join(PRODUCT_LOCKS)}.")
        if problem := check_output_size(preset.width, preset.height):
            raise _invalid(f"Preset {preset.name!r} cannot be made: {problem}. Change the preset's size.")
        _check_quality(model, caps, preset.quality)
        self._check_priced(model)

        _check_input_image(request.cutout_png, what="The product cutout", decode=False)
        room = caps.max_input_images - 1
        references = tuple(request.references)
        if len(references) > room:
            log.info("openai preset=%s references=%d capped=%d model=%s", preset.name, len(references), room, model)
            references = references[:room]
        images: list[tuple[str, bytes, str]] = []
        for number, reference in enumerate(references, start=1):
            _check_input_image(reference, what=f"Reference image {number}", decode=False)
            sniffed = sniff_image(reference)
            assert sniffed is not None  # _check_input_image refused anything that does not sniff
            ext, mime = sniffed
            images.append((f"reference-{number}.{ext}", reference, mime))

        text = ""
        if request.text_mode == "model":
            text = clean_text(request.text)
            if len(text) > MAX_TEXT_CHARS:
                raise _invalid(
                    f"The scene text is {len(text)} characters; the model renders at most {MAX_TEXT_CHARS} reliably. "
                    "Shorten it, or have the text drawn on as an overlay."
                )
        prompt = build_prompt(request.product, preset, text=text, references=len(references))
        prompt += "\n" + (_EXACT_PLACEMENT if preset.product_lock == "exact" else _MODEL_PLACEMENT)
        output = (preset.width, preset.height)
        # A batch cannot fall back when a custom size is refused: only confirmed custom sizes go in one.
        custom = model not in self._standard_only and (not batch or caps.custom_sizes == "yes")
        size = request_size(model, *output, custom=custom)
        return _Plan(model=model, preset=preset.name, lock=preset.product_lock, quality=preset.quality,
                     output=output, size=size, prompt=prompt, references=tuple(images), shop_key=request.shop_key)

    def _estimate(self, model: str, quality: str, size: str | Size, n_input_images: int, prompt_chars: int,
                  *, input_sizes: tuple[Size, ...] = (), calibration: Calibration | None = None,
                  batch: bool = False) -> float:
        try:
            return self.prices.estimate(model, quality, size, n_input_images=n_input_images,
                                        prompt_chars=prompt_chars, input_fidelity=None, input_sizes=input_sizes,
                                        calibration=calibration, batch=batch)
        except ValueError as exc:
            raise _invalid(f"The cost of this scene cannot be estimated, so it is not made: {exc}.") from None

    def _cost(self, model: str, usage_raw: dict[str, typing.Any], estimate: float | Callable[[], float],
              *, batch: bool = False) -> float:
        if usage_raw:
            return self.prices.cost(model, usage_raw, batch=batch)
        # Without usage we cannot measure the call; its conservative estimate is the next best record.
        return estimate() if callable(estimate) else estimate

    def _check_priced(self, model: str) -> None:
        try:
            self.prices.price(model)
        except ValueError as exc:
            raise _invalid(f"{model} has no price configured, so its cost cannot be tracked: {exc}.") from None

    def _answer(self, response: typing.Any) -> _Answer:
        data = response.data or []
        encoded = data[0].b64_json if data else None
        if not encoded:
            raise ProviderUnavailable("OpenAI answered without an image; the scene will be tried again.",
                                      reason="bad_response")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ProviderUnavailable("OpenAI answered with data that is not a readable image (not base64); the "
                                      "scene will be tried again.", reason="bad_response") from None
        usage_model = response.usage
        return _decode_answer(raw, usage_model.model_dump() if usage_model is not None else {})

    def _mapped_errors(self, model: str) -> OpenAIErrors:
        def model_not_found(said: str) -> str:
            # A model shut down (or not open to this account) since the settings were saved.
            hint = retired_message(model) if model in RETIRED else (
                f"Choose another model in the settings ({', '.join(m for m in MODELS if m != model)}).")
            return f"OpenAI does not offer {model or 'this model'} to this account: {said} {hint}"

        return OpenAIErrors(self._secret(), doing="make this scene", model_not_found=model_not_found)

    def _secret(self) -> str:
        key = getattr(self._client, "api_key", "")
        return key if isinstance(key, str) else ""


_EXACT_PLACEMENT = (
    "Composition: the first input image is the whole frame, with the product already standing at its final "
    "position and size on a transparent canvas. Paint the scene into the transparent area around it: the surface "
    "it stands on, its contact shadow and the light falling on the setting. Do not move, resize, redraw, crop or "
    "cover the product; the masked area is the product and stays exactly as it is."
)
_MODEL_PLACEMENT = (
    "Composition: the first input image is the whole frame, with the product already standing at its final "
    "position and size on a transparent canvas. Paint the scene into the transparent area around it and keep the "
    "product where it stands, at the same size; you may render the product in the scene's light and style, but "
    "keep its shape, colours, label text and logo recognisably the same."
)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A validated scene request: everything but the placed canvas, which depends on the size finally asked."""

    model: str
    preset: str
    lock: str
    quality: str
    output: Size
    size: Size
    prompt: str
    references: tuple[tuple[str, bytes, str], ...]
    shop_key: str

    def arguments(self, canvas: _Canvas, output_format: str) -> dict[str, typing.Any]:
        """The images.edit arguments: the placed product first, the references after it; the mask if any."""
        kwargs: dict[str, typing.Any] = {
            "model": self.model,
            "image": [("scene.png", canvas.image_png, "image/png"), *self.references],
            "prompt": self.prompt,
            "size": f"{canvas.size[0]}x{canvas.size[1]}",
            "quality": self.quality,
            "n": 1,
            **_format_options(output_format),
        }
        if canvas.mask_png is not None:
            kwargs["mask"] = ("mask.png", canvas.mask_png, "image/png")
        if self.shop_key:
            kwargs["safety_identifier"] = self.shop_key  # already an opaque hash of the shop, never a domain
        return kwargs


@dataclasses.dataclass(frozen=True)
class _Canvas:
    """The first image of an edit: the product placed at the request size inside the output's region."""

    size: Size
    region: Box  # the part of the request frame that becomes the output (its aspect)
    box: Box  # where the trimmed product stands, in request coordinates
    image_png: bytes
    mask_png: bytes | None

    @classmethod
    def build(cls, cutout: Image.Image, size: Size, output: Size, *, masked: bool) -> _Canvas:
        region = output_region(size, output)
        left, top, right, bottom = region
        placed, (b_left, b_top, b_right, b_bottom) = place(cutout, (right - left, bottom - top), SCENE_LAYOUT)
        if (right - left, bottom - top) != size:
            framed = Image.new("RGBA", size, (0, 0, 0, 0))
            framed.paste(placed, (left, top))
            placed = framed
        box = (b_left + left, b_top + top, b_right + left, b_bottom + top)
        # Both only travel to OpenAI once: the fastest compression, for bodies a little larger.
        mask = encode(edit_mask(placed), "png", png_level=1) if masked else None
        if mask is not None and len(mask) > MAX_MASK_BYTES:
            raise _invalid(f"The mask for this scene is {len(mask) / 1e6:.1f} MB; OpenAI takes masks under 4 MB.")
        return cls(size=size, region=region, box=box, image_png=encode(placed, "png", png_level=1), mask_png=mask)



@dataclasses.dataclass(frozen=True)
class _Finishing:
    """What turns an answer into the scene: the frame the product was placed in, the output, the estimate. JSON
    round-trips it (`as_dict`, `from_dict`), so a batch answer read a day later is finished like a direct one."""

    model: str
    preset: str
    lock: str
    output: Size
    size: Size  # asked of the model
    region: Box  # the part of the request frame that becomes the output
    box: Box  # where the trimmed product stands, in request coordinates
    estimate_usd: float
    output_format: str

    @classmethod
    def of(cls, plan: _Plan, canvas: _Canvas, estimate_usd: float, output_format: str) -> _Finishing:
        return cls(model=plan.model, preset=plan.preset, lock=plan.lock, output=plan.output, size=canvas.size,
                   region=canvas.region, box=canvas.box, estimate_usd=estimate_usd, output_format=output_format)

    def as_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: typing.Mapping[str, typing.Any]) -> _Finishing:
        def pair(value: typing.Any) -> Size:
            first, second = value
            return int(first), int(second)

        def box(value: typing.Any) -> Box:
            left, top, right, bottom = value
            return int(left), int(top), int(right), int(bottom)

        return cls(model=str(data["model"]), preset=str(data["preset"]), lock=str(data["lock"]),
                   output=pair(data["output"]), size=pair(data["size"]), region=box(data["region"]),
                   box=box(data["box"]), estimate_usd=float(data["estimate_usd"]),
                   output_format=str(data["output_format"]))


def _output_box(size: Size, region: Box, placed: Box, answer: Size, output: Size) -> Box:
    """Where the product stands in the output, from its box on the canvas of `size` (the answer may differ)."""
    sx, sy = answer[0] / size[0], answer[1] / size[1]
    frame = _scaled(region, sx, sy)
    ox, oy = output[0] / (frame[2] - frame[0]), output[1] / (frame[3] - frame[1])
    left, top, right, bottom = _scaled(placed, sx, sy)
    box = (round((left - frame[0]) * ox), round((top - frame[1]) * oy),
           round((right - frame[0]) * ox), round((bottom - frame[1]) * oy))
    width, height = output
    return (min(max(box[0], 0), width - 1), min(max(box[1], 0), height - 1),
            min(max(box[2], box[0] + 1), width), min(max(box[3], box[1] + 1), height))


@dataclasses.dataclass(frozen=True)
class _Answer:
    raw: bytes
    format: str
    image: Image.Image  # RGB
    usage_raw: dict[str, typing.Any]
    usage: dict[str, int]


def _decode_answer(raw: bytes, usage_raw: dict[str, typing.Any]) -> _Answer:
    """The image OpenAI returned, decoded (RGB), with its usage; ProviderUnavailable if it cannot be read."""
    try:
        with Image.open(io.BytesIO(raw), formats=tuple(_FORMAT_KEYS)) as decoded:
            decoded.load()
            fmt = _FORMAT_KEYS[decoded.format or ""]
            image = decoded.convert("RGB")
    except (ValueError, OSError, KeyError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ProviderUnavailable(
            f"OpenAI answered with data that is not a readable image ({type(exc).__name__}); "
            "the scene will be tried again.",
            reason="bad_response",
        ) from None
    return _Answer(raw=raw, format=fmt, image=image, usage_raw=usage_raw, usage=flat_usage(usage_raw))


def _scaled(box: tuple[float, float, float, float], sx: float, sy: float) -> tuple[float, float, float, float]:
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def _to_output(answer: Image.Image, size: Size, region_asked: Box, output: Size) -> Image.Image:
    """The answer's output region resized to exactly `output` (the same aspect: nothing stretched); `size` and
    `region_asked` are the request frame and its output region."""
    region = _scaled(region_asked, answer.size[0] / size[0], answer.size[1] / size[1])
    if answer.size == output and region == (0, 0, *output):
        return answer
    # Bicubic: the answer is within a few tenths of the output's scale, where it looks as good as Lanczos and
    # costs less; in exact scenes the product is laid back from the cutout afterwards anyway.
    return answer.resize(output, Image.Resampling.BICUBIC, box=region, reducing_gap=2.0)


def _same_aspect(a: Size, b: Size) -> bool:
    return abs(a[0] * b[1] - a[1] * b[0]) <= 0.01 * a[0] * b[1]


@functools.lru_cache(maxsize=2)
def _decoded_cutout(data: bytes) -> Image.Image:
    """The product cutout as an RGBA image trimmed to its visible pixels; SceneRefused if it cannot be.

    Kept for the few renders in flight: a render's scenes share one cutout, decoded once (read, never changed)."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "WEBP", "JPEG")) as decoded:
            rgba = decoded.convert("RGBA")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise _invalid("The product cutout cannot be read as an image.") from None
    try:
        return trim(rgba)
    except ValueError:  # EmptyCutout
        raise _invalid("The product cutout has no visible pixels: there is no product to place.") from None


def _format_options(output_format: str) -> dict[str, typing.Any]:
    """output_format, and output_compression where OpenAI takes it (jpeg, webp): a real value, not its 100."""
    if output_format in ("jpeg", "webp"):
        return {"output_format": output_format, "output_compression": OUTPUT_QUALITY}
    return {"output_format": output_format}


def _size_refused(exc: openai.BadRequestError) -> bool:
    """Whether OpenAI refused the request for its size (param `size`, or a message about it)."""
    if getattr(exc, "param", None) == "size":
        return True
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return isinstance(message, str) and bool(re.search(r"\bsize\b", message, re.IGNORECASE))


def _caps(model: str) -> ModelCaps:
    caps = MODELS.get(model)
    if caps is None:
        if model in RETIRED:
            raise _invalid(retired_message(model))
        raise _invalid(f"The OpenAI image model {model!r} is not offered; choose one of {', '.join(MODELS)}.")
    return caps


def _check_quality(model: str, caps: ModelCaps, quality: str) -> None:
    if quality not in caps.qualities:
        raise _invalid(f"{model} makes quality {', '.join(caps.qualities)}, not {quality!r}.")


def _check_input_image(data: bytes, *, what: str, decode: bool = True) -> tuple[int, int]:
    """Size (0, 0 when not decoded) of an input image; SceneRefused unless PNG/JPEG/WebP under 50 MB."""
    if sniff_image(data) is None:
        raise _invalid(f"{what} is not a PNG, JPEG or WebP image.")
    if len(data) > MAX_INPUT_IMAGE_BYTES:
        raise _invalid(f"{what} is {len(data) / 1e6:.0f} MB; OpenAI takes images under 50 MB.")
    if not decode:
        return (0, 0)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP")) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise _invalid(f"{what} cannot be read as an image.") from None


def _check_mask(mask: bytes, image_size: tuple[int, int]) -> None:
    """SceneRefused unless the mask is a PNG with alpha, the image's size, under 4 MB, with something to edit."""
    if len(mask) > MAX_MASK_BYTES:
        raise _invalid(f"The mask is {len(mask) / 1e6:.1f} MB; OpenAI takes masks under 4 MB.")
    if not mask.startswith(b"\x89PNG\r\n\x1a\n"):
        raise _invalid("The mask must be a PNG image with an alpha channel.")
    try:
        with Image.open(io.BytesIO(mask), formats=("PNG",)) as image:
            image.load()
            size, bands = image.size, image.getbands()
            lowest_alpha = image.getchannel("A").getextrema()[0] if "A" in bands else None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise _invalid("The mask cannot be read as a PNG image.") from None
    if lowest_alpha is None:
        raise _invalid("The mask must have an alpha channel: its transparent area marks what to change.")
    if size != image_size:
        raise _invalid(f"The mask is {size[0]}x{size[1]} but the scene is {image_size[0]}x{image_size[1]}; "
                       "they must be the same size.")
    if lowest_alpha != 0:
        raise _invalid("The mask has no fully transparent area, so nothing would change: mark the area to edit.")


def _invalid(message: str) -> SceneRefused:
    return SceneRefused(message, reason="invalid_request")
