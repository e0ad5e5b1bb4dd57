"""GPT Image edits through the Batch API, with the real openai client against the fake Files and Batch endpoints."""

from __future__ import annotations

import hashlib
import io
import json

import openai
import pytest
from PIL import Image, ImageDraw

from catalog_service.imaging.encode import encode
from catalog_service.scenes.base import ProviderUnavailable, SceneRefused
from catalog_service.scenes.openai_batch import (
    BATCH_PRICE_FACTOR,
    BatchEdit,
    BatchStatus,
    OpenAIBatchClient,
    SubmittedBatch,
)
from catalog_service.scenes.openai_images import rectangle_mask
from catalog_service.scenes.pricing import PriceTable
from fakes.openai_batch_server import FakeOpenAIBatch, LineError

API_KEY = "sk-test-batch-0123456789abcdef"
SHOP_KEY = hashlib.sha256(b"shop-7").hexdigest()[:32]


def png(size=(64, 64), colour=(200, 30, 30, 255)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=colour)
    return encode(image, "png")


def jpeg(size=(64, 48), colour=(40, 140, 150)) -> bytes:
    return encode(Image.new("RGB", size, colour), "jpeg")


REFERENCE = ("reference-1.jpg", jpeg(), "image/jpeg")  # the shop's reference: the same bytes in every edit


def edit(custom_id: str, *, model: str = "gpt-image-2", colour=(200, 30, 30, 255), mask: bytes | None = None,
         **options) -> BatchEdit:
    cutout = ("cutout.png", png(colour=colour), "image/png")
    return BatchEdit(custom_id=custom_id, model=model, prompt=f"The product on a kitchen counter ({custom_id}).",
                     images=(cutout, REFERENCE), mask=("mask.png", mask, "image/png") if mask else None,
                     size="1024x1024", quality="low", output_format="jpeg", output_compression=80,
                     safety_identifier=SHOP_KEY, **options)


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


@pytest.fixture
def fake():
    with FakeOpenAIBatch() as server:
        yield server


def openai_client(fake: FakeOpenAIBatch) -> openai.OpenAI:
    client = openai.OpenAI(api_key=API_KEY, base_url=fake.url + "/v1", max_retries=0, timeout=5)
    _CLIENTS.append(client)
    return client


def batch_client(fake: FakeOpenAIBatch, **options) -> OpenAIBatchClient:
    return OpenAIBatchClient(client=openai_client(fake), **options)


def poll_to_end(batches: OpenAIBatchClient, batch_id: str) -> list[BatchStatus]:
    seen = []
    for _ in range(10):
        state = batches.poll(batch_id)
        seen.append(state.status)
        if state.is_terminal:
            return seen
    raise AssertionError(f"batch {batch_id} never ended: {seen}")


def input_lines(fake: FakeOpenAIBatch, submitted: SubmittedBatch) -> list[dict]:
    return [json.loads(line) for line in fake.files[submitted.input_file_id].data.splitlines()]


def test_a_submission_runs_to_completion_and_every_result_comes_back_by_custom_id(fake):
    batches = batch_client(fake)
    mask = rectangle_mask((64, 64), (0, 32, 64, 64))
    edits = [edit("render-1"), edit("render-2", colour=(30, 200, 30, 255)),
             edit("render-3", colour=(30, 30, 200, 255), mask=mask)]

    [submitted] = batches.submit(edits, submission="backfill-7")

    assert submitted.custom_ids == ("render-1", "render-2", "render-3")
    # Three cutouts, one mask and one reference shared by all three edits: each distinct image uploaded once.
    assert len(submitted.image_file_ids) == 5
    images = [fake.files[file_id] for file_id in submitted.image_file_ids]
    assert {f.purpose for f in images} == {"vision"} and all(f.expires_at for f in images)
    lines = input_lines(fake, submitted)
    assert [line["url"] for line in lines] == ["/v1/images/edits"] * 3
    assert all("image" not in line["body"] for line in lines)
    assert [len(line["body"]["images"]) for line in lines] == [2, 2, 2]
    assert lines[0]["body"]["images"][1] == lines[1]["body"]["images"][1]  # the shared reference, by file_id
    assert set(lines[2]["body"]["mask"]) == {"file_id"}
    assert lines[0]["body"]["safety_identifier"] == SHOP_KEY
    assert fake.batches[submitted.batch_id].metadata["submission"] == "backfill-7"

    assert poll_to_end(batches, submitted.batch_id) == ["validating", "in_progress", "finalizing", "completed"]
    state = batches.poll(submitted.batch_id)
    assert (state.total, state.completed, state.failed) == (3, 3, 0)

    results = {result.custom_id: result for result in batches.results(state)}
    assert set(results) == {"render-1", "render-2", "render-3"}
    run = {req.fields["prompt"]: req for req in fake.images.requests}  # the edits as the images endpoint saw them
    prices = PriceTable()
    for custom_id, result in results.items():
        assert result.ok and not result.retry_direct
        assert (result.content_type, result.width, result.height) == ("image/jpeg", 1024, 1024)
        with Image.open(io.BytesIO(result.data)) as image:
            assert image.size == (1024, 1024)
        sent = run[f"The product on a kitchen counter ({custom_id})."]
        assert result.raw_usage == sent.usage
        assert result.usage["output_tokens"] == sent.usage["output_tokens"] > 0
        direct = prices.cost("gpt-image-2", result.raw_usage)
        assert direct * BATCH_PRICE_FACTOR == pytest.approx(direct / 2)
    assert [len(req.images) for req in run.values()] == [2, 2, 2]
    assert sum(req.mask is not None for req in run.values()) == 1

    deleted = batches.cleanup(submitted)
    assert deleted == 7  # five images, the input file and the output file
    assert not set(submitted.image_file_ids) & set(fake.files)
    assert submitted.input_file_id not in fake.files and state.output_file_id not in fake.files


def test_images_can_travel_inline_as_data_urls(fake):
    batches = batch_client(fake, image_transport="data_url")

    [submitted] = batches.submit([edit("render-1"), edit("render-2")], submission="backfill-8")

    assert submitted.image_file_ids == ()
    assert fake.file_ids("vision") == []
    first = input_lines(fake, submitted)[0]["body"]["images"][0]
    assert first["image_url"].startswith("data:image/png;base64,")
    poll_to_end(batches, submitted.batch_id)
    assert all(result.ok for result in batches.results(submitted.batch_id))


def test_a_failed_batch_is_reported_so_the_caller_falls_back_to_direct_calls(fake):
    batches = batch_client(fake)
    fake.plan(outcome="failed")
    [submitted] = batches.submit([edit("render-1"), edit("render-2")], submission="backfill-9")

    assert poll_to_end(batches, submitted.batch_id)[-1] == BatchStatus.FAILED
    state = batches.poll(submitted.batch_id)

    assert state.needs_fallback
    assert state.errors[0].code == "token_limit_exceeded" and "Enqueued token limit" in state.errors[0].message
    assert list(batches.results(state)) == []  # nothing came back: every submitted custom_id goes direct
    assert "failed" in state.describe()


def test_an_expired_batch_returns_what_was_done_and_marks_the_rest_for_direct_calls(fake):
    batches = batch_client(fake)
    fake.plan(outcome="expired", done_before_end=1)
    [submitted] = batches.submit([edit("render-1"), edit("render-2"), edit("render-3")], submission="backfill-10")

    assert poll_to_end(batches, submitted.batch_id)[-1] == BatchStatus.EXPIRED
    state = batches.poll(submitted.batch_id)
    results = {result.custom_id: result for result in batches.results(state)}

    assert state.needs_fallback and (state.completed, state.failed) == (1, 2)
    assert results["render-1"].ok
    for custom_id in ("render-2", "render-3"):
        assert results[custom_id].retry_direct
        assert isinstance(results[custom_id].error, ProviderUnavailable)
        assert results[custom_id].error.reason == "batch_expired"
        assert custom_id in str(results[custom_id].error)


def test_line_errors_are_typed_and_mapped_to_their_custom_id(fake):
    batches = batch_client(fake)
    wrong_mask = rectangle_mask((32, 32), (0, 0, 16, 16))  # the cutout is 64x64: OpenAI refuses the line
    fake.plan(line_errors={"render-2": LineError.moderation(), "render-3": LineError.server_error(),
                           "render-4": LineError.timeout()})
    edits = [edit("render-1"), edit("render-2"), edit("render-3"), edit("render-4"), edit("render-5", mask=wrong_mask)]
    [submitted] = batches.submit(edits, submission="backfill-11")
    poll_to_end(batches, submitted.batch_id)

    results = {result.custom_id: result for result in batches.results(submitted.batch_id)}

    assert results["render-1"].ok
    refused = results["render-2"].error
    assert isinstance(refused, SceneRefused) and refused.reason == "content_policy"
    assert not results["render-2"].retry_direct
    assert results["render-3"].retry_direct and results["render-3"].status_code == 500
    assert results["render-4"].retry_direct and results["render-4"].error.reason == "request_timeout"
    invalid = results["render-5"].error
    assert isinstance(invalid, SceneRefused) and invalid.reason == "invalid_request"
    assert "same dimensions" in str(invalid) and "render-5" in str(invalid)


def test_results_already_recorded_can_be_skipped_when_reading_again(fake):
    batches = batch_client(fake)
    [submitted] = batches.submit([edit("render-1"), edit("render-2")], submission="backfill-12")
    poll_to_end(batches, submitted.batch_id)

    again = [result.custom_id for result in batches.results(submitted.batch_id, skip={"render-1"})]

    assert again == ["render-2"]


def test_a_big_submission_is_split_across_files_within_the_limits():
    with FakeOpenAIBatch(max_requests=3) as fake:
        batches = batch_client(fake, max_requests=3)
        edits = [edit(f"render-{n}") for n in range(7)]

        submitted = batches.submit(edits, submission="backfill-13")

        assert [len(s.custom_ids) for s in submitted] == [3, 3, 1]
        assert [s.chunk for s in submitted] == [0, 1, 2]
        assert [c for s in submitted for c in s.custom_ids] == [e.custom_id for e in edits]
        for s in submitted:
            assert poll_to_end(batches, s.batch_id)[-1] == BatchStatus.COMPLETED
        assert {r.custom_id for s in submitted for r in batches.results(s.batch_id) if r.ok} == {
            e.custom_id for e in edits}


def test_the_byte_limit_splits_too_and_each_batch_keeps_to_one_model():
    with openai.OpenAI(api_key=API_KEY) as unused:
        line_bytes = len(OpenAIBatchClient(client=unused)._line(edit("render-0"), None)) + 1
    limit = 2 * line_bytes + line_bytes // 2  # two lines fit in a file, three do not
    with FakeOpenAIBatch(max_batch_bytes=limit) as fake:
        batches = batch_client(fake, max_file_bytes=limit)
        edits = [edit(f"render-{n}") for n in range(5)] + [edit("render-flare", model="gpt-image-2.5-flare")]

        submitted = batches.submit(edits, submission="backfill-14")

        assert [(s.model, len(s.custom_ids)) for s in submitted] == [
            ("gpt-image-2", 2), ("gpt-image-2", 2), ("gpt-image-2", 1), ("gpt-image-2.5-flare", 1)]
        assert all(len(fake.files[s.input_file_id].data) <= limit for s in submitted)
        for s in submitted:  # each passes the fake's validation of size, endpoint and model
            assert [batches.poll(s.batch_id).status for _ in range(2)] == ["validating", "in_progress"]


def test_a_cancelled_batch_sends_its_unfinished_edits_back_for_direct_calls(fake):
    batches = batch_client(fake)
    [submitted] = batches.submit([edit("render-1"), edit("render-2")], submission="backfill-15")

    with pytest.raises(ValueError, match="validating"):
        batches.cleanup(submitted)  # the batch still needs its files
    assert batches.cancel(submitted.batch_id).status == BatchStatus.CANCELLING
    assert batches.poll(submitted.batch_id).status == BatchStatus.CANCELLED

    results = list(batches.results(submitted.batch_id))
    assert [r.error.reason for r in results] == ["batch_cancelled", "batch_cancelled"]
    assert all(r.retry_direct for r in results)


def test_after_a_restart_the_stored_batch_or_its_submission_key_is_enough(fake):
    batches = batch_client(fake)
    [mine] = batches.submit([edit("render-1")], submission="backfill-16")
    batches.submit([edit("render-2")], submission="backfill-17")

    stored = json.dumps(mine.to_dict())  # what the caller keeps, e.g. in a database column
    restored = SubmittedBatch.from_dict(json.loads(stored))

    assert restored == mine
    assert batch_client(fake).find("backfill-16") == [mine.batch_id]
    poll_to_end(batches, restored.batch_id)
    assert [r.custom_id for r in batches.results(restored.batch_id)] == ["render-1"]


def test_an_invalid_edit_is_refused_before_anything_is_uploaded(fake):
    batches = batch_client(fake)
    gif = ("cutout.gif", b"GIF89a" + b"\0" * 32, "image/gif")

    with pytest.raises(SceneRefused, match="render-2") as caught:
        batches.submit([edit("render-1"), BatchEdit(custom_id="render-2", model="gpt-image-2", prompt="A scene.",
                                                    images=(gif,))], submission="backfill-18")
    assert caught.value.reason == "invalid_request"
    with pytest.raises(SceneRefused, match="share the id"):
        batches.submit([edit("render-1"), edit("render-1")], submission="backfill-18")
    with pytest.raises(SceneRefused, match="larger than a batch file"):
        batch_client(fake, max_file_bytes=100).submit([edit("render-1")], submission="backfill-18")
    assert fake.calls == []


def test_a_failure_to_create_a_batch_leaves_no_files_behind(fake):
    batches = batch_client(fake)
    fake.fail_next(500, method="POST", path="/v1/batches")

    with pytest.raises(ProviderUnavailable, match="HTTP 500") as caught:
        batches.submit([edit("render-1"), edit("render-2")], submission="backfill-19")

    assert caught.value.retryable
    assert fake.files == {}  # the images and the input file were deleted again


def test_when_a_later_batch_fails_the_earlier_ones_are_cancelled(fake):
    batches = batch_client(fake, max_requests=1)
    fake.fail_next(503, method="POST", path="/v1/batches", skip=1)

    with pytest.raises(ProviderUnavailable):
        batches.submit([edit("render-1"), edit("render-2")], submission="backfill-20")

    [first] = fake.batches.values()
    assert first.status == "cancelling"
    assert fake.files == {}


def test_iter_submit_hands_over_each_batch_before_making_the_next(fake):
    batches = batch_client(fake, max_requests=1)
    fake.fail_next(503, method="POST", path="/v1/batches", skip=1)
    kept = []

    with pytest.raises(ProviderUnavailable):
        for submitted in batches.iter_submit([edit("render-1"), edit("render-2")], submission="backfill-21"):
            kept.append(submitted)

    assert [s.custom_ids for s in kept] == [("render-1",)]
    assert fake.batches[kept[0].batch_id].status == "validating"  # kept, still running


def test_a_refused_key_is_reported_without_echoing_it(fake):
    batches = batch_client(fake)
    fake.unauthorized()

    with pytest.raises(SceneRefused) as caught:
        batches.poll("batch_123")

    assert caught.value.reason == "auth" and "OPENAI_API_KEY" in str(caught.value)
    assert API_KEY not in str(caught.value) and caught.value.__cause__ is None


def test_an_unknown_batch_and_a_slow_answer_are_told_apart(fake):
    batches = batch_client(fake, timeout_s=0.2)

    with pytest.raises(SceneRefused) as missing:
        batches.poll("batch_missing")
    assert missing.value.reason == "not_found"

    fake.latency_s = 0.6
    with pytest.raises(ProviderUnavailable) as slow:
        batches.poll("batch_missing")
    assert slow.value.reason == "timeout"


def test_results_are_read_only_once_the_batch_has_ended(fake):
    batches = batch_client(fake)
    [submitted] = batches.submit([edit("render-1")], submission="backfill-22")

    with pytest.raises(ValueError, match="validating|in_progress"):
        list(batches.results(submitted.batch_id))


def test_the_direct_edit_arguments_convert_to_a_batch_edit():
    cutout = ("cutout.png", png(), "image/png")
    kwargs = {"model": "gpt-image-2", "image": [cutout, REFERENCE], "prompt": "A scene.", "size": "1024x1024",
              "quality": "medium", "output_format": "webp", "output_compression": 90, "n": 1,
              "safety_identifier": SHOP_KEY, "mask": ("mask.png", rectangle_mask((64, 64), (0, 0, 8, 8)), "image/png")}

    converted = BatchEdit.from_edit_kwargs("render-1", kwargs)

    assert converted.images == (cutout, REFERENCE) and converted.mask == kwargs["mask"]
    assert (converted.quality, converted.output_format, converted.output_compression) == ("medium", "webp", 90)
    with pytest.raises(ValueError, match="stream"):
        BatchEdit.from_edit_kwargs("render-2", {**kwargs, "stream": True})


def test_the_fake_refuses_a_line_that_sends_images_the_multipart_way(fake):
    client = openai_client(fake)
    line = {"custom_id": "render-1", "method": "POST", "url": "/v1/images/edits",
            "body": {"model": "gpt-image-2", "prompt": "A scene.", "image": "cutout.png"}}
    upload = client.files.create(file=("in.jsonl", json.dumps(line).encode(), "application/jsonl"), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/images/edits", completion_window="24h")
    batches = batch_client(fake)

    poll_to_end(batches, batch.id)
    [result] = batches.results(batch.id)

    assert result.custom_id == "render-1" and result.error.reason == "invalid_request"
    assert "'images'" in str(result.error)
