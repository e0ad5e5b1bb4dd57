"""The GPT Image scene provider: `images.edit` with the product cutout, the merchant's references and a prompt.

Retries are the openai library's own (openai-python `src/openai/_base_client.py`, as installed at 3.57):
`SyncAPIClient.request` retries up to `max_retries` times when `_should_retry` says so (HTTP 408, 409, 429 and
any 5xx, unless the server sends `x-should-retry: false`) and on timeouts and connection errors. Before each retry
`_calculate_retry_timeout` sleeps what the server asks in `retry-after-ms` or `retry-after` (seconds or an HTTP
date) when that is between 0 and 120 s; a longer Retry-After stops the retries; otherwise it backs off
exponentially, 0.5 s * 2^n capped at 8 s, minus up to 25 % jitter. Our multipart bodies are bytes, so the library
can replay them (`_RequestBodyReplay`). This module adds no retry loop of its own: what is still failing after the
library's retries becomes ProviderUnavailable, and the render job retries later with its own bounded backoff.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import logging
import re
import time
import typing
from collections.abc import Callable

import openai
from openai.types import ImageModel
from PIL import Image

from catalog_service.imaging.encode import CONTENT_TYPES, encode
from catalog_service.scenes.base import ProviderUnavailable, SceneRefused, SceneRequest, SceneResult
from catalog_service.scenes.pricing import PriceTable
from catalog_service.scenes.prompts import (
    MAX_INSTRUCTION_CHARS,
    MAX_TEXT_CHARS,
    build_prompt,
    build_refine_prompt,
    clean_text,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-image-2"
STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
"""Sizes every GPT Image model makes (besides `auto`)."""
QUALITIES = ("low", "medium", "high", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MAX_INPUT_IMAGES = 16
"""Input images per edit: the cutout plus up to 15 references."""
MAX_INPUT_IMAGE_BYTES = 50 * 1024 * 1024
"""Largest input image OpenAI accepts, in bytes."""
MAX_MASK_BYTES = 4 * 1024 * 1024
"""Largest mask OpenAI accepts, in bytes."""
FLEX_MAX_SIDE = 3840
"""Longest side, in px, of a custom size on the models that take one."""
FLEX_MAX_PIXELS = 3840 * 2160
"""Most pixels of a custom size on the models that take one."""
FLEX_MAX_RATIO = 3
"""Custom sizes keep their aspect ratio between 1:3 and 3:1."""
FLEX_MULTIPLE = 16
"""Custom widths and heights are multiples of this, in px."""


@dataclasses.dataclass(frozen=True)
class ModelCaps:
    """What one GPT Image model accepts, so we send each model only the options it takes."""

    input_fidelities: tuple[str, ...] = ()  # values it accepts; empty: leave input_fidelity out
    input_fidelity: str | None = None  # the value we send (the most faithful one it accepts)
    max_input_images: int = MAX_INPUT_IMAGES
    custom_sizes: bool = False  # WIDTHxHEIGHT in multiples of 16 up to 3840x2160, besides the standard sizes
    qualities: tuple[str, ...] = QUALITIES
    output_formats: tuple[str, ...] = OUTPUT_FORMATS


_GPT_IMAGE_2 = ModelCaps(custom_sizes=True)

# From openai-python's image_edit_params.py and API-NOTES.md: leave input_fidelity out for gpt-image-2 and newer;
# gpt-image-1.5 takes high (and low); gpt-image-1-mini takes only low. gpt-image-1 was shut down on 2026-10-23 and
# is deliberately absent; so are the retired DALL-E models and the moving alias chatgpt-image-latest.
MODELS: dict[str, ModelCaps] = {
    "gpt-image-2": _GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": _GPT_IMAGE_2,
    "gpt-image-2.5-sunburst": _GPT_IMAGE_2,
    "gpt-image-2.5-sunburst-2026-09-08": _GPT_IMAGE_2,
    "gpt-image-2.5-flare": _GPT_IMAGE_2,
    "gpt-image-2.5-flare-2026-09-08": _GPT_IMAGE_2,
    "gpt-image-2.6-sunburst": _GPT_IMAGE_2,
    "gpt-image-2.6-flare": _GPT_IMAGE_2,
    "gpt-image-1.5": ModelCaps(input_fidelities=("high", "low"), input_fidelity="high"),
    "gpt-image-1-mini": ModelCaps(input_fidelities=("low",), input_fidelity="low"),
}

LIBRARY_MODELS = frozenset(typing.get_args(ImageModel))
"""The model names the installed openai library knows."""
_UNKNOWN = sorted(set(MODELS) - LIBRARY_MODELS)
if _UNKNOWN:  # the library pin and the table have drifted apart: fail at startup, not at the first render
    raise ImportError(
        f"catalog_service.scenes.openai_images lists models the installed openai {openai.__version__} does not "
        f"know: {', '.join(_UNKNOWN)}; update MODELS or the openai pin"
    )

# Error codes and words with which OpenAI says its safety system refused the request.
MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
_MODERATION_WORDS = re.compile(r"safety system|content policy|moderation", re.IGNORECASE)
_KEY_LIKE = re.compile(r"\b(sk|sess|rk)-[A-Za-z0-9_\-*.]{3,}")

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
    """Why `model` cannot make a `width`x`height` image, in words for the merchant; None when it can."""
    size = f"{width}x{height}"
    if size in STANDARD_SIZES:
        return None
    if not MODELS[model].custom_sizes:
        return f"{model} makes only {', '.join(STANDARD_SIZES)} (or auto), not {size}"
    problems = []
    if width <= 0 or height <= 0 or width % FLEX_MULTIPLE or height % FLEX_MULTIPLE:
        problems.append(f"width and height must be multiples of {FLEX_MULTIPLE} px")
    if max(width, height) > FLEX_MAX_SIDE or width * height > FLEX_MAX_PIXELS:
        problems.append("the largest size is 3840x2160 (or 2160x3840)")
    if min(width, height) > 0 and max(width, height) > FLEX_MAX_RATIO * min(width, height):
        problems.append("the aspect ratio must be between 1:3 and 3:1")
    if problems:
        return f"{model} cannot make {size}: {'; '.join(problems)}"
    return None


class OpenAIProvider:
    """Scenes from GPT Image: the product cutout first, the merchant's references after it, a product prompt."""

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
        if model not in MODELS:
            raise ValueError(f"unknown OpenAI image model {model!r}; choose one of {', '.join(MODELS)}")
        if output_format not in MODELS[model].output_formats:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
        self.model = model
        self.prices = prices if prices is not None else PriceTable()
        self.prices.price(model)  # an unpriced default model is a configuration error: raise now
        self.output_format = output_format
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
        call = self._prepare(request)
        started = time.perf_counter()
        with self._mapped_errors():
            response = self._client.images.edit(**call.kwargs)
        return self._result(response, model=call.model, preset=request.preset.name, started=started,
                            estimate=lambda: self._estimate(call, request.preset.quality,
                                                            (request.preset.width, request.preset.height)))

    def estimate_cost(self, request: SceneRequest) -> float:
        """A conservative USD estimate of `generate(request)`, made before any call (for budgets)."""
        call = self._prepare(request)
        return self._estimate(call, request.preset.quality, (request.preset.width, request.preset.height))

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
        if dimensions is not None and (problem := check_size(model, *dimensions)):
            raise _invalid(f"The size cannot be used: {problem}.")
        image_size = _check_input_image(image_png, what="The scene to refine")
        ext, mime = sniff_image(image_png) or ("png", "image/png")
        kwargs: dict[str, typing.Any] = {
            "model": model,
            "image": [(f"scene.{ext}", image_png, mime)],
            "prompt": build_refine_prompt(instruction, masked=mask_png is not None),
            "size": size,
            "quality": quality,
            "output_format": self.output_format,
            "n": 1,
        }
        if mask_png is not None:
            _check_mask(mask_png, image_size)
            kwargs["mask"] = ("mask.png", mask_png, "image/png")
        if caps.input_fidelity:
            kwargs["input_fidelity"] = caps.input_fidelity
        if shop_key:
            kwargs["safety_identifier"] = shop_key
        self._check_priced(model)
        call = _Call(model=model, images=kwargs["image"], kwargs=kwargs)
        started = time.perf_counter()
        with self._mapped_errors():
            response = self._client.images.edit(**kwargs)
        return self._result(response, model=model, preset=preset, started=started,
                            estimate=lambda: self._estimate(call, quality, size))

    # internals

    def _prepare(self, request: SceneRequest) -> _Call:
        """The validated images.edit arguments for a scene request; SceneRefused before any call if invalid."""
        model = request.model or self.model
        caps = _caps(model)
        preset = request.preset
        if problem := check_size(model, preset.width, preset.height):
            raise _invalid(f"Preset {preset.name!r} cannot be made: {problem}. Change the preset's size.")
        _check_quality(model, caps, preset.quality)
        self._check_priced(model)

        cutout = request.cutout_png
        _check_input_image(cutout, what="The product cutout", decode=False)
        cutout_ext, cutout_mime = sniff_image(cutout) or ("png", "image/png")
        images: list[tuple[str, bytes, str]] = [(f"cutout.{cutout_ext}", cutout, cutout_mime)]
        room = caps.max_input_images - 1
        references = tuple(request.references)
        if len(references) > room:
            log.info("openai preset=%s references=%d capped=%d model=%s", preset.name, len(references), room, model)
            references = references[:room]
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
        kwargs: dict[str, typing.Any] = {
            "model": model,
            "image": images,
            "prompt": build_prompt(request.product, preset, text=text, references=len(references)),
            "size": f"{preset.width}x{preset.height}",
            "quality": preset.quality,
            "output_format": self.output_format,
            "n": 1,
        }
        if caps.input_fidelity:
            kwargs["input_fidelity"] = caps.input_fidelity
        if request.shop_key:
            kwargs["safety_identifier"] = request.shop_key  # already an opaque hash of the shop, never a domain
        return _Call(model=model, images=images, kwargs=kwargs)

    def _estimate(self, call: _Call, quality: str, size: str | tuple[int, int]) -> float:
        return self.prices.estimate(
            call.model, quality, size, n_input_images=len(call.images), prompt_chars=len(call.kwargs["prompt"]),
            input_fidelity=MODELS[call.model].input_fidelity,
        )

    def _check_priced(self, model: str) -> None:
        try:
            self.prices.price(model)
        except ValueError as exc:
            raise _invalid(f"{model} has no price configured, so its cost cannot be tracked: {exc}.") from None

    def _result(
        self, response: typing.Any, *, model: str, preset: str, started: float, estimate: Callable[[], float]
    ) -> SceneResult:
        data = response.data or []
        encoded = data[0].b64_json if data else None
        if not encoded:
            raise ProviderUnavailable("OpenAI answered without an image; the scene will be tried again.",
                                      reason="bad_response")
        try:
            raw = base64.b64decode(encoded, validate=True)
            with Image.open(io.BytesIO(raw), formats=tuple(_FORMAT_KEYS)) as image:
                image.load()
                fmt, (width, height) = _FORMAT_KEYS[image.format or ""], image.size
        except (binascii.Error, ValueError, OSError, KeyError, Image.DecompressionBombError, SyntaxError) as exc:
            raise ProviderUnavailable(
                f"OpenAI answered with data that is not a readable image ({type(exc).__name__}); "
                "the scene will be tried again.",
                reason="bad_response",
            ) from None
        usage_model = response.usage
        usage_raw = usage_model.model_dump() if usage_model is not None else {}
        usage = _flat_usage(usage_raw)
        # Without usage we cannot measure the call; its conservative estimate is the next best record.
        cost = self.prices.cost(model, usage_raw) if usage_raw else estimate()
        log.info(
            "openai scene preset=%s model=%s size=%dx%d cost_usd=%.4f tokens_in=%s tokens_out=%s ms=%d",
            preset, model, width, height, cost, usage.get("input_text_tokens", 0) + usage.get("input_image_tokens", 0),
            usage.get("output_tokens", 0), (time.perf_counter() - started) * 1000,
        )
        return SceneResult(
            data=raw, content_type=CONTENT_TYPES[fmt], width=width, height=height, preset=preset,
            provider=self.name, model=model, cost_usd=cost, usage=usage,
        )

    def _mapped_errors(self) -> _ErrorMap:
        return _ErrorMap(self._secret())

    def _secret(self) -> str:
        key = getattr(self._client, "api_key", "")
        return key if isinstance(key, str) else ""


@dataclasses.dataclass(frozen=True)
class _Call:
    model: str
    images: list[tuple[str, bytes, str]]
    kwargs: dict[str, typing.Any]


class _ErrorMap:
    """Maps the openai library's errors (after its retries) to ours, once, without ever echoing the API key."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, openai.OpenAIError):
            return None
        # `from None`: the library's own exception text can quote the key ("Incorrect API key provided: ..."),
        # and a chained traceback would carry it into the job's logs.
        raise self._map(exc) from None

    def _map(self, exc: openai.OpenAIError) -> Exception:
        said = self._said(exc)
        if isinstance(exc, openai.APITimeoutError):
            return ProviderUnavailable("OpenAI did not answer in time, even after retries; the scene will be tried "
                                       "again later.", reason="timeout")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnavailable("Could not connect to OpenAI, even after retries; the scene will be tried "
                                       "again later.", reason="connection")
        if isinstance(exc, openai.RateLimitError):
            if getattr(exc, "code", None) == "insufficient_quota":
                return SceneRefused(f"The OpenAI account has run out of credit: {said} Add credit or raise the "
                                    "limit in the OpenAI dashboard, then regenerate.", reason="quota")
            return ProviderUnavailable(f"OpenAI is rate-limiting this account and still was after retries: {said} "
                                       "The scene will be tried again later.", reason="rate_limited")
        if isinstance(exc, openai.AuthenticationError):
            return SceneRefused("The OpenAI API key was refused (HTTP 401): check OPENAI_API_KEY on the server.",
                                reason="auth")
        if isinstance(exc, openai.PermissionDeniedError):
            return SceneRefused(f"The OpenAI API key was refused for this request (HTTP 403): {said}", reason="auth")
        if isinstance(exc, openai.BadRequestError) and self._is_moderation(exc, said):
            return SceneRefused(f"OpenAI refused this scene under its content policy: {said}",
                                reason="content_policy")
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                return ProviderUnavailable(f"OpenAI failed with HTTP {exc.status_code} even after retries: {said} "
                                           "The scene will be tried again later.", reason="upstream")
            return SceneRefused(f"OpenAI refused the request as invalid (HTTP {exc.status_code}): {said}",
                                reason="invalid_request")
        return ProviderUnavailable(f"OpenAI's answer could not be read ({type(exc).__name__}); the scene will be "
                                   "tried again later.", reason="bad_response")

    @staticmethod
    def _is_moderation(exc: openai.BadRequestError, said: str) -> bool:
        return getattr(exc, "code", None) in MODERATION_CODES or bool(_MODERATION_WORDS.search(said))

    def _said(self, exc: openai.OpenAIError) -> str:
        """OpenAI's own message for the error, with anything key-like removed."""
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            message = "no details given."
        if self._secret:
            message = message.replace(self._secret, "[redacted]")
        message = _KEY_LIKE.sub("[redacted]", message.strip())
        return message if message.endswith((".", "!", "?")) else message + "."


def _caps(model: str) -> ModelCaps:
    caps = MODELS.get(model)
    if caps is None:
        retired = " (gpt-image-1 was shut down on 2026-10-23)" if model == "gpt-image-1" else ""
        raise _invalid(f"The OpenAI image model {model!r} is not offered{retired}; choose one of {', '.join(MODELS)}.")
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


def _flat_usage(usage: dict[str, typing.Any]) -> dict[str, int]:
    if not usage:
        return {}
    details = usage.get("input_tokens_details") or {}
    return {
        "input_text_tokens": int(details.get("text_tokens") or 0),
        "input_image_tokens": int(details.get("image_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "total_tokens": int(usage.get("total_tokens") or 0),
    }


def _invalid(message: str) -> SceneRefused:
    return SceneRefused(message, reason="invalid_request")
