"""Scene providers, chosen by name from a closed registry, and the presets a shop can use."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .base import ProviderError, ScenePreset, SceneProvider

if TYPE_CHECKING:
    from ..config import Config

ASPECTS = ("1:1", "4:5", "3:4", "16:9", "9:16")
"""Scene aspects (width:height): square, the portrait ratios shop themes use for product images, and landscape and
vertical for banners and stories."""
DEFAULT_RATIO = "1:1"
"""A shop's product-image ratio until it sets its theme's: square, what most themes show."""
DEFAULT_LONG_SIDE = 2048
"""Longest side, in px, of a scene that names none: what Shopify's help recommends for square product images
(2048x2048), sharp enough for a theme's zoom."""
MIN_LONG_SIDE = 512
"""Smallest long side, in px, a preset may ask for: below it a product image looks soft on a product page."""
MAX_LONG_SIDE = 4096
"""Largest long side, in px, a preset may ask for: the largest scene the compositor draws."""

DEFAULT_SCENES = ("studio", "brand-gradient", "reference")
"""The scenes a new shop gets: the compositor's that read as real product photography (the studio sweep, the brand
gradient, the merchant's own backdrop photos). The drawn marble and wood surfaces stay available by name: a product
shot from above, stood on a counter drawn from the side, reads as fake."""


def dimensions(aspect: str, long_side: int) -> tuple[int, int]:
    """(width, height) in whole px of a scene of `aspect` ("4:5") whose longer side is `long_side`.

    The short side is rounded half up, so 4:5 at 2048 is 1638x2048; ValueError for an aspect that is not W:H.
    """
    try:
        across, down = (int(part) for part in aspect.split(":"))
    except ValueError:
        raise ValueError(f"an aspect looks like 4:5, not {aspect!r}") from None
    if across <= 0 or down <= 0 or long_side <= 0:
        raise ValueError(f"an aspect and a long side must be positive, not {aspect!r} at {long_side} px")
    short = max(1, int(long_side * min(across, down) / max(across, down) + 0.5))
    return (long_side, short) if across >= down else (short, long_side)


def provider_for(name: str, config: Config) -> SceneProvider:
    """The provider called `name`, built from the config. Unknown names are refused by Config.validate()."""
    if name == "compositor":
        from .compositor import CompositorProvider

        return CompositorProvider()
    if name == "openai":
        import openai

        from .openai_images import OpenAIProvider
        from .pricing import PriceTable

        try:
            return OpenAIProvider(
                model=config.openai_model, prices=PriceTable.from_json(config.openai_prices or "{}"),
                max_retries=config.openai_max_retries, timeout_s=config.openai_timeout_s,
            )
        except openai.OpenAIError as exc:  # no OPENAI_API_KEY: say what to set, not the library's words
            raise ProviderError(f"OpenAI is not configured on this service: {exc}", reason="not_configured") from None
    raise ValueError(f"unknown scene provider {name!r}")


def builtin_presets(provider: str, *, image_ratio: str = DEFAULT_RATIO) -> dict[str, ScenePreset]:
    """The built-in presets a provider can make, by name, sized for a shop whose product images are `image_ratio`
    (at DEFAULT_LONG_SIDE).

    The compositor draws its own styles. GPT Image works from prompt text, and every compositor preset
    carries one too, so OpenAI gets those plus its own (its own win where a name is shared).
    """
    from .compositor import BUILTIN_PRESETS

    presets = {preset.name: preset for preset in BUILTIN_PRESETS}
    if provider == "openai":
        from .prompts import BUILTIN_OPENAI_PRESETS

        presets.update((preset.name, preset) for preset in BUILTIN_OPENAI_PRESETS)
    width, height = dimensions(image_ratio, DEFAULT_LONG_SIDE)
    return {name: dataclasses.replace(preset, width=width, height=height) for name, preset in presets.items()}


def presets_for(
    names: list[str], *, provider: str, brand_color: str, custom: dict[str, ScenePreset] | None = None,
    image_ratio: str = DEFAULT_RATIO,
) -> list[ScenePreset]:
    """The named presets in the order given (the shop's own win over built-ins), coloured for the shop.

    Built-ins are made at the shop's product-image ratio; the shop's own come sized already (preset_from_settings).
    Unknown names are skipped.
    """
    available = {**builtin_presets(provider, image_ratio=image_ratio), **(custom or {})}
    return [dataclasses.replace(available[name], brand_color=brand_color) for name in names if name in available]
