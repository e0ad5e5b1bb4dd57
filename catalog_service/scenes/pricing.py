"""What a GPT Image call costs: a configurable price table per model, exact costs from `usage`, and estimates.

Pure: no I/O. Prices are USD per 1M tokens, in three buckets as OpenAI bills image models: text input, image
input, and output (image) tokens.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from collections.abc import Mapping
from typing import Any

PRICE_FIELDS = ("input_text", "input_image", "output")
"""The buckets of one model's price, each in USD per 1M tokens."""

# DEFAULT_PRICES are plausible list prices as we last read them (November 2026), NOT an official source: they are
# configurable (CATALOG_OPENAI_PRICES, merged by PriceTable.from_json) and must be checked against OpenAI's pricing
# page (https://openai.com/api/pricing/) before they are relied on for billing. A key may end in `*` to cover a
# family and its dated snapshots; an exact key wins over a pattern, a longer pattern over a shorter one.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-image-2": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},
    "gpt-image-2-*": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},  # dated snapshots
    "gpt-image-1.5": {"input_text": 5.00, "input_image": 8.00, "output": 32.00},
    "gpt-image-1-mini": {"input_text": 2.00, "input_image": 2.50, "output": 8.00},
    "gpt-image-2.5-*": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},
    "gpt-image-2.6-*": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},
}

OUTPUT_TOKENS_1024: dict[str, int] = {"low": 272, "medium": 1056, "high": 4160}
"""Output (image) tokens of one 1024x1024 image by quality; other sizes scale by pixel area. `auto` is
estimated as `high`, so an estimate never undershoots what the model may choose."""
REFERENCE_AREA = 1024 * 1024
"""The pixel area OUTPUT_TOKENS_1024 is given for."""
AUTO_SIZE = (1536, 1024)
"""The frame an `auto` size is estimated at: the largest standard size."""
INPUT_IMAGE_TOKENS: dict[str, int] = {"low": 800, "high": 6600}
"""Input image tokens per input image, by input fidelity; deliberately on the high side (a high-fidelity
landscape input costs about 6,240 extra tokens). Models that take no input_fidelity (gpt-image-2 and newer)
read every input image at high fidelity, so None is estimated as `high`."""
CHARS_PER_TEXT_TOKEN = 4
"""Prompt characters per text token, for estimates (English averages about four)."""


@dataclasses.dataclass(frozen=True)
class ModelPrice:
    """One model's price, USD per 1M tokens."""

    input_text: float
    input_image: float
    output: float


class PriceTable:
    """Prices per model. `PriceTable()` holds DEFAULT_PRICES; `PriceTable.from_json(text)` merges overrides."""

    def __init__(self, prices: Mapping[str, Mapping[str, float]] | None = None) -> None:
        entries = DEFAULT_PRICES if prices is None else prices
        if not isinstance(entries, Mapping):
            raise ValueError("prices must be a mapping of model name to {input_text, input_image, output}")
        self._prices: dict[str, ModelPrice] = {}
        for model, entry in entries.items():
            self._prices[_check_model_name(model)] = _complete(model, _check_entry(model, entry))

    @classmethod
    def from_json(cls, text: str) -> PriceTable:
        """DEFAULT_PRICES with the overrides in `text` merged over them.

        `text` is a JSON object `{model: {"input_text": usd_per_1M, "input_image": ..., "output": ...}}`; an entry
        for a model already priced (exactly or by a pattern) may give only the fields it changes, a new model
        must give all three. Empty text means no overrides. Any other shape raises ValueError saying what is wrong.
        """
        if not (text or "").strip():
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"OpenAI prices are not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                'OpenAI prices must be a JSON object like {"gpt-image-2": {"input_text": 5, "input_image": 8, '
                f'"output": 30}}}}, not a {type(data).__name__}'
            )
        base = cls()
        merged: dict[str, dict[str, float]] = {
            model: dataclasses.asdict(price) for model, price in base._prices.items()
        }
        for model, entry in data.items():
            fields = _check_entry(_check_model_name(model), entry)
            known = base._lookup(model)
            start = dataclasses.asdict(known) if known is not None else {}
            merged[model] = {**start, **fields}
        return cls(merged)

    @property
    def models(self) -> tuple[str, ...]:
        """The model names and patterns priced."""
        return tuple(self._prices)

    def price(self, model: str) -> ModelPrice:
        """The price of `model`; ValueError when the table has no entry for it."""
        found = self._lookup(model)
        if found is None:
            raise ValueError(
                f"no price for the OpenAI model {model!r}; add it to CATALOG_OPENAI_PRICES "
                f"(priced: {', '.join(self._prices)})"
            )
        return found

    def cost(self, model: str, usage: Mapping[str, Any]) -> float:
        """USD for one call from its `usage` (OpenAI's shape, or the flattened one SceneResult keeps).

        Image and text input tokens come from `input_tokens_details`; when the split is missing, all input
        tokens are priced as image input (the dearer bucket). All output tokens are priced as output.
        """
        price = self.price(model)
        details = usage.get("input_tokens_details")
        if details is None:
            details = {}
        if not isinstance(details, Mapping):
            raise ValueError("usage.input_tokens_details must be an object")
        image = details.get("image_tokens", usage.get("input_image_tokens"))
        text = details.get("text_tokens", usage.get("input_text_tokens"))
        if image is None and text is None:
            image, text = usage.get("input_tokens", 0), 0
        image_tokens = _tokens("image input tokens", image or 0)
        text_tokens = _tokens("text input tokens", text or 0)
        output_tokens = _tokens("output tokens", usage.get("output_tokens", 0) or 0)
        return (
            text_tokens * price.input_text + image_tokens * price.input_image + output_tokens * price.output
        ) / 1_000_000

    def estimate(
        self,
        model: str,
        quality: str,
        size: str | tuple[int, int],
        n_input_images: int,
        prompt_chars: int,
        *,
        input_fidelity: str | None = None,
    ) -> float:
        """A conservative USD estimate of one edit before it is made (see the token constants above)."""
        price = self.price(model)
        if quality == "auto":
            quality = "high"
        if quality not in OUTPUT_TOKENS_1024:
            raise ValueError(f"quality must be one of low, medium, high or auto, not {quality!r}")
        width, height = _dimensions(size)
        fidelity = input_fidelity or "high"
        if fidelity not in INPUT_IMAGE_TOKENS:
            raise ValueError(f"input_fidelity must be low or high, not {input_fidelity!r}")
        if n_input_images < 0 or prompt_chars < 0:
            raise ValueError("n_input_images and prompt_chars cannot be negative")
        output_tokens = math.ceil(OUTPUT_TOKENS_1024[quality] * width * height / REFERENCE_AREA)
        image_tokens = n_input_images * INPUT_IMAGE_TOKENS[fidelity]
        text_tokens = math.ceil(prompt_chars / CHARS_PER_TEXT_TOKEN)
        return (
            text_tokens * price.input_text + image_tokens * price.input_image + output_tokens * price.output
        ) / 1_000_000

    def _lookup(self, model: str) -> ModelPrice | None:
        if model in self._prices:
            return self._prices[model]
        patterns = [key for key in self._prices if "*" in key and fnmatch.fnmatchcase(model, key)]
        if not patterns:
            return None
        return self._prices[max(patterns, key=len)]


def _check_model_name(model: object) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"a price table key must be a model name, not {model!r}")
    return model


def _check_entry(model: str, entry: object) -> dict[str, float]:
    """The fields of one entry, validated: known names, non-negative numbers."""
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"the price of {model!r} must be an object with {', '.join(PRICE_FIELDS)} (USD per 1M tokens), "
            f"not {entry!r}"
        )
    unknown = sorted(set(entry) - set(PRICE_FIELDS))
    if unknown:
        raise ValueError(
            f"the price of {model!r} has unknown field(s) {', '.join(map(str, unknown))}; "
            f"use {', '.join(PRICE_FIELDS)} (USD per 1M tokens)"
        )
    fields: dict[str, float] = {}
    for name, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"the price {model!r}.{name} must be a non-negative number of USD per 1M tokens, "
                             f"not {value!r}")
        fields[name] = float(value)
    return fields


def _complete(model: str, fields: Mapping[str, float]) -> ModelPrice:
    missing = [name for name in PRICE_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"the price of {model!r} is missing {', '.join(missing)} (USD per 1M tokens)")
    return ModelPrice(**{name: fields[name] for name in PRICE_FIELDS})


def _tokens(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage {what} must be a non-negative integer, not {value!r}")
    return value


def _dimensions(size: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, str):
        if size == "auto":
            return AUTO_SIZE
        try:
            width, height = (int(part) for part in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"size must look like 1536x1024 or be auto, not {size!r}") from None
    else:
        width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, not {width}x{height}")
    return width, height
