"""Scene providers, chosen by name from a closed registry, and the presets a shop can use."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .base import ProviderError, ScenePreset, SceneProvider

if TYPE_CHECKING:
    from ..config import Config


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


def builtin_presets(provider: str) -> dict[str, ScenePreset]:
    """The built-in presets a provider can make, by name.

    The compositor draws its own styles. GPT Image works from prompt text, and every compositor preset
    carries one too, so OpenAI gets those plus its own (its own win where a name is shared).
    """
    from .compositor import BUILTIN_PRESETS

    drawn = {preset.name: preset for preset in BUILTIN_PRESETS}
    if provider != "openai":
        return drawn
    from .prompts import BUILTIN_OPENAI_PRESETS

    return {**drawn, **{preset.name: preset for preset in BUILTIN_OPENAI_PRESETS}}


def presets_for(
    names: list[str], *, provider: str, brand_color: str, custom: dict[str, ScenePreset] | None = None
) -> list[ScenePreset]:
    """The named presets in the order given (the shop's own win over built-ins), coloured for the shop.

    Unknown names are skipped.
    """
    available = {**builtin_presets(provider), **(custom or {})}
    return [dataclasses.replace(available[name], brand_color=brand_color) for name in names if name in available]
