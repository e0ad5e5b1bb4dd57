"""Recorded usage calibrates the next estimate: calls recorded as jobs record them (record_usage), read back by
spend.load_calibration, priced by the same table the OpenAI provider uses."""

from __future__ import annotations

import statistics

import pytest
from sqlalchemy import select

from catalog_service.models import UsageRecord
from catalog_service.pipeline import MadeAsset
from catalog_service.scenes.pricing import PriceTable
from catalog_service.shops import create_shop
from catalog_service.spend import load_calibration
from jobs.common import record_usage

TABLE = PriceTable()
PROMPT_CHARS = 600
INPUTS = 3  # the cutout and two references


def scene(usage: dict[str, int], *, size: str = "1536x1024", quality: str = "medium") -> MadeAsset:
    """A made scene as the pipeline hands it to the job: its usage, cost, the size asked and the estimate."""
    estimate = TABLE.estimate("gpt-image-2", quality, size or "1536x1024", INPUTS, PROMPT_CHARS)
    return MadeAsset(kind="scene", preset="kitchen", data=b"", content_type="image/jpeg", ext="jpg", width=1536,
                     height=1024, provider="openai", model="gpt-image-2", quality=quality, usage=usage,
                     cost_usd=TABLE.cost("gpt-image-2", usage), estimate_usd=estimate, size=size)


def usage(output: int, image: int, text: int = 150) -> dict[str, int]:
    return {"input_text_tokens": text, "input_image_tokens": image, "output_tokens": output,
            "total_tokens": text + image + output}


@pytest.fixture
def db(app):  # type: ignore[no-untyped-def]
    with app.app_context():
        yield app.extensions["catalog_db"]


@pytest.fixture
def shops(db):  # type: ignore[no-untyped-def]
    with db.transaction() as session:
        return [create_shop(session, platform="generic", domain=f"s{n}.example.com")[0].id for n in range(2)]


def record(db, shop_id: int, made: MadeAsset) -> None:  # type: ignore[no-untyped-def]
    with db.transaction() as session:
        record_usage(session, shop_id, None, made, quality=made.quality)


def test_a_usage_record_keeps_the_size_asked_and_the_estimate(db, shops) -> None:
    """What calibration reads: the WxH asked of the model and what was estimated before the call."""
    made = scene(usage(1500, 6000))
    record(db, shops[0], made)
    with db.transaction() as session:
        row = session.scalars(select(UsageRecord)).one()
        assert (row.size, row.quality, row.output_tokens, row.input_image_tokens) == ("1536x1024", "medium", 1500,
                                                                                      6000)
        assert row.estimate_usd == pytest.approx(made.estimate_usd) and row.cost_usd == pytest.approx(made.cost_usd)


def test_after_a_handful_of_calls_the_next_estimate_is_within_ten_percent(db, shops) -> None:
    """The table expects 1,367 output tokens and about 21,000 input image tokens; the model used about 2,300 and
    5,200. The table's estimate is far off; after five recorded calls the next one is within 10% of their cost."""
    shop_id = shops[0]
    calls = [usage(2310, 5150), usage(2280, 5240), usage(2350, 5190), usage(2290, 5230), usage(2330, 5170)]
    costs = [TABLE.cost("gpt-image-2", call) for call in calls]
    actual = statistics.mean(costs)
    before = TABLE.estimate("gpt-image-2", "medium", "1536x1024", INPUTS, PROMPT_CHARS)
    assert abs(before - actual) / actual > 0.10  # the table alone is off

    for call in calls:
        record(db, shop_id, scene(call))
    with db.transaction() as session:
        calibration = load_calibration(session, shop_id)
    after = TABLE.estimate("gpt-image-2", "medium", "1536x1024", INPUTS, PROMPT_CHARS, calibration=calibration)

    assert abs(after - actual) / actual < 0.10, (before, after, actual)


def test_output_is_learnt_from_every_shop_and_input_only_from_the_shop_itself(db, shops) -> None:
    """Another shop's calls teach this shop's output tokens (same model, quality, size), not its input images,
    which depend on the references each shop sends."""
    other, own = shops
    for _ in range(3):
        record(db, other, scene(usage(2400, 30000)))
    with db.transaction() as session:
        observed = load_calibration(session, own).observed("gpt-image-2", "medium", "1536x1024")
        theirs = load_calibration(session, other).observed("gpt-image-2", "medium", "1536x1024")
    assert observed is not None and observed.output_tokens == 2400 and observed.input_image_tokens is None
    assert theirs is not None and theirs.input_image_tokens == 30000


def test_calls_without_measured_usage_or_size_teach_nothing(db, shops) -> None:
    """A call OpenAI answered without usage (its estimate stood in as its cost) or recorded before sizes were
    kept is not a measurement."""
    shop_id = shops[0]
    for _ in range(3):
        record(db, shop_id, scene(usage(0, 0, 0)))
        record(db, shop_id, scene(usage(2400, 5000), size=""))
    with db.transaction() as session:
        assert session.scalar(select(UsageRecord.id).limit(1)) is not None
        assert len(load_calibration(session, shop_id)) == 0
