"""Shop settings: scene sizes by aspect and long side, the shop's image ratio, product_lock, and older settings."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from catalog_service.scenes import presets_for
from catalog_service.schemas import SETTINGS, SETTINGS_INPUT, preset_from_settings, settings_with_defaults


def sizes(settings: dict, names: list[str]) -> dict[str, tuple[int, int]]:  # type: ignore[type-arg]
    """The scenes a render of a shop with these settings would make, by name, as (width, height): built as the
    render job builds them."""
    custom = {p["name"]: preset_from_settings(p, settings["image_ratio"]) for p in settings["presets"]}
    presets = presets_for(names, provider="compositor", brand_color=settings["brand_color"], custom=custom,
                          image_ratio=settings["image_ratio"])
    return {preset.name: (preset.width, preset.height) for preset in presets}


def test_a_new_shop_gets_square_scenes_that_look_photographed() -> None:
    """The defaults: square product images, studio + brand gradient + the shop's backdrop photos, and a new preset
    sized by aspect and long side, with the product kept exact."""
    settings = settings_with_defaults({})
    assert settings["image_ratio"] == "1:1"
    assert settings["scene_presets"] == ["studio", "brand-gradient", "reference"]
    preset = SETTINGS_INPUT.load({"presets": [{"name": "window", "style": "studio"}]})["presets"][0]
    assert (preset["aspect"], preset["long_side"], preset["size"], preset["product_lock"]) == ("", 2048, "", "exact")
    assert sizes(settings, ["studio", "reference"]) == {"studio": (2048, 2048), "reference": (2048, 2048)}


def test_a_shop_with_a_4_5_theme_gets_4_5_scenes() -> None:
    """Built-in scenes and the shop's own presets that name no aspect take the theme's ratio; a preset with its own
    aspect and long side keeps them."""
    settings = SETTINGS_INPUT.load({
        "image_ratio": "4:5",
        "presets": [{"name": "window", "style": "studio"},
                    {"name": "banner", "style": "gradient", "aspect": "16:9", "long_side": 1920},
                    {"name": "story", "style": "studio", "aspect": "9:16", "long_side": 1000, "product_lock": "model"}],
        "scene_presets": ["studio", "brand-gradient", "window", "banner", "story"],
    })
    assert sizes(settings, settings["scene_presets"]) == {
        "studio": (1638, 2048), "brand-gradient": (1638, 2048), "window": (1638, 2048),
        "banner": (1920, 1080), "story": (563, 1000)}
    assert preset_from_settings(settings["presets"][2], "4:5").product_lock == "model"
    assert preset_from_settings(settings["presets"][0], "4:5").product_lock == "exact"


def test_settings_saved_before_aspects_still_load_and_keep_their_size() -> None:
    """A preset stored with the old fixed `size` (and none of the new keys) loads, keeps 1536x1024 at any shop ratio,
    and saves again unchanged, as a PATCH of another key re-saves it."""
    stored = {"scene_presets": ["studio", "marble-counter", "brand-gradient", "reference", "kitchen"],
              "presets": [{"name": "kitchen", "style": "surface", "prompt": "", "surface": "wood", "size": "1536x1024",
                           "quality": "medium", "reference_image_ids": [], "text": "", "text_mode": "overlay"}]}
    settings = settings_with_defaults(stored)
    assert settings["scene_presets"] == stored["scene_presets"]  # what the shop saved, marble included
    assert settings["presets"][0]["size"] == "1536x1024"
    assert sizes({**settings, "image_ratio": "4:5"}, ["kitchen"]) == {"kitchen": (1536, 1024)}
    again = SETTINGS_INPUT.load({**settings, "publish_mode": "review"})
    assert again["presets"] == settings["presets"]


@pytest.mark.parametrize(("preset", "field", "words"), [
    ({"aspect": "2:3"}, "aspect", "1:1, 4:5, 3:4, 16:9, 9:16"),
    ({"long_side": 100}, "long_side", "greater than or equal to 512"),
    ({"long_side": 5000}, "long_side", "less than or equal to 4096"),
    ({"product_lock": "loose"}, "product_lock", "exact, model"),
    ({"size": "2048x2048"}, "size", "Use aspect and long_side"),
    ({"size": "1024x1024", "aspect": "4:5"}, "size", "not both"),
])
def test_a_preset_that_cannot_be_sized_is_refused_naming_the_field(preset: dict, field: str,  # type: ignore[type-arg]
                                                                   words: str) -> None:
    """An unknown aspect, a long side out of range, an unknown product lock, a size that never existed, or both ways
    of sizing at once: refused, with the preset's field named."""
    with pytest.raises(ValidationError) as raised:
        SETTINGS_INPUT.load({"presets": [{"name": "window", "style": "studio", **preset}]})
    assert words in " ".join(raised.value.messages["presets"][0][field])  # type: ignore[index]


def test_an_unknown_image_ratio_is_refused() -> None:
    """The shop's ratio is one of the aspects a scene can have."""
    with pytest.raises(ValidationError) as raised:
        SETTINGS.load({"image_ratio": "3:2"})
    assert "image_ratio" in raised.value.messages  # type: ignore[operator]
