"""The price table: defaults, overrides from JSON, exact costs from usage and conservative estimates."""

from __future__ import annotations

import pytest

from catalog_service.scenes.openai_images import MODELS
from catalog_service.scenes.pricing import DEFAULT_PRICES, ModelPrice, PriceTable

USAGE = {
    "input_tokens": 1500,
    "input_tokens_details": {"image_tokens": 1000, "text_tokens": 500},
    "output_tokens": 2000,
    "total_tokens": 3500,
}


def test_defaults_price_every_offered_model():
    """Every model the provider offers has a default price."""
    table = PriceTable()
    for model in MODELS:
        assert table.price(model).output > 0


def test_cost_from_usage_by_hand():
    """cost() prices text input, image input and output tokens separately (USD per 1M tokens)."""
    table = PriceTable()
    assert table.cost("gpt-image-2", USAGE) == pytest.approx((500 * 5 + 1000 * 8 + 2000 * 30) / 1e6)
    assert table.cost("gpt-image-1-mini", USAGE) == pytest.approx((500 * 2 + 1000 * 2.5 + 2000 * 8) / 1e6)


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


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-3", "gpt-image-3"])
def test_unknown_model_is_a_value_error(model):
    """A model the table does not price raises ValueError in price(), cost() and estimate()."""
    table = PriceTable()
    with pytest.raises(ValueError, match="no price"):
        table.price(model)
    with pytest.raises(ValueError, match="no price"):
        table.cost(model, USAGE)
    with pytest.raises(ValueError, match="no price"):
        table.estimate(model, "medium", "1024x1024", 1, 100)


def test_from_json_merges_over_defaults():
    """A partial override changes only its fields; a new model with all fields is added; others keep defaults."""
    table = PriceTable.from_json(
        '{"gpt-image-2": {"output": 40}, "gpt-image-9": {"input_text": 1, "input_image": 2, "output": 3}}')
    assert table.price("gpt-image-2") == ModelPrice(5.0, 8.0, 40.0)
    assert table.price("gpt-image-9") == ModelPrice(1.0, 2.0, 3.0)
    assert table.price("gpt-image-1.5") == ModelPrice(**DEFAULT_PRICES["gpt-image-1.5"])


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


def test_estimate_by_hand():
    """gpt-image-2, medium 1024x1024, one input image at high fidelity, 400 prompt characters."""
    estimate = PriceTable().estimate("gpt-image-2", "medium", "1024x1024", n_input_images=1, prompt_chars=400)
    assert estimate == pytest.approx((100 * 5 + 6600 * 8 + 1056 * 30) / 1e6)


def test_estimate_grows_with_quality_size_images_and_prompt():
    """More quality, pixels, input images or prompt cost more; auto quality is estimated as high."""
    table = PriceTable()

    def estimate(quality="medium", size="1024x1024", images=1, chars=400):
        return table.estimate("gpt-image-2", quality, size, images, chars)

    assert 0 < estimate("low") < estimate("medium") < estimate("high") == estimate("auto")
    assert estimate(size="1024x1024") < estimate(size="1536x1024") < estimate(size="3840x2160")
    assert estimate(size="auto") == estimate(size=(1536, 1024))
    assert estimate(images=1) < estimate(images=4)
    assert estimate(chars=100) < estimate(chars=4000)


def test_estimate_low_fidelity_is_cheaper():
    """Low input fidelity reads input images with fewer tokens than high (the default for models without one)."""
    table = PriceTable()
    low = table.estimate("gpt-image-1-mini", "low", "1024x1024", 2, 100, input_fidelity="low")
    high = table.estimate("gpt-image-1-mini", "low", "1024x1024", 2, 100)
    assert 0 < low < high


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
