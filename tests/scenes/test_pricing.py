"""The price table: defaults, overrides from JSON, exact costs from usage, estimates from per-model, per-quality,
per-shape figures plus input images and prompt, the Batch API's half price, and calibration from recorded usage."""

from __future__ import annotations

import pytest

from catalog_service.scenes.openai_images import MODELS, RETIRED
from catalog_service.scenes.pricing import (
    CALIBRATION_MIN_SAMPLES,
    Calibration,
    ModelPrice,
    PriceTable,
    Tokens,
    UsageSample,
    input_image_tokens,
    shape_of,
)

USAGE = {
    "input_tokens": 1500,
    "input_tokens_details": {"image_tokens": 1000, "text_tokens": 500},
    "output_tokens": 2000,
    "total_tokens": 3500,
}


def output_usd(model: str, quality: str, size: str) -> float:
    """What an estimate with no input images and no prompt comes to: the output tokens alone."""
    return PriceTable().estimate(model, quality, size, n_input_images=0, prompt_chars=0)


def test_defaults_price_every_offered_model_and_no_shut_down_one():
    """Every model the provider offers has a default price; the shut-down ones have none."""
    table = PriceTable()
    for model in MODELS:
        assert table.price(model) == ModelPrice(5.0, 8.0, 30.0), model
    for model in RETIRED:
        with pytest.raises(ValueError, match="no price"):
            table.price(model)


@pytest.mark.parametrize(("quality", "square", "landscape"), [
    ("low", 0.006, 0.005), ("medium", 0.053, 0.041), ("high", 0.211, 0.165)])
def test_output_figures_are_openais_published_examples(quality, square, landscape):
    """gpt-image-2's output alone costs OpenAI's example prices: 1024x1024, and 1536x1024 or 1024x1536."""
    assert output_usd("gpt-image-2", quality, "1024x1024") == pytest.approx(square, abs=5e-4)
    assert output_usd("gpt-image-2", quality, "1536x1024") == pytest.approx(landscape, abs=5e-4)
    assert output_usd("gpt-image-2", quality, "1024x1536") == output_usd("gpt-image-2", quality, "1536x1024")


@pytest.mark.parametrize(("size", "like"), [
    ("2048x2048", "1024x1024"), ("1088x1088", "1024x1024"), ("1536x864", "1536x1024"), ("3840x2160", "1536x1024"),
    ("2160x3840", "1024x1536"), ("1024x1280", "1024x1536"), ((2048, 1360), "1536x1024")])
def test_a_custom_size_takes_the_figure_of_its_nearest_shape(size, like):
    """Output tokens do not grow with area: a custom size costs what the standard size of its shape costs."""
    assert output_usd("gpt-image-2", "medium", size) == output_usd("gpt-image-2", "medium", like)


def test_shape_of_picks_the_nearest_aspect():
    assert (shape_of(1024, 1024), shape_of(1920, 1080), shape_of(1080, 1350)) == ("square", "landscape", "portrait")


def test_auto_is_estimated_at_the_dearest_choice():
    """`auto` quality is estimated as high and `auto` size as square, so an estimate does not undershoot."""
    assert output_usd("gpt-image-2", "auto", "1024x1024") == output_usd("gpt-image-2", "high", "1024x1024")
    assert output_usd("gpt-image-2", "medium", "auto") == output_usd("gpt-image-2", "medium", "1024x1024")


@pytest.mark.parametrize("model", ["gpt-image-2.5-flare", "gpt-image-2.6-sunburst"])
def test_xhigh_and_max_are_estimated_above_high(model):
    """2.5 and 2.6 make xhigh and max, which have no published figure: estimated above high, max above xhigh."""
    high, xhigh, top = (output_usd(model, quality, "1024x1024") for quality in ("high", "xhigh", "max"))
    assert high < xhigh < top


def test_gpt_image_2_has_no_xhigh():
    with pytest.raises(ValueError, match="quality"):
        output_usd("gpt-image-2", "xhigh", "1024x1024")


def test_estimate_by_hand():
    """gpt-image-2, medium 1024x1024, the 1024x1024 cutout as its one input image, 400 prompt characters."""
    estimate = PriceTable().estimate("gpt-image-2", "medium", "1024x1024", n_input_images=1, prompt_chars=400,
                                     input_sizes=[(1024, 1024)])
    cutout = 65 + 129 * 4 + 4160  # fitted to 768x768: four 512-px tiles, plus high input fidelity
    assert input_image_tokens(1024, 1024) == cutout
    assert estimate == pytest.approx((100 * 5 + cutout * 8 + 1767 * 30) / 1e6)


def test_input_images_are_priced_at_the_size_sent():
    """A bigger or non-square input reads as more tokens; an image of unknown size is estimated as a large one;
    low input fidelity is cheaper; more images cost more."""
    assert input_image_tokens(512, 512) < input_image_tokens(1024, 1024) < input_image_tokens(1536, 1024)
    assert input_image_tokens(4096, 4096) == input_image_tokens(2048, 2048)  # fitted within 2048 first
    assert input_image_tokens(1024, 1024, "low") < input_image_tokens(1024, 1024, "high")
    table = PriceTable()

    def estimate(images: int, sizes=()) -> float:  # type: ignore[no-untyped-def]
        return table.estimate("gpt-image-2", "medium", "1024x1024", images, 100, input_sizes=sizes)

    assert estimate(1, [(512, 512)]) < estimate(1, [(1536, 1024)]) == estimate(1)
    assert estimate(1) < estimate(4)
    with pytest.raises(ValueError, match="input sizes"):
        estimate(1, [(512, 512), (512, 512)])


def test_the_batch_api_is_half_price():
    """The Batch API bills half: cost and estimate alike."""
    table = PriceTable()
    assert table.cost("gpt-image-2", USAGE, batch=True) == pytest.approx(table.cost("gpt-image-2", USAGE) / 2)
    direct = table.estimate("gpt-image-2", "high", "1536x1024", 2, 300)
    assert table.estimate("gpt-image-2", "high", "1536x1024", 2, 300, batch=True) == pytest.approx(direct / 2)


def test_cost_from_usage_by_hand():
    """cost() prices text input, image input and output tokens separately (USD per 1M tokens)."""
    assert PriceTable().cost("gpt-image-2", USAGE) == pytest.approx((500 * 5 + 1000 * 8 + 2000 * 30) / 1e6)


def test_cost_accepts_flattened_usage():
    """The flattened usage kept on SceneResult prices the same as OpenAI's shape."""
    flat = {"input_text_tokens": 500, "input_image_tokens": 1000, "output_tokens": 2000, "total_tokens": 3500}
    table = PriceTable()
    assert table.cost("gpt-image-2", flat) == pytest.approx(table.cost("gpt-image-2", USAGE))


def test_cost_without_split_prices_input_as_image():
    """Without input_tokens_details all input tokens are priced at the dearer image-input rate."""
    usage = {"input_tokens": 1500, "output_tokens": 0, "total_tokens": 1500}
    assert PriceTable().cost("gpt-image-2", usage) == pytest.approx(1500 * 8 / 1e6)


@pytest.mark.parametrize("usage", [{"output_tokens": -1}, {"output_tokens": 1.5}, {"output_tokens": "10"},
                                   {"input_tokens_details": []}])
def test_cost_refuses_malformed_usage(usage):
    """Negative, fractional or mistyped token counts are a ValueError, not a wrong price."""
    with pytest.raises(ValueError):
        PriceTable().cost("gpt-image-2", usage)


def test_patterns_cover_families_and_snapshots():
    """A dated snapshot or family member is priced by its pattern; an exact entry wins over the pattern."""
    table = PriceTable.from_json('{"gpt-image-2.5-flare": {"output": 20}}')
    assert table.price("gpt-image-2.5-sunburst-2026-09-08") == ModelPrice(5.0, 8.0, 30.0)
    assert table.price("gpt-image-2.5-flare") == ModelPrice(5.0, 8.0, 20.0)
    assert table.price("gpt-image-2-2026-04-21") == table.price("gpt-image-2")


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini", "dall-e-3", "gpt-image-3"])
def test_unknown_or_shut_down_model_is_a_value_error(model):
    """A model the table does not price raises ValueError in price(), cost() and estimate()."""
    table = PriceTable()
    with pytest.raises(ValueError, match="no price"):
        table.price(model)
    with pytest.raises(ValueError, match="no price"):
        table.cost(model, USAGE)
    with pytest.raises(ValueError, match="no price"):
        table.estimate(model, "medium", "1024x1024", 1, 100)


def test_from_json_merges_over_defaults():
    """A partial override changes only its fields; a new model with all fields is added and estimated with the
    richest family's figures; others keep their defaults."""
    table = PriceTable.from_json(
        '{"gpt-image-2": {"output": 40}, "gpt-image-9": {"input_text": 1, "input_image": 2, "output": 3}}')
    assert table.price("gpt-image-2") == ModelPrice(5.0, 8.0, 40.0)
    assert table.price("gpt-image-9") == ModelPrice(1.0, 2.0, 3.0)
    assert table.price("gpt-image-2.6-flare") == ModelPrice(5.0, 8.0, 30.0)
    assert table.tokens("gpt-image-9", "max", "1024x1024", 0, 0).output > 0


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_json_means_defaults(text):
    """No overrides: the defaults."""
    assert PriceTable.from_json(text).models == PriceTable().models


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"gpt-image-2": 5}', "must be an object with input_text"),
        ('{"gpt-image-2": {"outptu": 1}}', "unknown field"),
        ('{"gpt-image-2": {"output": -1}}', "non-negative number"),
        ('{"gpt-image-2": {"output": true}}', "non-negative number"),
        ('{"gpt-image-2": {"output": "30"}}', "non-negative number"),
        ('{"gpt-image-9": {"output": 1}}', "missing input_text, input_image"),
        ('{"": {"output": 1}}', "must be a model name"),
    ],
)
def test_from_json_refuses_unknown_shapes(text, message):
    """Any other shape is a ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        PriceTable.from_json(text)


@pytest.mark.parametrize(
    ("quality", "size", "fidelity"),
    [("ultra", "1024x1024", None), ("medium", "big", None), ("medium", "0x1024", None), ("low", "1024x1024", "max")],
)
def test_estimate_refuses_bad_arguments(quality, size, fidelity):
    """Unknown quality, a malformed size or an unknown fidelity is a ValueError."""
    with pytest.raises(ValueError):
        PriceTable().estimate("gpt-image-2", quality, size, 1, 10, input_fidelity=fidelity)


def test_explicit_table_needs_complete_entries():
    """A table built from a mapping uses exactly that mapping, each entry complete."""
    table = PriceTable({"gpt-image-2": {"input_text": 1, "input_image": 1, "output": 1}})
    assert table.models == ("gpt-image-2",)
    with pytest.raises(ValueError, match="missing"):
        PriceTable({"gpt-image-2": {"output": 1}})


# --- calibration ------------------------------------------------------------------------------------------------


def sample(output: int, image: int, *, model: str = "gpt-image-2", quality: str = "medium",
           size: str = "1536x1024") -> UsageSample:
    return UsageSample(model=model, quality=quality, size=size, output_tokens=output, input_image_tokens=image)


def test_calibration_takes_medians_once_there_are_enough_samples():
    """Output tokens from every shop's calls, input image tokens from the shop's own; medians, so one odd call
    does not move the estimate; fewer than the minimum: nothing observed."""
    everyone = [sample(2000, 9000), sample(2100, 9000), sample(90000, 9000), sample(1900, 9000)]
    own = [sample(0, 3000), sample(0, 3200), sample(0, 3100)]
    observed = Calibration.from_samples(everyone, own).observed("gpt-image-2", "medium", "1536x1024")
    assert observed is not None
    assert (observed.output_tokens, observed.input_image_tokens) == (2050, 3100)
    too_few = Calibration.from_samples(everyone[:CALIBRATION_MIN_SAMPLES - 1])
    assert too_few.observed("gpt-image-2", "medium", "1536x1024") is None


def test_calibration_keeps_model_quality_and_size_apart_and_reads_the_newest():
    """A sample counts only for its own model, quality and size; only the newest max_samples of each are read."""
    samples = [sample(500, 0, quality="low")] * 3 + [sample(3000, 0, size="1024x1024")] * 3
    calibration = Calibration.from_samples(samples)
    low = calibration.observed("gpt-image-2", "low", "1536x1024")
    square = calibration.observed("gpt-image-2", "medium", (1024, 1024))
    assert low is not None and low.output_tokens == 500
    assert square is not None and square.output_tokens == 3000
    assert calibration.observed("gpt-image-2", "medium", "1536x1024") is None
    assert calibration.observed("gpt-image-2.5-flare", "low", "1536x1024") is None
    newest_first = [sample(1000, 0)] * 3 + [sample(9000, 0)] * 10
    assert Calibration.from_samples(newest_first, max_samples=3).observed(
        "gpt-image-2", "medium", "1536x1024").output_tokens == 1000  # type: ignore[union-attr]


def test_a_calibrated_estimate_uses_what_calls_used():
    """With observations, output and input image tokens are the observed ones; the prompt's text is still read
    from its length. Without observations for that call, the table's figures stand."""
    table = PriceTable()
    calibration = Calibration.from_samples([sample(2500, 0)] * 3, [sample(0, 3000)] * 3)
    tokens = table.tokens("gpt-image-2", "medium", "1536x1024", 2, 400, calibration=calibration)
    assert tokens == Tokens(input_text=100, input_image=3000, output=2500)
    uncalibrated = table.tokens("gpt-image-2", "medium", "1536x1024", 2, 400)
    assert table.tokens("gpt-image-2", "high", "1536x1024", 2, 400, calibration=calibration) != tokens
    assert uncalibrated.output == 1367 and uncalibrated.input_image == 2 * input_image_tokens(1536, 1024)
    estimate = table.estimate("gpt-image-2", "medium", "1536x1024", 2, 400, calibration=calibration)
    assert estimate == pytest.approx((100 * 5 + 3000 * 8 + 2500 * 30) / 1e6)
