"""A fake of OpenAI's Files and Batch endpoints on loopback, written from the public API reference.

    with FakeOpenAIBatch() as fake:
        client = openai.OpenAI(api_key="sk-test", base_url=fake.url + "/v1", max_retries=0)
        ...

Files (openai-python `resources/files.py`): `POST /v1/files` (multipart: `file`, `purpose`, optional
`expires_after[anchor]` and `expires_after[seconds]`), `GET /v1/files/{id}`, `GET /v1/files/{id}/content`,
`DELETE /v1/files/{id}`. Batches (`resources/batches.py`, `types/batch.py`): `POST /v1/batches` (JSON:
`input_file_id`, `endpoint`, `completion_window`, `metadata`, `output_expires_after`), `GET /v1/batches` (newest
first, `limit` and `after`), `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`.

Each state of a batch is seen by `polls_per_step` retrieves: validating -> in_progress -> finalizing -> completed. While
validating, the input file is read as the Batch API does: every line JSON with a unique `custom_id`, method POST, the
batch's endpoint as `url`, one model in the file, within the request and byte limits; otherwise the batch fails
with `errors.data` naming the line. On finalizing, every request is run: the images and mask are resolved from
their `{file_id}` or `{image_url}` references (the JSON edit body of the images reference; a multipart-style
`image` field is refused), then checked and answered exactly as FakeOpenAI answers `POST /v1/images/edits`.
Successes go to the output file, refusals to the error file, each line
`{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.

Scripting, for the next batch created: `plan(outcome="failed" | "expired" | "completed", done_before_end=N,
line_errors={custom_id: LineError(...)})`. `cancel` moves a batch to cancelling, then cancelled at the next poll,
with `batch_cancelled` errors for what was not done. `fail_next(status)` answers the next API call with an error;
`unauthorized()` answers 401 quoting the key sent (the worst case for leak tests).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.parser
import email.policy
import http.client
import json
import time
import uuid
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .loopback import LoopbackFake
from .openai_server import MODERATION_MESSAGE, FakeOpenAI

ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
             "/v1/images/generations", "/v1/images/edits")
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
IMAGE_PURPOSES = ("vision", "user_data")
MAX_REQUESTS = 50_000
MAX_BATCH_BYTES = 200 * 1024 * 1024
MAX_IMAGE_URL_CHARS = 20_971_520
STEPS = ("validating", "in_progress", "finalizing", "completed")


@dataclasses.dataclass(frozen=True)
class LineError:
    """How one request of a batch fails: an HTTP answer (status, code, message) or, with `batch_code`, no answer
    (`batch_expired`, `batch_cancelled`, `request_timeout`)."""

    status: int = 400
    code: str | None = "invalid_value"
    message: str = "Invalid request."
    batch_code: str | None = None

    @classmethod
    def moderation(cls) -> LineError:
        return cls(400, "moderation_blocked", MODERATION_MESSAGE)

    @classmethod
    def server_error(cls) -> LineError:
        return cls(500, None, "The server had an error while processing your request. Sorry about that!")

    @classmethod
    def timeout(cls) -> LineError:
        return cls(batch_code="request_timeout", message="The request timed out.")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the next batch does: `outcome` completed, failed (at validation, `errors` given) or expired (after
    `done_before_end` requests); `line_errors` fail chosen requests."""

    outcome: str = "completed"
    done_before_end: int = 0
    line_errors: Mapping[str, LineError] = dataclasses.field(default_factory=dict)
    errors: tuple[dict[str, Any], ...] = ()


@dataclasses.dataclass
class _Failure:
    status: int
    body: dict[str, Any]
    method: str | None = None
    path: str | None = None
    skip: int = 0


@dataclasses.dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None = None

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": self.expires_at, "status_details": None}


@dataclasses.dataclass
class FakeBatch:
    id: str
    endpoint: str
    input_file_id: str
    metadata: dict[str, str]
    plan: Plan
    created_at: int
    status: str = "validating"
    polls: int = 0
    lines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    times: dict[str, int] = dataclasses.field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "input_file_id": self.input_file_id,
            "completion_window": "24h", "status": self.status, "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id, "created_at": self.created_at,
            "expires_at": self.created_at + 24 * 3600, "request_counts": dict(self.counts),
            "metadata": self.metadata or None, "model": (self.lines[0]["body"].get("model") if self.lines else None),
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
        }
        for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                     "cancelled_at"):
            answer[name] = self.times.get(name)
        return answer


class FakeOpenAIBatch(LoopbackFake):
    """The fake server; `files`, `batches` and `calls` (method, path) are open for tests to inspect."""

    name = "fake OpenAI Batch"

    def __init__(self, *, polls_per_step: int = 1, max_requests: int = MAX_REQUESTS,
                 max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        super().__init__()
        self.handler = _Handler
        self.polls_per_step = polls_per_step
        self.max_requests = max_requests
        self.max_batch_bytes = max_batch_bytes
        self.files: dict[str, StoredFile] = {}
        self.deleted: list[str] = []
        self.batches: dict[str, FakeBatch] = {}
        self.calls: list[tuple[str, str]] = []
        self.images = FakeOpenAI()  # runs every batched edit; its `requests` and scripting are the direct fake's
        self._plans: deque[Plan] = deque()
        self._failures: deque[_Failure] = deque()
        self.latency_s = 0.0

    # lifecycle

    def _before_start(self) -> None:
        self.images.start()

    def _before_stop(self) -> None:
        self.images.stop()

    # scripting

    def plan(self, *, outcome: str = "completed", done_before_end: int = 0,
             line_errors: Mapping[str, LineError] | None = None,
             errors: tuple[dict[str, Any], ...] = ()) -> None:
        """How the next batch created behaves (after any plans already queued)."""
        if outcome not in ("completed", "failed", "expired"):
            raise ValueError(f"unknown outcome {outcome!r}")
        if outcome == "failed" and not errors:
            errors = ({"code": "token_limit_exceeded", "message": "Enqueued token limit reached for gpt-image-2 in "
                       "organization org-test. Limit: 1,000 enqueued tokens. Please try again once some in-progress "
                       "batches have been completed.", "param": None, "line": None},)
        with self._lock:
            self._plans.append(Plan(outcome=outcome, done_before_end=done_before_end,
                                    line_errors=dict(line_errors or {}), errors=tuple(errors)))

    def fail_next(self, status: int = 500, *, message: str = "The server had an error while processing your "
                  "request.", code: str | None = None, method: str | None = None, path: str | None = None,
                  skip: int = 0) -> None:
        """The next API call (of `method` on `path`, when given; after `skip` such calls pass) answers `status`
        with an OpenAI-shaped error."""
        body = {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                          "param": None, "code": code}}
        with self._lock:
            self._failures.append(_Failure(status, body, method, path, skip))

    def unauthorized(self) -> None:
        """The next call answers 401, quoting the key it was sent."""
        with self._lock:
            self._failures.append(_Failure(401, {}))

    def file_ids(self, purpose: str) -> list[str]:
        with self._lock:
            return [f.id for f in self.files.values() if f.purpose == purpose]

    # serving (handler threads)

    def _next_failure(self, method: str, path: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            for failure in self._failures:
                if failure.method not in (None, method) or failure.path not in (None, path):
                    continue
                if failure.skip:
                    failure.skip -= 1
                    return None
                self._failures.remove(failure)
                return failure.status, failure.body
            return None

    def _next_plan(self) -> Plan:
        with self._lock:
            return self._plans.popleft() if self._plans else Plan()

    def _store(self, filename: str, purpose: str, data: bytes, expires_after: int | None = None) -> StoredFile:
        now = int(time.time())
        stored = StoredFile(id=f"file-{uuid.uuid4().hex[:24]}", filename=filename, purpose=purpose, data=data,
                            created_at=now, expires_at=now + expires_after if expires_after else None)
        with self._lock:
            self.files[stored.id] = stored
        return stored

    def _advance(self, batch: FakeBatch) -> None:
        """One poll's worth of progress."""
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return
        batch.polls += 1
        if batch.status == "cancelling":
            self._finish(batch, "cancelled", done=batch.plan.done_before_end, code="batch_cancelled")
            return
        if batch.polls <= self.polls_per_step:  # each state is seen by `polls_per_step` polls
            return
        batch.polls = 1
        now = int(time.time())
        if batch.status == "validating":
            self._validate(batch)
            if batch.errors:
                batch.status, batch.times["failed_at"] = "failed", now
            else:
                batch.status, batch.times["in_progress_at"] = "in_progress", now
        elif batch.status == "in_progress":
            if batch.plan.outcome == "expired":
                self._finish(batch, "expired", done=batch.plan.done_before_end, code="batch_expired")
            else:
                batch.status, batch.times["finalizing_at"] = "finalizing", now
        elif batch.status == "finalizing":
            self._finish(batch, "completed", done=len(batch.lines), code="")

    def _validate(self, batch: FakeBatch) -> None:
        """The Batch API's checks of the input file; problems fail the whole batch."""
        if batch.plan.outcome == "failed":
            batch.errors = [dict(error) for error in batch.plan.errors]
            return
        data = self.files[batch.input_file_id].data
        errors: list[dict[str, Any]] = []
        if len(data) > self.max_batch_bytes:
            errors.append(_issue("file_too_large", f"The input file is {len(data)} bytes; the limit is "
                                 f"{self.max_batch_bytes}.", None))
        seen: set[str] = set()
        models: set[str] = set()
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                errors.append(_issue("invalid_json_line", "Blank lines are not allowed.", number))
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                errors.append(_issue("invalid_json_line", "This line is not parseable as valid JSON.", number))
                continue
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or not custom_id:
                errors.append(_issue("missing_required_parameter", "Missing custom_id.", number))
                continue
            if custom_id in seen:
                errors.append(_issue("duplicate_custom_id", f"The custom_id for this request is a duplicate of "
                                     f"another request: {custom_id}.", number))
            seen.add(custom_id)
            if line.get("method") != "POST":
                errors.append(_issue("invalid_method", "Only POST is supported.", number))
            if line.get("url") != batch.endpoint:
                errors.append(_issue("mismatched_endpoint", f"The url {line.get('url')!r} does not match the "
                                     f"batch's endpoint {batch.endpoint}.", number))
            body = line.get("body")
            if not isinstance(body, dict):
                errors.append(_issue("invalid_request", "The body must be a JSON object.", number))
                continue
            models.add(str(body.get("model")))
            batch.lines.append(line)
        if len(models) > 1:
            errors.append(_issue("mismatched_model", f"Requests in one batch must use one model, not "
                                 f"{', '.join(sorted(models))}.", None))
        if len(batch.lines) > self.max_requests:
            errors.append(_issue("too_many_requests", f"The input file has {len(batch.lines)} requests; the limit "
                                 f"is {self.max_requests}.", None))
        batch.errors = errors
        batch.counts["total"] = len(batch.lines)

    def _finish(self, batch: FakeBatch, status: str, *, done: int, code: str) -> None:
        """Run the first `done` requests; the rest end with the batch `code`; write the result files."""
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for index, line in enumerate(batch.lines):
            custom_id = line["custom_id"]
            if index >= done:
                failures.append(_output(custom_id, None, {"code": code, "message": _BATCH_MESSAGES[code]}))
                continue
            planned = batch.plan.line_errors.get(custom_id)
            if planned is not None and planned.batch_code:
                failures.append(_output(custom_id, None, {"code": planned.batch_code, "message": planned.message}))
                continue
            if planned is not None:
                failures.append(_output(custom_id, _response(planned.status, _error_body(planned)), None))
                continue
            status_code, body = self._run(batch, line["body"])
            (outputs if status_code == 200 else failures).append(_output(custom_id, _response(status_code, body),
                                                                         None))
        if outputs:
            batch.output_file_id = self._store(f"{batch.id}_output.jsonl", "batch_output", _jsonl(outputs)).id
        if failures:
            batch.error_file_id = self._store(f"{batch.id}_error.jsonl", "batch_output", _jsonl(failures)).id
        batch.counts.update(completed=len(outputs), failed=len(failures))
        batch.status = status
        batch.times[f"{status}_at"] = int(time.time())

    def _run(self, batch: FakeBatch, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One edit: its image references resolved, then sent as the direct multipart call it stands for to the
        fake images endpoint (`self.images`, a FakeOpenAI), whose answer (or refusal) is the line's."""
        try:
            if "image" in body or "image[]" in body:
                raise _ApiError(400, "Unknown parameter: 'image'. A JSON edit body takes 'images', an array of "
                                "image references ({file_id} or {image_url}).", param="image",
                                code="unknown_parameter")
            images = body.get("images")
            if not isinstance(images, list) or not images:
                raise _ApiError(400, "Missing required parameter: 'images'.", param="images",
                                code="missing_required_parameter")
            files = [self._resolve(ref, f"images[{i}]") for i, ref in enumerate(images)]
            mask = self._resolve(body["mask"], "mask") if body.get("mask") is not None else None
        except _ApiError as exc:
            return exc.status, exc.body
        fields = {k: v for k, v in body.items() if k not in ("images", "mask") and v is not None}
        return _post_multipart(self.images.url + "/v1/images/edits", fields, files, mask)

    def _resolve(self, ref: Any, where: str) -> tuple[str, bytes, str]:
        """The image an `{file_id}` or `{image_url}` reference names; exactly one of them, as the reference says."""
        if not isinstance(ref, dict) or len([k for k in ("file_id", "image_url") if ref.get(k)]) != 1 or (
                set(ref) - {"file_id", "image_url"}):
            raise _ApiError(400, f"Invalid '{where}': provide exactly one of 'image_url' or 'file_id'.", param=where,
                            code="invalid_value")
        field = "mask" if where == "mask" else "image"
        if ref.get("file_id"):
            with self._lock:
                stored = self.files.get(ref["file_id"])
            if stored is None:
                raise _ApiError(400, f"Invalid '{where}': file {ref['file_id']} does not exist.", param=where,
                                code="invalid_value")
            if stored.purpose not in IMAGE_PURPOSES:
                raise _ApiError(400, f"Invalid '{where}': file {stored.id} has purpose {stored.purpose!r}; images "
                                f"must be uploaded with purpose {' or '.join(IMAGE_PURPOSES)}.", param=where)
            return stored.filename, stored.data, "application/octet-stream"
        url = str(ref["image_url"])
        if len(url) > MAX_IMAGE_URL_CHARS:
            raise _ApiError(400, f"Invalid '{where}.image_url': string too long.", param=where,
                            code="string_above_max_length")
        if not url.startswith("data:") or ";base64," not in url:
            raise _ApiError(400, f"Invalid '{where}.image_url': this fake reads base64 data URLs only.", param=where)
        mime, encoded = url[5:].split(";base64,", 1)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _ApiError(400, f"Invalid '{where}.image_url': not valid base64.", param=where) from None
        return f"{field}.{mime.rsplit('/', 1)[-1]}", data, mime


class _ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _post_multipart(url: str, fields: Mapping[str, Any], images: list[tuple[str, bytes, str]],
                    mask: tuple[str, bytes, str] | None) -> tuple[int, dict[str, Any]]:
    """POSTs a multipart/form-data edit the way openai-python sends one (`image[]` parts); (status, JSON body)."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, mime) in [*(("image[]", image) for image in images),
                                         *((("mask", mask),) if mask else ())]:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {mime}\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    payload = b"".join(parts) + f"--{boundary}--\r\n".encode()
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=30)
    try:
        connection.request("POST", split.path, body=payload, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": "Bearer sk-fake-batch"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _forward(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    """POSTs a direct call's body as it came to the inner images fake; (status, its JSON body)."""
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=60)
    try:
        connection.request("POST", split.path, body=body, headers={
            "Content-Type": content_type, "Authorization": "Bearer sk-fake-batch"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


_BATCH_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
    "": "",
}


def _issue(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}", "body": body}


def _output(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id, "response": response, "error": error}


def _error_body(planned: LineError) -> dict[str, Any]:
    kind = "server_error" if planned.status >= 500 else "invalid_request_error"
    return {"error": {"message": planned.message, "type": kind, "param": None, "code": planned.code}}


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(record).encode("utf-8") + b"\n" for record in records)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAIBatch/1.0"
    timeout = 30
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        fake: FakeOpenAIBatch = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        with fake._lock:
            fake.calls.append((method, path))
        authorization = self.headers.get("authorization", "")
        if not authorization:
            self._json(401, _auth_error("You didn't provide an API key."))
            return
        if fake.latency_s:
            time.sleep(fake.latency_s)
        failure = fake._next_failure(method, path)
        if failure is not None:
            status, error = failure
            if status == 401:
                key = authorization.removeprefix("Bearer ").strip()
                error = _auth_error(f"Incorrect API key provided: {key}. You can find your API key at "
                                    "https://platform.openai.com/account/api-keys.")
            self._json(status, error)
            return
        try:
            self._route(fake, method, path, query, body)
        except _ApiError as exc:
            self._json(exc.status, exc.body)

    def _route(self, fake: FakeOpenAIBatch, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "files"]:
            if method == "POST" and len(parts) == 2:
                self._json(200, self._upload(fake, body).json())
                return
            stored = fake.files.get(parts[2]) if len(parts) >= 3 else None
            if stored is None:
                raise _ApiError(404, f"No such File object: {parts[2] if len(parts) > 2 else ''}", param="id",
                                code=None)
            if method == "GET" and len(parts) == 3:
                self._json(200, stored.json())
            elif method == "GET" and parts[3:] == ["content"]:
                self._raw(200, stored.data)
            elif method == "DELETE" and len(parts) == 3:
                with fake._lock:
                    del fake.files[stored.id]
                    fake.deleted.append(stored.id)
                self._json(200, {"id": stored.id, "object": "file", "deleted": True})
            else:
                raise _ApiError(404, f"Invalid URL ({method} {path})")
            return
        if method == "POST" and path == "/v1/images/edits":
            # Direct calls share the base URL, as at OpenAI: the inner images fake answers them (and records them).
            status, answer = _forward(fake.images.url + path, body, self.headers.get("content-type", ""))
            self._raw_json(status, answer)
            return
        if parts[:2] == ["v1", "batches"]:
            if method == "POST" and len(parts) == 2:
                self._json(200, self._create_batch(fake, body).json())
                return
            if method == "GET" and len(parts) == 2:
                self._json(200, self._list(fake, query))
                return
            with fake._lock:
                batch = fake.batches.get(parts[2])
            if batch is None:
                raise _ApiError(404, f"No batch found with id '{parts[2]}'.", code=None)
            with fake._lock:
                if method == "GET" and len(parts) == 3:
                    fake._advance(batch)
                elif method == "POST" and parts[3:] == ["cancel"]:
                    if batch.status in ("validating", "in_progress", "finalizing"):
                        batch.status, batch.times["cancelling_at"] = "cancelling", int(time.time())
                        if not batch.lines:
                            fake._validate(batch)
                            batch.errors = []
                else:
                    raise _ApiError(404, f"Invalid URL ({method} {path})")
                answer = batch.json()
            self._json(200, answer)
            return
        raise _ApiError(404, f"Invalid URL ({method} {path})")

    def _upload(self, fake: FakeOpenAIBatch, body: bytes) -> StoredFile:
        content_type = self.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise _ApiError(400, "The files endpoint expects multipart/form-data.")
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, str] = {}
        upload: tuple[str, bytes] | None = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None and name == "file":
                upload = (part.get_filename() or "upload", payload)
            elif name:
                fields[str(name)] = payload.decode("utf-8")
        if upload is None:
            raise _ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
        purpose = fields.get("purpose", "")
        if purpose not in PURPOSES:
            raise _ApiError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose", code="invalid_value")
        filename, data = upload
        if purpose == "batch":
            if not filename.endswith(".jsonl"):
                raise _ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
            if len(data) > fake.max_batch_bytes:
                raise _ApiError(400, f"File is too large for Batch API: {len(data)} bytes (limit "
                                f"{fake.max_batch_bytes}).", param="file")
        expires = None
        if "expires_after[seconds]" in fields:
            if fields.get("expires_after[anchor]") != "created_at":
                raise _ApiError(400, "Invalid 'expires_after.anchor': must be 'created_at'.", param="expires_after")
            expires = int(fields["expires_after[seconds]"])
            if not 3600 <= expires <= 2_592_000:
                raise _ApiError(400, "Invalid 'expires_after.seconds': must be between 3600 and 2592000.",
                                param="expires_after")
        return fake._store(filename, purpose, data, expires)

    def _create_batch(self, fake: FakeOpenAIBatch, body: bytes) -> FakeBatch:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise _ApiError(400, "We could not parse the JSON body of your request.") from None
        endpoint = data.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise _ApiError(400, f"Invalid value for 'endpoint': {endpoint!r}.", param="endpoint", code="invalid_value")
        if data.get("completion_window") != "24h":
            raise _ApiError(400, "Invalid value for 'completion_window': only '24h' is supported.",
                            param="completion_window", code="invalid_value")
        metadata = data.get("metadata") or {}
        if len(metadata) > 16 or any(len(str(k)) > 64 or not isinstance(v, str) or len(v) > 512
                                     for k, v in metadata.items()):
            raise _ApiError(400, "Invalid 'metadata': at most 16 pairs, keys up to 64 and string values up to 512 "
                            "characters.", param="metadata")
        expires = data.get("output_expires_after")
        if expires is not None and (expires.get("anchor") != "created_at"
                                    or not 3600 <= int(expires.get("seconds", 0)) <= 2_592_000):
            raise _ApiError(400, "Invalid 'output_expires_after'.", param="output_expires_after")
        with fake._lock:
            stored = fake.files.get(str(data.get("input_file_id")))
        if stored is None:
            raise _ApiError(400, f"Invalid 'input_file_id': file {data.get('input_file_id')} does not exist.",
                            param="input_file_id")
        if stored.purpose != "batch":
            raise _ApiError(400, f"Invalid 'input_file_id': file {stored.id} must have purpose 'batch'.",
                            param="input_file_id")
        batch = FakeBatch(id=f"batch_{uuid.uuid4().hex[:24]}", endpoint=endpoint, input_file_id=stored.id,
                          metadata=dict(metadata), plan=fake._next_plan(), created_at=int(time.time()))
        with fake._lock:
            fake.batches[batch.id] = batch
        return batch

    def _list(self, fake: FakeOpenAIBatch, query: dict[str, list[str]]) -> dict[str, Any]:
        limit = int((query.get("limit") or ["20"])[0])
        after = (query.get("after") or [None])[0]
        with fake._lock:
            newest_first = list(reversed(list(fake.batches.values())))
        if after is not None:
            ids = [b.id for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1:] if after in ids else []
        page = newest_first[:limit]
        return {"object": "list", "data": [b.json() for b in page], "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None, "has_more": len(newest_first) > limit}

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode("utf-8"), "application/json")

    def _raw_json(self, status: int, data: bytes) -> None:
        self._send(status, data, "application/json")

    def _raw(self, status: int, data: bytes) -> None:
        self._send(status, data, "application/octet-stream")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _auth_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
