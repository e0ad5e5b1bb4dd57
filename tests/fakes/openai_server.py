"""A fake OpenAI Images API on loopback, written from the public API reference, for tests of the real client.

    with FakeOpenAI() as fake:
        with openai.OpenAI(api_key="sk-test", base_url=fake.url + "/v1", max_retries=2) as client:
            ...
        fake.requests[0].fields["model"]

Endpoints: `POST /v1/images/edits` (multipart/form-data: one or more `image[]` parts, optional `mask`, the
other parameters as plain fields) and `POST /v1/images/generations` (JSON). A success answers like the API:
`{"created", "data": [{"b64_json"}], "usage": {...}, "size", "quality", "output_format", ...}` with a real
image of the requested size and token counts derived from the request (output tokens by quality and the frame's
shape, as OpenAI's gpt-image-2 examples give them; input tokens per input image). An edit answers like a real
edit of the first image: a new scene (a gradient with a little grain) where the mask is transparent, and the first
image's own pixels where the mask is opaque (without a mask: where the first image is opaque). `tamper("recolour" |
"move" | "warp")` makes the next answer(s) alter that product region the way a model that redraws it does.
A generation answers a flat colour with a dark marker square in the top-left corner. Requests are checked the way
the API checks them (current models, shut-down ones refused with 404 model_not_found, sizes per model: custom
sizes on 2.6 as `custom_sizes_2_6` says, qualities, output_compression, image count, mask shape) and refused
with OpenAI-shaped errors.

Every request is recorded (`fake.requests`). Scripted answers are queued and used one per call, in order:
`fail(status=429, retry_after=1)`, `fail(status=500)`, `refuse()`, `unauthorized()`, `succeed(usage=...)`,
`slow(seconds)`. `latency_s` delays every call. Multipart bodies are parsed with the stdlib `email` parser.
"""

from __future__ import annotations

import base64
import dataclasses
import email.parser
import email.policy
import hashlib
import io
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .loopback import LoopbackFake

MODERATION_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your request may contain content that is not "
    "allowed by our safety system."
)

# What the fake accepts, from the API reference (openai-python src/openai/types/image_edit_params.py, at 3.63) and
# ../shared/API-NOTES.md (December 2026): gpt-image-2 and its snapshot, 2.5 and 2.6 (flare, sunburst) are offered;
# gpt-image-1, gpt-image-1.5 (and its snapshot), gpt-image-1-mini, chatgpt-image-latest and DALL-E are shut down.
GPT_IMAGE_2 = ("gpt-image-2", "gpt-image-2-2026-04-21")
GPT_IMAGE_2_5 = (
    "gpt-image-2.5-sunburst", "gpt-image-2.5-sunburst-2026-09-08",
    "gpt-image-2.5-flare", "gpt-image-2.5-flare-2026-09-08",
)
GPT_IMAGE_2_6 = ("gpt-image-2.6-sunburst", "gpt-image-2.6-flare")
GPT_IMAGE_2_FAMILY = (*GPT_IMAGE_2, *GPT_IMAGE_2_5, *GPT_IMAGE_2_6)
KNOWN_MODELS = GPT_IMAGE_2_FAMILY
SHUT_DOWN_MODELS = (
    "gpt-image-1", "gpt-image-1.5", "gpt-image-1.5-2025-12-16", "gpt-image-1-mini", "chatgpt-image-latest",
    "dall-e-2", "dall-e-3",
)
INPUT_FIDELITY: dict[str, tuple[str, ...]] = {}  # no current model takes input_fidelity: "omit this parameter"
STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
QUALITIES = ("low", "medium", "high", "auto")
EXTRA_QUALITIES = {model: ("xhigh", "max") for model in (*GPT_IMAGE_2_5, *GPT_IMAGE_2_6)}
OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024
MAX_PROMPT_CHARS = 32_000
CUSTOM_MIN_PIXELS = 655_360
"""Fewest pixels of a custom size (reported; the API says "the model's current pixel and edge limits")."""
CUSTOM_MAX_PIXELS = 3840 * 2160
CUSTOM_MAX_SIDE = 3840

# Output tokens by quality and the shape of the frame, from OpenAI's gpt-image-2 examples (API-NOTES: they do not
# grow with area): square frames, and the 3:2 / 2:3 ones. xhigh and max have no published figure: the fake's are
# made up, above high, so tests can see them priced.
OUTPUT_TOKENS = {
    "square": {"low": 200, "medium": 1767, "high": 7033, "xhigh": 10_550, "max": 14_066},
    "oblong": {"low": 167, "medium": 1367, "high": 5500, "xhigh": 8250, "max": 11_000},
}
AUTO_QUALITY = "medium"
# Input image tokens: a base plus a per-512px-tile amount, and the flat amount of reading at high fidelity, which
# every gpt-image-2-family model does.
INPUT_IMAGE_BASE_TOKENS = 65
INPUT_IMAGE_TILE_TOKENS = 129
HIGH_FIDELITY_TOKENS = {"square": 4160, "other": 6240}
TAMPERS = ("recolour", "move", "warp")
"""What `FakeOpenAI.tamper` can do to the product in an edit's answer."""


@dataclasses.dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request."""

    field: str
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclasses.dataclass
class RecordedRequest:
    """What one call sent, and what the fake answered."""

    method: str
    path: str
    headers: dict[str, str]
    fields: dict[str, Any]
    images: list[UploadedFile]
    mask: UploadedFile | None
    started: float
    status: int = 0
    usage: dict[str, Any] | None = None
    response_size: tuple[int, int] | None = None

    @property
    def has_authorization(self) -> bool:
        return bool(self.headers.get("authorization"))

    @property
    def retry_count(self) -> int:
        """The client's own count of retries (openai-python sends x-stainless-retry-count)."""
        return int(self.headers.get("x-stainless-retry-count", "0") or 0)


@dataclasses.dataclass(frozen=True)
class Scripted:
    """One scripted answer. Status 200 without a body: a generated image answer (`usage` may fix its numbers);
    with a body: that body, as is."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    usage: dict[str, Any] | None = None
    image_size: tuple[int, int] | None = None


class _ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


class FakeOpenAI(LoopbackFake):
    """The fake server. `start()`/`stop()` or a `with` block; `url` is `http://127.0.0.1:<port>`."""

    name = "fake OpenAI"

    def __init__(self, *, latency_s: float = 0.0, image_size: tuple[int, int] | None = None,
                 custom_sizes_2_6: bool = True, usage_drift: tuple[float, float] = (1.0, 1.0)) -> None:
        super().__init__()
        # (output, input image) token factors: a model whose real usage departs from the published figures, as
        # models do between snapshots, for estimates that must learn it from recorded usage.
        self.usage_drift = usage_drift
        self.handler = _Handler
        self.latency_s = latency_s
        self.image_size = image_size  # answer with images of this size instead of the requested one
        # Whether gpt-image-2.6 takes WIDTHxHEIGHT sizes: the library does not confirm it, so tests try both.
        self.custom_sizes_2_6 = custom_sizes_2_6
        self.requests: list[RecordedRequest] = []
        # What `GET /v1/models` lists, in the API's model object shape; a test sets or edits it ("shutdown_date":
        # "YYYY-MM-DD" announces a shutdown, as OpenAI's list does).
        self.models: list[dict[str, Any]] = [
            {"id": model, "object": "model", "created": 1_776_729_600, "owned_by": "system"} for model in KNOWN_MODELS]
        self._script: deque[Scripted] = deque()
        self._tampers: deque[str] = deque()
        self._stopping = threading.Event()

    # lifecycle

    def _before_start(self) -> None:
        self._stopping.clear()

    def _before_stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on scripted latency

    # scripting

    def respond(self, scripted: Scripted, *, times: int = 1) -> None:
        """Queue `scripted` for the next `times` calls (after anything already queued)."""
        with self._lock:
            self._script.extend([scripted] * times)

    def succeed(self, *, usage: dict[str, Any] | None = None, delay_s: float = 0.0,
                image_size: tuple[int, int] | None = None, times: int = 1) -> None:
        """A normal image answer, optionally with fixed `usage` numbers, after `delay_s`."""
        self.respond(Scripted(usage=usage, delay_s=delay_s, image_size=image_size), times=times)

    def slow(self, seconds: float, *, times: int = 1) -> None:
        """A normal answer that takes `seconds`."""
        self.succeed(delay_s=seconds, times=times)

    def fail(self, status: int = 500, *, retry_after: float | str | None = None, retry_after_ms: float | None = None,
             message: str | None = None, code: str | None = None, error_type: str | None = None,
             headers: dict[str, str] | None = None, delay_s: float = 0.0, times: int = 1) -> None:
        """An error answer with an OpenAI-shaped body; `retry_after`/`retry_after_ms` set those headers."""
        defaults = _ERROR_DEFAULTS.get(status, ("The server could not handle the request.", "server_error", None))
        body = {"error": {
            "message": message if message is not None else defaults[0],
            "type": error_type or defaults[1],
            "param": None,
            "code": code if code is not None else defaults[2],
        }}
        extra = dict(headers or {})
        if retry_after is not None:
            extra["retry-after"] = str(retry_after)
        if retry_after_ms is not None:
            extra["retry-after-ms"] = str(retry_after_ms)
        self.respond(Scripted(status=status, body=body, headers=tuple(extra.items()), delay_s=delay_s), times=times)

    def refuse(self, message: str = MODERATION_MESSAGE, *, times: int = 1) -> None:
        """The safety system's refusal: 400, code moderation_blocked."""
        self.fail(400, message=message, code="moderation_blocked", error_type="image_generation_user_error",
                  times=times)

    def unauthorized(self, *, times: int = 1) -> None:
        """401 invalid_api_key; the message echoes the key that was sent (worst case for leak tests)."""
        self.respond(Scripted(status=401, body=None), times=times)

    def tamper(self, how: str, *, times: int = 1) -> None:
        """The next `times` edit answers alter the product the way a model may: `recolour` (a hue shift),
        `move` (shifted down and right) or `warp` (a wavy geometric distortion)."""
        if how not in TAMPERS:
            raise ValueError(f"tamper is one of {', '.join(TAMPERS)}, not {how!r}")
        with self._lock:
            self._tampers.extend([how] * times)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._tampers.clear()
            self.requests.clear()

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    # serving (called on handler threads)

    def _next_script(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _next_tamper(self) -> str | None:
        with self._lock:
            return self._tampers.popleft() if self._tampers else None

    def _record(self, recorded: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", "invalid_value"),
    403: ("You are not allowed to use this model. Your organization must be verified.", "invalid_request_error",
          None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    409: ("Another request is updating this resource.", "invalid_request_error", None),
    429: ("Rate limit reached for images per minute. Please try again in 1s.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    timeout = 30  # an idle keep-alive connection is dropped after this many seconds
    server: Any  # loopback._Server, with .fake

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        """`GET /v1/models` (the list) and `GET /v1/models/<id>`, as the API answers them; scripted answers apply."""
        self._drain()
        fake = self.server.fake
        headers = {name.lower(): value for name, value in self.headers.items()}
        recorded = RecordedRequest(method="GET", path=self.path, headers=headers, fields={}, images=[], mask=None,
                                   started=time.monotonic())
        fake._record(recorded)
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.startswith("/v1/models"):
            self._answer_error(recorded, 404, {"error": {"message": f"Invalid URL (GET {path})",
                                                         "type": "invalid_request_error", "param": None, "code": None}})
            return
        scripted = fake._next_script() or Scripted()
        fake._sleep(fake.latency_s + scripted.delay_s)
        if fake._stopping.is_set():
            self.close_connection = True
            return
        if not recorded.has_authorization or scripted.status == 401:
            self._answer_error(recorded, 401, _auth_error("Incorrect API key provided."))
            return
        if scripted.status != 200 or scripted.body is not None:
            self._answer_error(recorded, scripted.status, scripted.body or {}, dict(scripted.headers))
            return
        with fake._lock:
            models = [dict(model) for model in fake.models]
        if path == "/v1/models":
            recorded.status = 200
            self._send_json(200, {"object": "list", "data": models})
            return
        wanted = path.removeprefix("/v1/models/")
        found = next((model for model in models if model.get("id") == wanted), None)
        if found is None:
            self._answer_error(recorded, 404, {"error": {
                "message": f"The model '{wanted}' does not exist or you do not have access to it.",
                "type": "invalid_request_error", "param": None, "code": "model_not_found"}})
            return
        recorded.status = 200
        self._send_json(200, found)

    def do_POST(self) -> None:
        fake = self.server.fake
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        recorded = RecordedRequest(method="POST", path=self.path, headers=headers, fields={}, images=[], mask=None,
                                   started=time.monotonic())
        fake._record(recorded)
        try:
            check = self._parse(recorded, body)
        except _ApiError as exc:
            self._answer_error(recorded, exc.status, exc.body)
            return
        # The order the API works in: authentication, then server-side conditions (scripted), then validation.
        scripted = fake._next_script() or Scripted()
        fake._sleep(fake.latency_s + scripted.delay_s)
        if fake._stopping.is_set():
            self.close_connection = True
            return
        if not recorded.has_authorization:
            self._answer_error(recorded, 401, _auth_error("You didn't provide an API key."))
            return
        if scripted.status == 401:
            key = headers.get("authorization", "").removeprefix("Bearer ").strip()
            self._answer_error(recorded, 401, _auth_error(
                f"Incorrect API key provided: {key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."))
            return
        if scripted.status != 200:
            self._answer_error(recorded, scripted.status, scripted.body or {}, dict(scripted.headers))
            return
        if scripted.body is not None:  # a scripted 200 body, sent as is (e.g. a malformed answer)
            recorded.status = 200
            self._send_json(200, scripted.body, dict(scripted.headers))
            return
        try:
            check(recorded, fake)
            answer = self._image_answer(recorded, scripted)
        except _ApiError as exc:
            self._answer_error(recorded, exc.status, exc.body)
            return
        recorded.status = 200
        self._send_json(200, answer, dict(scripted.headers))

    # request parsing

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _drain(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)

    def _parse(self, recorded: RecordedRequest, body: bytes) -> Callable[[RecordedRequest, FakeOpenAI], None]:
        """Fills `recorded` from the body; returns the endpoint's parameter check, run after authentication."""
        path = self.path.split("?", 1)[0]
        content_type = self.headers.get("content-type", "")
        if path.endswith("/images/edits"):
            if not content_type.lower().startswith("multipart/form-data"):
                raise _ApiError(400, "The images/edits endpoint expects multipart/form-data.")
            self._parse_multipart(recorded, content_type, body)
            return _check_edit
        if path.endswith("/images/generations"):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                raise _ApiError(400, "We could not parse the JSON body of your request.") from None
            if not isinstance(data, dict):
                raise _ApiError(400, "The request body must be a JSON object.")
            recorded.fields.update(data)
            return _check_common
        raise _ApiError(404, f"Invalid URL (POST {path})")

    def _parse_multipart(self, recorded: RecordedRequest, content_type: str, body: bytes) -> None:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise _ApiError(400, "Could not parse multipart form data.")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                upload = UploadedFile(field=str(name), filename=filename,
                                      content_type=part.get_content_type(), data=payload)
                if name in ("image", "image[]"):
                    recorded.images.append(upload)
                elif name == "mask":
                    recorded.mask = upload
                else:
                    recorded.fields[str(name)] = upload
            else:
                recorded.fields[str(name)] = payload.decode("utf-8")

    # answers

    def _image_answer(self, recorded: RecordedRequest, scripted: Scripted) -> dict[str, Any]:
        fake = self.server.fake
        fields = recorded.fields
        size = scripted.image_size or fake.image_size or _requested_size(str(fields.get("size") or "auto"))
        output_format = str(fields.get("output_format") or "png")
        compression = int(fields.get("output_compression") or 100)
        quality = str(fields.get("quality") or "auto")
        n = int(fields.get("n") or 1)
        prompt = str(fields.get("prompt") or "")
        edit = recorded.path.split("?", 1)[0].endswith("/images/edits")
        data = []
        for index in range(n):
            if edit:
                image = _edited(recorded, size, prompt, index, fake._next_tamper())
            else:
                image = _generated(size, prompt, index)
            data.append({"b64_json": base64.b64encode(_encoded(image, output_format, compression)).decode("ascii")})
        usage = scripted.usage or _usage(recorded, size, quality, n, fake.usage_drift)
        recorded.usage = usage
        recorded.response_size = size
        return {
            "created": int(time.time()),
            "background": "opaque",
            "data": data,
            "output_format": output_format,
            "quality": AUTO_QUALITY if quality == "auto" else quality,
            "size": f"{size[0]}x{size[1]}",
            "usage": usage,
        }

    def _answer_error(self, recorded: RecordedRequest, status: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
        recorded.status = status
        self._send_json(status, body, headers)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout) first
            self.close_connection = True


def _auth_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


def _check_common(recorded: RecordedRequest, fake: FakeOpenAI) -> None:
    """The parameter checks the API makes on both endpoints."""
    fields = recorded.fields
    model = str(fields.get("model") or "")
    if not model:
        raise _ApiError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if model in SHUT_DOWN_MODELS:  # the API's answer for a model past its shutdown date
        raise _ApiError(404, f"The model `{model}` has been deprecated, learn more here: "
                        "https://platform.openai.com/docs/deprecations", code="model_not_found")
    if model not in KNOWN_MODELS:
        raise _ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                        code="model_not_found")
    prompt = str(fields.get("prompt") or "")
    if not prompt:
        raise _ApiError(400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _ApiError(400, f"Invalid 'prompt': string too long. Expected a string with maximum length "
                        f"{MAX_PROMPT_CHARS}, but got a string with length {len(prompt)} instead.",
                        param="prompt", code="string_above_max_length")
    size = str(fields.get("size") or "auto")
    if not _size_ok(model, size, fake):
        custom = _takes_custom_sizes(model, fake)
        raise _ApiError(400, f"Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', "
                        "'1536x1024', and 'auto'" + (", or WIDTHxHEIGHT in multiples of 16 with an aspect ratio "
                                                     "between 1:3 and 3:1, at least 655360 pixels and at most "
                                                     "3840x2160" if custom else "") + ".",
                        param="size", code="invalid_value")
    quality = str(fields.get("quality") or "auto")
    extra = EXTRA_QUALITIES.get(model, ())
    if quality not in QUALITIES + extra:
        allowed = ", ".join(f"'{value}'" for value in (*QUALITIES[:3], *extra, "auto"))
        raise _ApiError(400, f"Invalid value: '{quality}'. Supported values are: {allowed}.",
                        param="quality", code="invalid_value")
    output_format = str(fields.get("output_format") or "png")
    if output_format not in OUTPUT_FORMATS:
        raise _ApiError(400, f"Invalid value: '{output_format}'. Supported values are: 'png', 'jpeg', and 'webp'.",
                        param="output_format", code="invalid_value")
    compression = fields.get("output_compression")
    if compression is not None:
        if output_format not in ("jpeg", "webp"):
            raise _ApiError(400, "output_compression is only supported for the jpeg and webp output formats.",
                            param="output_compression", code="invalid_value")
        if not str(compression).isdigit() or not 0 <= int(compression) <= 100:
            raise _ApiError(400, f"Invalid 'output_compression': {compression}. Expected an integer from 0 to 100.",
                            param="output_compression", code="invalid_value")
    try:
        n = int(fields.get("n") or 1)
    except ValueError:
        n = 0
    if not 1 <= n <= 10:
        raise _ApiError(400, "Invalid 'n': must be between 1 and 10.", param="n", code="invalid_value")
    fidelity = fields.get("input_fidelity")
    if fidelity is not None and fidelity not in INPUT_FIDELITY.get(model, ()):
        raise _ApiError(400, f"input_fidelity={fidelity!s} is not supported for model {model}.",
                        param="input_fidelity", code="invalid_value")


def _check_edit(recorded: RecordedRequest, fake: FakeOpenAI) -> None:
    """The extra checks of /images/edits: image count and size, the mask's format and shape."""
    _check_common(recorded, fake)
    if not recorded.images:
        raise _ApiError(400, "Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    if len(recorded.images) > MAX_IMAGES:
        raise _ApiError(400, f"Invalid 'image': too many images. Expected at most {MAX_IMAGES}.", param="image",
                        code="invalid_value")
    for upload in recorded.images:
        if upload.size > MAX_IMAGE_BYTES:
            raise _ApiError(400, "Invalid 'image': each image must be smaller than 50MB.", param="image")
        if _decoded_size(upload.data, ("PNG", "JPEG", "WEBP")) is None:
            raise _ApiError(400, f"Invalid image file or mode for image '{upload.filename}', please check your "
                            "image file.", param="image", code="invalid_image_format")
    if recorded.mask is not None:
        mask = recorded.mask
        if mask.size > MAX_MASK_BYTES:
            raise _ApiError(400, "Invalid 'mask': must be smaller than 4MB.", param="mask")
        try:
            with Image.open(io.BytesIO(mask.data), formats=("PNG",)) as decoded:
                mask_size, bands = decoded.size, decoded.getbands()
                has_alpha = "A" in bands or "transparency" in decoded.info
        except Exception:
            raise _ApiError(400, "Invalid 'mask': must be a valid PNG file.", param="mask",
                            code="invalid_image_format") from None
        if not has_alpha:
            raise _ApiError(400, "Invalid 'mask': the mask must have an alpha channel.", param="mask",
                            code="invalid_image_format")
        if mask_size != _decoded_size(recorded.images[0].data, ("PNG", "JPEG", "WEBP")):
            raise _ApiError(400, "Invalid 'mask': the mask and the image must have the same dimensions.",
                            param="mask", code="invalid_image_format")


def _takes_custom_sizes(model: str, fake: FakeOpenAI) -> bool:
    if model in GPT_IMAGE_2_6:
        return fake.custom_sizes_2_6
    return model in GPT_IMAGE_2_FAMILY


def _size_ok(model: str, size: str, fake: FakeOpenAI) -> bool:
    if size in STANDARD_SIZES:
        return True
    if not _takes_custom_sizes(model, fake):
        return False
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size)
    if not match:
        return False
    width, height = int(match[1]), int(match[2])
    return (width % 16 == 0 and height % 16 == 0 and 0 < width and 0 < height
            and max(width, height) <= CUSTOM_MAX_SIDE and CUSTOM_MIN_PIXELS <= width * height <= CUSTOM_MAX_PIXELS
            and max(width, height) <= 3 * min(width, height))


def _requested_size(size: str) -> tuple[int, int]:
    if size == "auto":
        return (1024, 1024)
    width, height = size.split("x")
    return int(width), int(height)


def _decoded_size(data: bytes, formats: tuple[str, ...]) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data), formats=formats) as decoded:
            return decoded.size
    except Exception:
        return None


def _palette(prompt: str, index: int) -> tuple[bytes, tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(f"{index}:{prompt}".encode()).digest()
    top = (64 + digest[0] % 160, 64 + digest[1] % 160, 64 + digest[2] % 160)
    bottom = (32 + digest[3] % 160, 32 + digest[4] % 160, 32 + digest[5] % 160)
    return digest, top, bottom


def _generated(size: tuple[int, int], prompt: str, index: int) -> Image.Image:
    """A generation's answer: a flat colour picked from the prompt, with a dark marker square in the top-left."""
    _, colour, _ = _palette(prompt, index)
    image = Image.new("RGB", size, colour)
    side = max(2, min(size) // 8)
    ImageDraw.Draw(image).rectangle((0, 0, side - 1, side - 1), fill=(20, 20, 20))
    return image


def _background(size: tuple[int, int], prompt: str, index: int) -> Image.Image:
    """A 'scene': a vertical gradient between two colours picked from the prompt, with a little grain."""
    digest, top, bottom = _palette(prompt, index)
    width, height = size
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    pixels = np.asarray(top, np.float32) * (1 - ramp) + np.asarray(bottom, np.float32) * ramp
    grain = np.random.default_rng(int.from_bytes(digest[6:14], "big")).integers(-6, 7, (height, width, 1))
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8), "RGB")


def _edited(recorded: RecordedRequest, size: tuple[int, int], prompt: str, index: int,
            tamper: str | None) -> Image.Image:
    """An edit's answer, as a GPT image model makes one: a new scene where the mask is transparent (everywhere the
    first image is transparent, without a mask) and the first image's own pixels where it is opaque, unless a
    scripted tamper alters them the way a model that redraws the product does."""
    scene = _background(size, prompt, index)
    with Image.open(io.BytesIO(recorded.images[0].data)) as first:
        product = first.convert("RGBA")
    if product.size != size:
        product = product.resize(size, Image.Resampling.BICUBIC)
    keep = product.getchannel("A")
    if recorded.mask is not None:
        with Image.open(io.BytesIO(recorded.mask.data)) as mask:
            mask_alpha = mask.convert("RGBA").getchannel("A")
        if mask_alpha.size != size:
            mask_alpha = mask_alpha.resize(size, Image.Resampling.BILINEAR)
        keep = Image.fromarray(np.minimum(np.asarray(keep), np.asarray(mask_alpha)), "L")
    product.putalpha(keep)
    if tamper is not None:
        product = _tampered(product, tamper)
    scene.paste(product.convert("RGB"), (0, 0), product.getchannel("A"))
    return scene


def _tampered(product: Image.Image, how: str) -> Image.Image:
    """The RGBA product layer altered: hue shifted, moved by some px, or warped in a wave."""
    width, height = product.size
    if how == "recolour":
        hue, saturation, value = product.convert("RGB").convert("HSV").split()
        hue = hue.point(lambda h: (h + 64) % 256)
        recoloured = Image.merge("HSV", (hue, saturation, value)).convert("RGBA")
        recoloured.putalpha(product.getchannel("A"))
        return recoloured
    if how == "move":
        shift = max(4, min(width, height) // 24)
        moved = Image.new("RGBA", product.size, (0, 0, 0, 0))
        moved.paste(product, (shift, shift))
        return moved
    pixels = np.asarray(product)
    amplitude, period = max(3, width // 40), max(16, height // 6)
    rows = np.arange(height)
    offsets = np.rint(amplitude * np.sin(2 * np.pi * rows / period)).astype(np.int64)
    columns = np.clip(np.arange(width)[None, :] - offsets[:, None], 0, width - 1)
    return Image.fromarray(np.ascontiguousarray(pixels[rows[:, None], columns]), "RGBA")


def _encoded(image: Image.Image, output_format: str, compression: int) -> bytes:
    out = io.BytesIO()
    if output_format == "png":
        image.save(out, "PNG", compress_level=1)
    else:
        image.save(out, OUTPUT_FORMATS[output_format], quality=compression)
    return out.getvalue()


def output_tokens(size: tuple[int, int], quality: str) -> int:
    """Output tokens of one image at `quality` (auto: medium), by the frame's nearest shape (square or 3:2)."""
    width, height = size
    shape = "square" if max(width, height) / min(width, height) < math.sqrt(1.5) else "oblong"
    return OUTPUT_TOKENS[shape][AUTO_QUALITY if quality == "auto" else quality]


def _usage(recorded: RecordedRequest, size: tuple[int, int], quality: str, n: int,
           drift: tuple[float, float] = (1.0, 1.0)) -> dict[str, Any]:
    """Token counts in the API's shape, derived from the prompt, the input images and the output frame (scaled by
    `drift`: output, input image)."""
    fields = recorded.fields
    text_tokens = math.ceil(len(str(fields.get("prompt") or "")) / 4)
    image_tokens = 0
    for upload in recorded.images:
        width, height = _decoded_size(upload.data, ("PNG", "JPEG", "WEBP")) or (1024, 1024)
        scale = min(1.0, 2048 / max(width, height))
        width, height = width * scale, height * scale
        scale = min(1.0, 768 / min(width, height))
        tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
        image_tokens += INPUT_IMAGE_BASE_TOKENS + INPUT_IMAGE_TILE_TOKENS * tiles
        image_tokens += HIGH_FIDELITY_TOKENS["square" if width == height else "other"]
    out_tokens = round(n * output_tokens(size, quality) * drift[0])
    image_tokens = round(image_tokens * drift[1])
    input_tokens = text_tokens + image_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
        "output_tokens": out_tokens,
        "total_tokens": input_tokens + out_tokens,
        "output_tokens_details": {"image_tokens": out_tokens, "text_tokens": 0},
    }
