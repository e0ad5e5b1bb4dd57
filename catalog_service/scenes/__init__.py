"""Scene providers, chosen by name from a closed registry."""

from __future__ import annotations

import dataclasses

from .base import ScenePreset, SceneProvider


def provider_for(name: str) -> SceneProvider:
    """The provider called `name`. Unknown names are refused at startup by Config.validate()."""
    if name == "compositor":
        from .compositor import CompositorProvider

        return CompositorProvider()
    raise ValueError(f"the scene provider {name!r} is not available yet")


def presets_for(names: list[str], *, brand_color: str) -> list[ScenePreset]:
    """The named built-in presets, in the order given, coloured for the shop. Unknown names are skipped."""
    from .compositor import BUILTIN_PRESETS

    by_name = {preset.name: preset for preset in BUILTIN_PRESETS}
    return [dataclasses.replace(by_name[name], brand_color=brand_color) for name in names if name in by_name]
