"""What a GPT Image call costs: a configurable price table per model, exact costs from `usage`, and estimates
that calibrate themselves from the usage we recorded.

Pure: no I/O. Prices are USD per 1M tokens, in three buckets as OpenAI bills image models: text input, image
input, and output (image) tokens. An estimate adds three parts:

- output tokens, from per-model, per-quality, per-shape figures: output tokens do not grow with the area
  (OpenAI's gpt-image-2 examples, ../shared/API-NOTES.md), so a custom size takes the figure of its nearest shape;
- input image tokens, per input image at the size we send it;
- the prompt's text tokens.

A `Calibration` (built by catalog_service/spend.py from recorded usage) replaces the first two with what calls of
the same model, quality and size actually used, once there are enough of them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

PRICE_FIELDS = ("input_text", "input_image", "output")
"""The buckets of one model's price, each in USD per 1M tokens."""

# DEFAULT_PRICES are the list prices in ../shared/API-NOTES.md (checked against OpenAI's pricing and model pages);
# they are configurable (CATALOG_OPENAI_PRICES, merged by PriceTable.from_json) because OpenAI changes them. A key
# may end in `*` to cover a family and its dated snapshots; an exact key wins over a pattern, a longer pattern over
# a shorter one. Shut-down models (gpt-image-1, gpt-image-1.5, gpt-image-1-mini) are deliberately not priced.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-image-2": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},
    "gpt-image-2-*": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},  # dated snapshots
    "gpt-image-2.5-*": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},
    "gpt-image-2.6-*": {"input_text": 5.00, "input_image": 8.00, "output": 30.00},
}

BATCH_DISCOUNT = 0.5
"""What a call through the Batch API costs, as a share of the same call made directly."""

SHAPES: dict[str, float] = {"square": 1.0, "landscape": 1536 / 1024, "portrait": 1024 / 1536}
"""The shapes output figures are given for, by width / height."""

# OpenAI's gpt-image-2 examples (API-NOTES): 1024x1024 and 1536x1024 / 1024x1536 at low, medium and high.
_GPT_IMAGE_2_OUTPUT: dict[str, dict[str, int]] = {
    "square": {"low": 200, "medium": 1767, "high": 7033},
    "landscape": {"low": 167, "medium": 1367, "high": 5500},
    "portrait": {"low": 167, "medium": 1367, "high": 5500},
}

EXTRA_QUALITY_OVER_HIGH: dict[str, float] = {"xhigh": 1.5, "max": 2.0}
"""xhigh and max (gpt-image-2.5 and 2.6) have no published output figure: they are estimated as these multiples
of `high`, deliberately on the high side, until recorded usage calibrates them."""


def _with_extra_qualities(figures: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {shape: {**by_quality, **{quality: math.ceil(by_quality["high"] * factor)
                                     for quality, factor in EXTRA_QUALITY_OVER_HIGH.items()}}
            for shape, by_quality in figures.items()}


# 2.5 and 2.6 have no published figures of their own: gpt-image-2's, with xhigh and max added. Keys follow the
# price table's patterns.
OUTPUT_TOKENS: dict[str, dict[str, dict[str, int]]] = {
    "gpt-image-2": _GPT_IMAGE_2_OUTPUT,
    "gpt-image-2-*": _GPT_IMAGE_2_OUTPUT,
    "gpt-image-2.5-*": _with_extra_qualities(_GPT_IMAGE_2_OUTPUT),
    "gpt-image-2.6-*": _with_extra_qualities(_GPT_IMAGE_2_OUTPUT),
}
FALLBACK_OUTPUT_TOKENS = OUTPUT_TOKENS["gpt-image-2.5-*"]
"""Output figures for a model priced only by CATALOG_OPENAI_PRICES (a newer model): the richest family's."""
AUTO_QUALITY = "high"
"""`auto` quality is estimated as this, so an estimate never undershoots what the model may choose."""
AUTO_SHAPE = "square"
"""`auto` size is estimated at the shape with the most output tokens."""

# Input images: the tiling rule OpenAI documents for GPT Image inputs (the image fitted within 2048x2048, then
# its short side to 768 px, 512-px tiles; a base plus an amount per tile), plus the flat amount high input fidelity
# adds (about 4,160 tokens for a square input, 6,240 for any other). gpt-image-2 and newer always read inputs at
# high fidelity. No figure is published for gpt-image-2's inputs: recorded usage calibrates these.
INPUT_IMAGE_BASE_TOKENS = 65
INPUT_IMAGE_TILE_TOKENS = 129
INPUT_FIT_SIDE = 2048
INPUT_SHORT_SIDE = 768
INPUT_TILE = 512
HIGH_FIDELITY_TOKENS = {"square": 4160, "other": 6240}
INPUT_FIDELITIES = ("low", "high")
UNKNOWN_INPUT_SIZE = (1536, 1024)
"""The size an input image is estimated at when the caller does not say (the dearer, non-square shape)."""
CHARS_PER_TEXT_TOKEN = 4
"""Prompt characters per text token, for estimates (English averages about four)."""

CALIBRATION_MIN_SAMPLES = 3
"""Recorded calls of one model, quality and size needed before they replace the table's figures."""
CALIBRATION_MAX_SAMPLES = 20
"""The most recent calls of one model, quality and size a calibration reads (older ones describe an older model)."""


@dataclasses.dataclass(frozen=True)
class ModelPrice:
    """One model's price, USD per 1M tokens."""

    input_text: float
    input_image: float
    output: float


@dataclasses.dataclass(frozen=True)
class Tokens:
    """The tokens of one call, by bucket: what an estimate expects or what `usage` reported."""

    input_text: int
    input_image: int
    output: int


@dataclasses.dataclass(frozen=True)
class UsageSample:
    """One recorded call, as a calibration reads it (spend.py builds these from UsageRecord rows)."""

    model: str
    quality: str
    size: str  # the WxH asked of the model, or auto
    output_tokens: int
    input_image_tokens: int


@dataclasses.dataclass(frozen=True)
class Observed:
    """What recorded calls of one model, quality and size used: medians, None where there were too few."""

    output_tokens: int | None = None  # per image, from every shop's calls
    input_image_tokens: int | None = None  # per call, from this shop's calls (its references decide it)
    samples: int = 0


class Calibration:
    """Observed token figures by (model, quality, size) for one shop, to use instead of the table's."""

    def __init__(self, observed: Mapping[tuple[str, str, str], Observed] | None = None) -> None:
        self._observed = dict(observed or {})

    @classmethod
    def from_samples(
        cls, everyone: Iterable[UsageSample], own: Iterable[UsageSample] = (), *,
        min_samples: int = CALIBRATION_MIN_SAMPLES, max_samples: int = CALIBRATION_MAX_SAMPLES,
    ) -> Calibration:
        """Medians of the newest `max_samples` calls per (model, quality, size), where there are `min_samples`.

        `everyone`: recent calls of every shop, newest first: output tokens depend only on the model, quality and
        size. `own`: this shop's recent calls, newest first: input image tokens depend on what the shop sends
        (its references), and usage does not say how many images a call had, so they are taken per call.
        """
        if min_samples < 1 or max_samples < min_samples:
            raise ValueError("a calibration needs min_samples >= 1 and max_samples >= min_samples")
        outputs = _newest(everyone, max_samples, lambda sample: sample.output_tokens)
        inputs = _newest(own, max_samples, lambda sample: sample.input_image_tokens)
        observed: dict[tuple[str, str, str], Observed] = {}
        for key in outputs.keys() | inputs.keys():
            out, inp = outputs.get(key, []), inputs.get(key, [])
            entry = Observed(
                output_tokens=_median(out) if len(out) >= min_samples else None,
                input_image_tokens=_median(inp) if len(inp) >= min_samples else None,
                samples=max(len(out), len(inp)),
            )
            if entry.output_tokens is not None or entry.input_image_tokens is not None:
                observed[key] = entry
        return cls(observed)

    def observed(self, model: str, quality: str, size: str | tuple[int, int]) -> Observed | None:
        """The observations for calls of this model, quality and size; None when there are not enough."""
        return self._observed.get((model, quality, size_key(size)))

    def __len__(self) -> int:
        return len(self._observed)

    def __repr__(self) -> str:
        return f"Calibration({self._observed!r})"


def _newest(samples: Iterable[UsageSample], limit: int,
            value: Callable[[UsageSample], int]) -> dict[tuple[str, str, str], list[int]]:
    found: dict[tuple[str, str, str], list[int]] = {}
    for sample in samples:
        kept = found.setdefault((sample.model, sample.quality, size_key(sample.size)), [])
        if len(kept) < limit:
            kept.append(value(sample))
    return found


def _median(values: Sequence[int]) -> int:
    return math.ceil(statistics.median(values))


def size_key(size: str | tuple[int, int]) -> str:
    """A size as calibrations and usage records spell it: `WIDTHxHEIGHT` or `auto`."""
    if isinstance(size, str):
        return size.strip().lower()
    return f"{size[0]}x{size[1]}"


def shape_of(width: int, height: int) -> str:
    """The shape (SHAPES) nearest to a width and height, by aspect ratio."""
    ratio = math.log(width / height)
    return min(SHAPES, key=lambda shape: abs(math.log(SHAPES[shape]) - ratio))


def input_image_tokens(width: int, height: int, fidelity: str = "high") -> int:
    """Estimated input tokens of one input image of `width`x`height` px (see the constants above)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"an input image size must be positive, not {width}x{height}")
    if fidelity not in INPUT_FIDELITIES:
        raise ValueError(f"input_fidelity must be low or high, not {fidelity!r}")
    scale = min(1.0, INPUT_FIT_SIDE / max(width, height))
    fitted_w, fitted_h = width * scale, height * scale
    scale = min(1.0, INPUT_SHORT_SIDE / min(fitted_w, fitted_h))
    tiles = math.ceil(fitted_w * scale / INPUT_TILE) * math.ceil(fitted_h * scale / INPUT_TILE)
    tokens = INPUT_IMAGE_BASE_TOKENS + INPUT_IMAGE_TILE_TOKENS * tiles
    if fidelity == "high":
        tokens += HIGH_FIDELITY_TOKENS["square" if width == height else "other"]
    return tokens


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

    def cost(self, model: str, usage: Mapping[str, Any], *, batch: bool = False) -> float:
        """USD for one call from its `usage` (OpenAI's shape, or the flattened one SceneResult keeps);
        `batch`: made through the Batch API, at its discount.

        Image and text input tokens come from `input_tokens_details`; when the split is missing, all input
        tokens are priced as image input (the dearer bucket). All output tokens are priced as output.
        """
        return self._usd(model, usage_tokens(usage), batch=batch)

    def estimate(
        self,
        model: str,
        quality: str,
        size: str | tuple[int, int],
        n_input_images: int,
        prompt_chars: int,
        *,
        input_fidelity: str | None = None,
        input_sizes: Sequence[tuple[int, int]] = (),
        calibration: Calibration | None = None,
        batch: bool = False,
    ) -> float:
        """The USD estimate of one call before it is made (see `tokens`); `batch`: at the Batch API's price."""
        tokens = self.tokens(model, quality, size, n_input_images, prompt_chars, input_fidelity=input_fidelity,
                             input_sizes=input_sizes, calibration=calibration)
        return self._usd(model, tokens, batch=batch)

    def tokens(
        self,
        model: str,
        quality: str,
        size: str | tuple[int, int],
        n_input_images: int,
        prompt_chars: int,
        *,
        input_fidelity: str | None = None,
        input_sizes: Sequence[tuple[int, int]] = (),
        calibration: Calibration | None = None,
    ) -> Tokens:
        """The tokens one call is expected to use.

        Output: the model's figure for the quality and the nearest shape of `size`, or what recorded calls of the
        same model, quality and size used (`calibration`). Input images: each at its size in `input_sizes` (the
        rest at UNKNOWN_INPUT_SIZE), read at `input_fidelity` (None: high, as gpt-image-2 and newer always do),
        or this shop's recorded figure. Text: the prompt's characters / CHARS_PER_TEXT_TOKEN.
        """
        self.price(model)  # an unpriced model is a ValueError here too
        figures = self._output_figures(model)
        effective = AUTO_QUALITY if quality == "auto" else quality
        qualities = next(iter(figures.values()))
        if effective not in qualities:
            raise ValueError(f"{model} is estimated for quality {', '.join(qualities)} or auto, not {quality!r}")
        dimensions = _dimensions(size)
        shape = AUTO_SHAPE if dimensions is None else shape_of(*dimensions)
        fidelity = input_fidelity or "high"
        if fidelity not in INPUT_FIDELITIES:
            raise ValueError(f"input_fidelity must be low or high, not {input_fidelity!r}")
        if n_input_images < 0 or prompt_chars < 0:
            raise ValueError("n_input_images and prompt_chars cannot be negative")
        if len(input_sizes) > n_input_images:
            raise ValueError(f"{len(input_sizes)} input sizes given for {n_input_images} input images")
        output = figures[shape][effective]
        sizes = [*input_sizes, *[UNKNOWN_INPUT_SIZE] * (n_input_images - len(input_sizes))]
        image = sum(input_image_tokens(width, height, fidelity) for width, height in sizes)
        observed = calibration.observed(model, quality, size) if calibration is not None else None
        if observed is not None:
            output = observed.output_tokens if observed.output_tokens is not None else output
            image = observed.input_image_tokens if observed.input_image_tokens is not None else image
        return Tokens(input_text=math.ceil(prompt_chars / CHARS_PER_TEXT_TOKEN), input_image=image, output=output)

    def _usd(self, model: str, tokens: Tokens, *, batch: bool) -> float:
        price = self.price(model)
        usd = (tokens.input_text * price.input_text + tokens.input_image * price.input_image
               + tokens.output * price.output) / 1_000_000
        return usd * BATCH_DISCOUNT if batch else usd

    def _output_figures(self, model: str) -> Mapping[str, Mapping[str, int]]:
        found = _match(OUTPUT_TOKENS, model)
        return OUTPUT_TOKENS[found] if found is not None else FALLBACK_OUTPUT_TOKENS

    def _lookup(self, model: str) -> ModelPrice | None:
        found = _match(self._prices, model)
        return self._prices[found] if found is not None else None


def flat_usage(usage: Mapping[str, Any]) -> dict[str, int]:
    """OpenAI's `usage` in the flat shape SceneResult keeps and usage records store ({} when there is none)."""
    if not usage:
        return {}
    details = usage.get("input_tokens_details") or {}
    return {
        "input_text_tokens": int(details.get("text_tokens") or 0),
        "input_image_tokens": int(details.get("image_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "total_tokens": int(usage.get("total_tokens") or 0),
    }


def usage_tokens(usage: Mapping[str, Any]) -> Tokens:
    """The tokens a call's `usage` reports (OpenAI's shape or SceneResult's flattened one); ValueError if malformed."""
    details = usage.get("input_tokens_details")
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise ValueError("usage.input_tokens_details must be an object")
    image = details.get("image_tokens", usage.get("input_image_tokens"))
    text = details.get("text_tokens", usage.get("input_text_tokens"))
    if image is None and text is None:
        image, text = usage.get("input_tokens", 0), 0
    return Tokens(
        input_text=_tokens("text input tokens", text or 0),
        input_image=_tokens("image input tokens", image or 0),
        output=_tokens("output tokens", usage.get("output_tokens", 0) or 0),
    )


def _match(table: Mapping[str, Any], model: str) -> str | None:
    """The key of `table` that covers `model`: itself, else the longest `*` pattern that matches it."""
    if model in table:
        return model
    patterns = [key for key in table if "*" in key and fnmatch.fnmatchcase(model, key)]
    return max(patterns, key=len) if patterns else None


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


def _dimensions(size: str | tuple[int, int]) -> tuple[int, int] | None:
    """(width, height) of a size; None for `auto`."""
    if isinstance(size, str):
        if size.strip().lower() == "auto":
            return None
        try:
            width, height = (int(part) for part in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"size must look like 1536x1024 or be auto, not {size!r}") from None
    else:
        width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, not {width}x{height}")
    return width, height
