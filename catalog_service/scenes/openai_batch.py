"""GPT Image edits through OpenAI's Batch API: half the price of a direct call, results within 24 hours.

What the references say, and what this module builds on:

- Batch (openai-python `src/openai/types/batch_create_params.py`, as installed at 3.63): `POST /v1/batches` takes
  `input_file_id`, `endpoint` (`/v1/images/edits` is one of the accepted endpoints), `completion_window="24h"`,
  up to 16 `metadata` pairs (keys up to 64 characters, values up to 512) and `output_expires_after` (`anchor`
  `created_at`, 3600 s to 30 days). The input file is JSONL uploaded with purpose `batch`, up to 50,000 requests and
  200 MB. A batch is `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `expired`, `cancelling` or
  `cancelled` (`types/batch.py`), with `request_counts`, `output_file_id` and `error_file_id`.
- Each input line is `{"custom_id", "method": "POST", "url": "/v1/images/edits", "body"}` (the batch reference's
  request input object: `custom_id` is unique within a batch). Each output or error line is
  `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`; `error` carries `code` and
  `message`, with the codes `batch_expired`, `batch_cancelled` and `request_timeout` (BatchRequestOutput in
  OpenAI's OpenAPI document).
- A JSONL line cannot be multipart, so an edit's images travel in the JSON body that OpenAI's images reference
  documents for `POST /images/edits` (developers.openai.com/api/reference/resources/images, "Create image edit",
  body parameters, JSON): `images` is an array of `{file_id}` or `{image_url}` objects (up to 16; `image_url` is a
  fully qualified URL or a base64 data URL of at most 20,971,520 characters), and `mask` is one such object
  ("provide exactly one of `image_url` or `file_id`"). By default the images are uploaded once per batch with the
  Files API and referenced by `file_id`, which keeps the JSONL small: a batch of data URLs would reach the 200 MB
  file limit after a few dozen product photos. `image_transport="data_url"` inlines them instead.
- Files (openai-python `src/openai/resources/files.py`, `types/file_create_params.py`): `purpose` is one of
  `assistants`, `batch`, `fine-tune`, `vision`, `user_data`, `evals`; `expires_after` (`created_at` + 3600 s to 30
  days) lets OpenAI delete a file we lose track of. Image uploads get a short expiry, so a crash between upload
  and cleanup leaves nothing behind for long; batch input files expire after 30 days by default.
- Price: half a direct call's (API-NOTES.md); `BATCH_PRICE_FACTOR` applies it to `PriceTable.cost`.

Retries of single calls are the openai library's own (see openai_images.py); what still fails becomes
ProviderUnavailable (try later) or SceneRefused (do not), with OpenAI's message and never the API key.

To resume after a restart a caller needs only what `submit` returned: each SubmittedBatch (`to_dict()` is JSON;
`from_dict()` reads it back). Should the process die between creating a batch and storing it, `find(submission)`
lists the batches whose metadata names that submission key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import io
import json
import logging
import re
import typing
from collections.abc import Container, Iterable, Iterator, Mapping

import openai
from PIL import Image

from catalog_service.scenes.base import ProviderError, ProviderUnavailable, SceneRefused
from catalog_service.scenes.openai_errors import OpenAIErrors, clean, is_moderation
from catalog_service.scenes.pricing import flat_usage

log = logging.getLogger(__name__)

ENDPOINT: typing.Final = "/v1/images/edits"
COMPLETION_WINDOW: typing.Final = "24h"
BATCH_PRICE_FACTOR = 0.5
"""What a batch request costs relative to the same direct call (API-NOTES.md: 50%)."""
MAX_REQUESTS_PER_FILE = 50_000
"""Requests one batch input file may hold."""
MAX_FILE_BYTES = 200 * 1024 * 1024
"""Largest batch input file, in bytes."""
MAX_INPUT_IMAGES = 16
"""Input images per edit."""
MAX_IMAGE_BYTES = 50 * 1024 * 1024
"""Largest input image, in bytes."""
MAX_MASK_BYTES = 4 * 1024 * 1024
"""Largest mask, in bytes."""
MAX_DATA_URL_CHARS = 20_971_520
"""Longest `image_url` (a data URL included) the edit's JSON body takes, in characters."""
MAX_METADATA_PAIRS = 16
IMAGE_EXPIRY_S = 3 * 24 * 3600
"""Uploaded input images expire this many seconds after upload: past the 24 h window plus a slow validation."""
OUTPUT_EXPIRY_S = 30 * 24 * 3600
"""Output and error files expire this many seconds after they are made (OpenAI's longest), time to read them."""
_FILE_ID_ROOM = 64
"""Characters reserved for a file id when sizing a line before its images are uploaded (OpenAI's are shorter)."""
RETRY_CODES = frozenset({"batch_expired", "batch_cancelled", "request_timeout"})
"""Line error codes after which the same edit may well succeed as a direct call."""
_IMAGE_MIMES = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}

ImageFile = tuple[str, bytes, str]
"""(filename, bytes, mime type), as `images.edit` takes each image."""


class BatchStatus(str, enum.Enum):
    """A batch's status, as OpenAI names it."""

    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Nothing will change any more: results (if any) can be read and the files cleaned up."""
        return self in (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED)


@dataclasses.dataclass(frozen=True)
class BatchEdit:
    """One edit to run in a batch: `custom_id` (ours, unique in a submission) and what `images.edit` would take."""

    custom_id: str
    model: str
    prompt: str
    images: tuple[ImageFile, ...]
    mask: ImageFile | None = None
    size: str = "auto"
    quality: str = "auto"
    output_format: str = "png"
    output_compression: int | None = None
    input_fidelity: str | None = None
    background: str | None = None
    safety_identifier: str = ""

    @classmethod
    def from_edit_kwargs(cls, custom_id: str, kwargs: Mapping[str, typing.Any]) -> BatchEdit:
        """The batch form of the keyword arguments a direct `client.images.edit(**kwargs)` call takes."""
        unknown = set(kwargs) - {"model", "prompt", "image", "mask", "size", "quality", "output_format",
                                 "output_compression", "input_fidelity", "background", "safety_identifier", "n"}
        if unknown:
            raise ValueError(f"a batch edit cannot carry {', '.join(sorted(unknown))}")
        if int(kwargs.get("n") or 1) != 1:
            raise ValueError("a batch edit makes one image (n=1)")
        image = kwargs["image"]
        images = (image,) if isinstance(image, tuple) else tuple(image)
        return cls(
            custom_id=custom_id, model=str(kwargs["model"]), prompt=str(kwargs["prompt"]), images=images,
            mask=kwargs.get("mask"), size=str(kwargs.get("size") or "auto"),
            quality=str(kwargs.get("quality") or "auto"), output_format=str(kwargs.get("output_format") or "png"),
            output_compression=kwargs.get("output_compression"), input_fidelity=kwargs.get("input_fidelity"),
            background=kwargs.get("background"), safety_identifier=str(kwargs.get("safety_identifier") or ""),
        )


@dataclasses.dataclass(frozen=True)
class SubmittedBatch:
    """One created batch, and what must be kept to read and clean it up after a restart (`to_dict` is JSON)."""

    batch_id: str
    input_file_id: str
    custom_ids: tuple[str, ...]
    image_file_ids: tuple[str, ...]
    model: str
    submission: str
    chunk: int

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, typing.Any]) -> SubmittedBatch:
        return cls(
            batch_id=str(data["batch_id"]), input_file_id=str(data["input_file_id"]),
            custom_ids=tuple(str(c) for c in data["custom_ids"]),
            image_file_ids=tuple(str(f) for f in data["image_file_ids"]), model=str(data["model"]),
            submission=str(data["submission"]), chunk=int(data["chunk"]),
        )


@dataclasses.dataclass(frozen=True)
class BatchIssue:
    """A batch-level error OpenAI reports (a malformed input line, a queue limit reached)."""

    code: str
    message: str
    line: int | None = None


@dataclasses.dataclass(frozen=True)
class BatchState:
    """Where a batch stands: status, request counts and its result files."""

    batch_id: str
    status: BatchStatus
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: tuple[BatchIssue, ...] = ()
    created_at: int = 0
    expires_at: int | None = None
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def needs_fallback(self) -> bool:
        """The batch ended short of its work (failed, expired, cancelled): what has no result goes direct."""
        return self.status in (BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED)

    def describe(self) -> str:
        """One line for a log or a progress page."""
        text = f"batch {self.batch_id} {self.status.value}: {self.completed}/{self.total} done, {self.failed} failed"
        if self.errors:
            text += "; " + "; ".join(issue.message for issue in self.errors[:3])
        return text


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """One request's outcome: the image (decoded) and its usage, or a typed error."""

    custom_id: str
    data: bytes | None = None
    content_type: str = ""
    width: int = 0
    height: int = 0
    usage: dict[str, int] = dataclasses.field(default_factory=dict)  # flat, as SceneResult keeps it
    raw_usage: dict[str, typing.Any] = dataclasses.field(default_factory=dict)  # OpenAI's shape, for PriceTable
    error: ProviderError | None = None
    status_code: int = 0
    request_id: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.data is not None

    @property
    def retry_direct(self) -> bool:
        """The edit did not happen for a reason a direct call may not meet (expired, timeout, 429, 5xx)."""
        return self.error is not None and self.error.retryable


class OpenAIBatchClient:
    """Submits GPT Image edits as batches, polls them, streams their results and cleans up after them."""

    def __init__(
        self,
        *,
        client: openai.OpenAI | None = None,
        timeout_s: float = 30.0,
        upload_timeout_s: float = 300.0,
        max_retries: int = 3,
        max_requests: int = MAX_REQUESTS_PER_FILE,
        max_file_bytes: int = MAX_FILE_BYTES,
        image_transport: str = "file",
        image_purpose: str = "vision",
        image_expiry_s: int = IMAGE_EXPIRY_S,
        output_expiry_s: int = OUTPUT_EXPIRY_S,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not 1 <= max_requests <= MAX_REQUESTS_PER_FILE:
            raise ValueError(f"max_requests must be between 1 and {MAX_REQUESTS_PER_FILE}, not {max_requests}")
        if not 1 <= max_file_bytes <= MAX_FILE_BYTES:
            raise ValueError(f"max_file_bytes must be between 1 and {MAX_FILE_BYTES}, not {max_file_bytes}")
        if image_transport not in ("file", "data_url"):
            raise ValueError(f"image_transport is file or data_url, not {image_transport!r}")
        for name, seconds in (("image_expiry_s", image_expiry_s), ("output_expiry_s", output_expiry_s)):
            if not 3600 <= seconds <= 30 * 24 * 3600:
                raise ValueError(f"{name} must be between 3600 s and 30 days, not {seconds}")
        self._metadata = {"app": "catalog-service", "purpose": "backfill", **dict(metadata or {})}
        if len(self._metadata) + 2 > MAX_METADATA_PAIRS:  # + submission and chunk
            raise ValueError(f"at most {MAX_METADATA_PAIRS - 4} metadata pairs of your own")
        owns_client = client is None
        if client is None:
            try:  # the library reads OPENAI_API_KEY and OPENAI_BASE_URL itself
                client = openai.OpenAI(max_retries=max_retries, timeout=timeout_s)
            except openai.OpenAIError:
                raise SceneRefused("The OpenAI batch client needs an API key: set OPENAI_API_KEY for the workers.",
                                   reason="not_configured") from None
        self._client = client
        self._owns_client = owns_client
        self.timeout_s = timeout_s
        self.upload_timeout_s = upload_timeout_s
        self.max_requests = max_requests
        self.max_file_bytes = max_file_bytes
        self.image_transport = image_transport
        self.image_purpose = image_purpose
        self.image_expiry_s = image_expiry_s
        self.output_expiry_s = output_expiry_s

    def close(self) -> None:
        """Closes the HTTP connections of a client this object made (one passed in is its owner's to close)."""
        if self._owns_client:
            self._client.close()

    # submitting

    def submit(self, edits: Iterable[BatchEdit], *, submission: str) -> list[SubmittedBatch]:
        """Every edit submitted, in as many batches as the limits need (one model per batch).

        All edits are checked before anything is uploaded. Should a later batch fail to be created, the ones already
        created are cancelled and cleaned up before the error is raised; use `iter_submit` to keep them instead.
        """
        done: list[SubmittedBatch] = []
        try:
            for submitted in self.iter_submit(edits, submission=submission):
                done.append(submitted)
        except ProviderError:
            for submitted in done:
                self._abandon(submitted)
            raise
        return done

    def iter_submit(self, edits: Iterable[BatchEdit], *, submission: str) -> Iterator[SubmittedBatch]:
        """Like `submit`, yielding each batch as soon as it exists, so the caller can record it before the next."""
        if not submission or len(submission) > 512:
            raise ValueError("submission must be a key of 1 to 512 characters (it is stored in the batch metadata)")
        checked = list(edits)
        seen: set[str] = set()
        for edit in checked:
            _check_edit(edit)
            if edit.custom_id in seen:
                raise SceneRefused(f"Two edits share the id {edit.custom_id!r}; each needs its own.",
                                   reason="invalid_request")
            seen.add(edit.custom_id)
            if self.image_transport == "data_url":
                for image in (*edit.images, *((edit.mask,) if edit.mask else ())):
                    if not data_url_fits(image):
                        raise SceneRefused(f"Edit {edit.custom_id!r}: {image[0]} is too large to send inline; "
                                           "send images as uploaded files.", reason="invalid_request")
        by_model: dict[str, list[BatchEdit]] = {}
        for edit in checked:
            by_model.setdefault(edit.model, []).append(edit)
        # Planned in full first, so an edit too large for any file is refused before anything is uploaded.
        plan = [(model, chunk) for model, group in by_model.items() for chunk in self._chunks(group)]
        for number, (model, chunk) in enumerate(plan):
            yield self._submit_chunk(chunk, model=model, submission=submission, number=number)

    def _chunks(self, edits: list[BatchEdit]) -> Iterator[list[BatchEdit]]:
        """Edits grouped so that no input file passes the request or byte limit, sized before any upload."""
        chunk: list[BatchEdit] = []
        size = 0
        for edit in edits:
            line_bytes = len(self._line(edit, None)) + 1
            if line_bytes > self.max_file_bytes:
                raise SceneRefused(
                    f"Edit {edit.custom_id!r} alone is larger than a batch file may be ({line_bytes} bytes); "
                    "send it as a direct call.", reason="invalid_request")
            if chunk and (len(chunk) >= self.max_requests or size + line_bytes > self.max_file_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(edit)
            size += line_bytes
        if chunk:
            yield chunk

    def _submit_chunk(self, edits: list[BatchEdit], *, model: str, submission: str, number: int) -> SubmittedBatch:
        uploaded: dict[str, str] = {}  # sha256 of the bytes -> file id: each distinct image once per batch
        input_file_id = ""
        try:
            lines = [self._line(edit, uploaded) for edit in edits]
            jsonl = b"\n".join(lines) + b"\n"
            with self._mapped("upload the batch input file"):
                input_file = self._client.files.create(
                    file=(f"{_safe_name(submission)}-{number}.jsonl", jsonl, "application/jsonl"), purpose="batch",
                    timeout=self.upload_timeout_s)
            input_file_id = input_file.id
            metadata = {**self._metadata, "submission": submission, "chunk": str(number)}
            with self._mapped("create the batch"):
                batch = self._client.batches.create(
                    input_file_id=input_file_id, endpoint=ENDPOINT, completion_window=COMPLETION_WINDOW,
                    metadata=metadata, output_expires_after={"anchor": "created_at", "seconds": self.output_expiry_s},
                    timeout=self.timeout_s)
        except ProviderError:
            self._delete_files([*uploaded.values(), *([input_file_id] if input_file_id else [])])
            raise
        log.info("openai batch submitted batch=%s submission=%s chunk=%d requests=%d images=%d bytes=%d",
                 batch.id, submission, number, len(edits), len(uploaded), len(jsonl))
        return SubmittedBatch(batch_id=batch.id, input_file_id=input_file_id,
                              custom_ids=tuple(edit.custom_id for edit in edits),
                              image_file_ids=tuple(uploaded.values()), model=model, submission=submission,
                              chunk=number)

    def _line(self, edit: BatchEdit, uploaded: dict[str, str] | None) -> bytes:
        """The JSONL line of one edit; with `uploaded` None, a line at least as long as the real one, uploading
        nothing (file ids replaced by the longest placeholder)."""
        body: dict[str, typing.Any] = {
            "model": edit.model,
            "prompt": edit.prompt,
            "images": [self._reference(image, uploaded) for image in edit.images],
            "n": 1,
            "size": edit.size,
            "quality": edit.quality,
            "output_format": edit.output_format,
        }
        if edit.mask is not None:
            body["mask"] = self._reference(edit.mask, uploaded)
        if edit.output_compression is not None:
            body["output_compression"] = edit.output_compression
        if edit.input_fidelity:
            body["input_fidelity"] = edit.input_fidelity
        if edit.background:
            body["background"] = edit.background
        if edit.safety_identifier:
            body["safety_identifier"] = edit.safety_identifier
        line = {"custom_id": edit.custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def _reference(self, image: ImageFile, uploaded: dict[str, str] | None) -> dict[str, str]:
        filename, data, mime = image
        if self.image_transport == "data_url":
            return {"image_url": f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"}
        if uploaded is None:
            return {"file_id": "f" * _FILE_ID_ROOM}
        digest = hashlib.sha256(data).hexdigest()
        if digest not in uploaded:
            with self._mapped(f"upload the image {filename}"):
                created = self._client.files.create(
                    file=(filename, data, mime), purpose=typing.cast(typing.Any, self.image_purpose),
                    expires_after={"anchor": "created_at", "seconds": self.image_expiry_s},
                    timeout=self.upload_timeout_s)
            uploaded[digest] = created.id
        return {"file_id": uploaded[digest]}

    # following a batch

    def poll(self, batch_id: str) -> BatchState:
        """The batch's current state: one small request, cheap enough for a scheduled job."""
        return self._state(self._retrieve(batch_id))

    def _retrieve(self, batch_id: str) -> typing.Any:
        with self._mapped(f"read the state of batch {batch_id}"):
            return self._client.batches.retrieve(batch_id, timeout=self.timeout_s)

    def cancel(self, batch_id: str) -> BatchState:
        """Ask OpenAI to stop the batch; it goes through `cancelling` to `cancelled` (finished requests stay)."""
        with self._mapped(f"cancel batch {batch_id}"):
            batch = self._client.batches.cancel(batch_id, timeout=self.timeout_s)
        return self._state(batch)

    def find(self, submission: str, *, max_batches: int = 1000) -> list[str]:
        """Ids of the batches (newest first, among the account's latest `max_batches`) made for `submission`:
        how a caller finds batches created just before a crash, before it could store them."""
        found: list[str] = []
        with self._mapped("list the batches"):
            page = self._client.batches.list(limit=100, timeout=self.timeout_s)
            for seen, batch in enumerate(page):
                if seen >= max_batches:
                    break
                if (batch.metadata or {}).get("submission") == submission:
                    found.append(batch.id)
        return found

    def results(self, batch: str | BatchState, *, skip: Container[str] = ()) -> Iterator[BatchResult]:
        """Every answered request of a finished batch, successes then errors, streamed line by line.

        Requests without a line (a failed batch, some expired or cancelled ones) do not appear: the caller sends
        direct every submitted custom_id with no `ok` result and no permanent error. `skip` names custom_ids already
        recorded, so a reading cut short can start again without decoding their images twice.
        """
        state = batch if isinstance(batch, BatchState) else self.poll(batch)
        if not state.is_terminal:
            raise ValueError(f"batch {state.batch_id} is {state.status.value}; read its results once it has ended")
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                yield from self._read(file_id, skip)

    def _read(self, file_id: str, skip: Container[str]) -> Iterator[BatchResult]:
        with self._mapped(f"read the batch results file {file_id}"):
            with self._client.files.with_streaming_response.content(file_id, timeout=self.timeout_s) as response:
                for number, line in enumerate(response.iter_lines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        log.warning("openai batch file=%s line=%d is not JSON; skipped", file_id, number)
                        continue
                    custom_id = str(record.get("custom_id") or "")
                    if not custom_id:
                        log.warning("openai batch file=%s line=%d has no custom_id; skipped", file_id, number)
                        continue
                    if custom_id in skip:
                        continue
                    yield self._result(custom_id, record)

    def _result(self, custom_id: str, record: Mapping[str, typing.Any]) -> BatchResult:
        response = record.get("response") or {}
        error = record.get("error")
        status = int(response.get("status_code") or 0)
        request_id = str(response.get("request_id") or "")
        body: dict[str, typing.Any] = _dict(response.get("body"))
        if error or status != 200:
            return BatchResult(custom_id=custom_id, error=self._line_error(custom_id, status, body, error),
                               status_code=status, request_id=request_id)
        raw_usage = _dict(body.get("usage"))
        data = body.get("data") or []
        encoded = data[0].get("b64_json") if data and isinstance(data[0], dict) else None
        try:
            if not encoded:
                raise ValueError("no image")
            raw = base64.b64decode(encoded, validate=True)
            with Image.open(io.BytesIO(raw), formats=("PNG", "JPEG", "WEBP")) as image:  # header only, no pixels
                content_type = Image.MIME[image.format or ""]
                width, height = image.size
        except (binascii.Error, ValueError, OSError, KeyError, SyntaxError, Image.DecompressionBombError):
            return BatchResult(
                custom_id=custom_id, status_code=status, request_id=request_id, raw_usage=raw_usage,
                usage=flat_usage(raw_usage),
                error=ProviderUnavailable(f"OpenAI's batch answer for {custom_id} held no readable image; make it "
                                          "with a direct call.", reason="bad_response"))
        return BatchResult(custom_id=custom_id, data=raw, content_type=content_type, width=width, height=height,
                           usage=flat_usage(raw_usage), raw_usage=raw_usage, status_code=status,
                           request_id=request_id)

    def _line_error(self, custom_id: str, status: int, body: Mapping[str, typing.Any],
                    error: typing.Any) -> ProviderError:
        if isinstance(error, dict) and error:
            code = str(error.get("code") or "batch_error")
            said = self._clean(error.get("message"))
            if is_moderation(code, ""):
                return SceneRefused(f"OpenAI refused {custom_id} under its content policy: {said}",
                                    reason="content_policy")
            return ProviderUnavailable(f"OpenAI did not make {custom_id} in the batch ({code}): {said} Make it with "
                                       "a direct call.", reason=code)
        detail = _dict(body.get("error"))
        code = str(detail.get("code") or "")
        said = self._clean(detail.get("message"))
        if status == 429 and code == "insufficient_quota":
            return SceneRefused(f"The OpenAI account ran out of credit during the batch: {said} Add credit, then "
                                "regenerate.", reason="quota")
        if status in (408, 409, 429) or status >= 500:
            return ProviderUnavailable(f"OpenAI failed {custom_id} in the batch with HTTP {status}: {said} Make it "
                                       "with a direct call.", reason="rate_limited" if status == 429 else "upstream")
        if status in (401, 403):
            return SceneRefused(f"OpenAI refused the API key for {custom_id} (HTTP {status}): {said}", reason="auth")
        if is_moderation(code, said):
            return SceneRefused(f"OpenAI refused {custom_id} under its content policy: {said}",
                                reason="content_policy")
        return SceneRefused(f"OpenAI refused {custom_id} as invalid (HTTP {status or 'without a status'}): {said}",
                            reason="invalid_request")

    # cleaning up

    def cleanup(self, batch: SubmittedBatch | str, *, results: bool = True) -> int:
        """Deletes the files of a finished batch: its uploaded images and input file (when a SubmittedBatch is
        given) and, with `results`, its output and error files. Returns how many were deleted; files already gone
        count as deleted. ValueError while the batch still runs: it needs its inputs."""
        batch_id = batch.batch_id if isinstance(batch, SubmittedBatch) else batch
        found = self._retrieve(batch_id)
        state = self._state(found)
        if not state.is_terminal:
            raise ValueError(f"batch {batch_id} is {state.status.value}; clean up once it has ended")
        files: list[str] = [found.input_file_id]
        if isinstance(batch, SubmittedBatch):
            files.extend(batch.image_file_ids)
        if results:
            files.extend(f for f in (state.output_file_id, state.error_file_id) if f)
        return self._delete_files(files)

    def _abandon(self, submitted: SubmittedBatch) -> None:
        try:
            self.cancel(submitted.batch_id)
        except ProviderError as exc:
            log.warning("openai batch=%s could not be cancelled: %s", submitted.batch_id, exc)
        # A cancelled batch no longer reads its images; expiry removes whatever this misses.
        self._delete_files([submitted.input_file_id, *submitted.image_file_ids])

    def _delete_files(self, file_ids: Iterable[str]) -> int:
        deleted = 0
        for file_id in dict.fromkeys(file_ids):
            try:
                with self._mapped(f"delete file {file_id}"):
                    self._client.files.delete(file_id, timeout=self.timeout_s)
                deleted += 1
            except SceneRefused as exc:
                if exc.reason == "not_found":
                    deleted += 1
                else:
                    log.warning("openai file=%s not deleted: %s", file_id, exc)
            except ProviderError as exc:  # the file's expiry deletes it later
                log.warning("openai file=%s not deleted: %s", file_id, exc)
        return deleted

    # internals

    def _state(self, batch: typing.Any) -> BatchState:
        counts = batch.request_counts
        issues = tuple(
            BatchIssue(code=str(item.code or ""), message=self._clean(item.message), line=item.line)
            for item in ((batch.errors.data or []) if batch.errors else [])
        )
        return BatchState(
            batch_id=batch.id, status=BatchStatus(batch.status),
            total=counts.total if counts else 0, completed=counts.completed if counts else 0,
            failed=counts.failed if counts else 0, output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id, errors=issues, created_at=batch.created_at,
            expires_at=batch.expires_at, metadata=dict(batch.metadata or {}),
        )

    def _mapped(self, doing: str) -> OpenAIErrors:
        key = getattr(self._client, "api_key", "")
        return OpenAIErrors(key if isinstance(key, str) else "", doing=doing)

    def _clean(self, message: object) -> str:
        """OpenAI's message with the key and anything key-like removed, ending in a full stop."""
        key = getattr(self._client, "api_key", "")
        return clean(message, key if isinstance(key, str) else "")


def _check_edit(edit: BatchEdit) -> None:
    """SceneRefused, naming the edit, unless OpenAI would take it: 1-16 images under 50 MB, a PNG mask under 4 MB."""
    def refuse(problem: str) -> SceneRefused:
        return SceneRefused(f"Edit {edit.custom_id!r} cannot be batched: {problem}", reason="invalid_request")

    if not edit.custom_id or len(edit.custom_id) > 512:
        raise SceneRefused("Every batched edit needs an id of 1 to 512 characters.", reason="invalid_request")
    if not edit.prompt.strip():
        raise refuse("its prompt is empty.")
    if not 1 <= len(edit.images) <= MAX_INPUT_IMAGES:
        raise refuse(f"it has {len(edit.images)} images; an edit takes 1 to {MAX_INPUT_IMAGES}.")
    for number, (_, data, mime) in enumerate(edit.images, start=1):
        if mime not in _IMAGE_MIMES or _sniff(data) != _IMAGE_MIMES[mime]:
            raise refuse(f"image {number} is not the PNG, JPEG or WebP its type {mime!r} says.")
        if len(data) > MAX_IMAGE_BYTES:
            raise refuse(f"image {number} is {len(data) / 1e6:.0f} MB; OpenAI takes images under 50 MB.")
    if edit.mask is not None:
        _, data, mime = edit.mask
        if mime != "image/png" or _sniff(data) != "png":
            raise refuse("its mask must be a PNG image with an alpha channel.")
        if len(data) > MAX_MASK_BYTES:
            raise refuse(f"its mask is {len(data) / 1e6:.1f} MB; OpenAI takes masks under 4 MB.")
    if edit.output_compression is not None:
        if edit.output_format not in ("jpeg", "webp") or not 0 <= edit.output_compression <= 100:
            raise refuse("output_compression (0-100) goes only with jpeg or webp output.")


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _dict(value: object) -> dict[str, typing.Any]:
    return value if isinstance(value, dict) else {}


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:64] or "batch"


def data_url_fits(image: ImageFile) -> bool:
    """Whether an image fits the edit body's `image_url` as a base64 data URL."""
    filename, data, mime = image
    return len(f"data:{mime};base64,") + 4 * ((len(data) + 2) // 3) <= MAX_DATA_URL_CHARS

