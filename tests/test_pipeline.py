"""The render core's small pieces that need no model or provider."""

from __future__ import annotations

from catalog_service.pipeline import cutout_options
from catalog_service.schemas import CutoutSettingsSchema


def test_cutout_options_default_to_refined_edges_without_the_shadow() -> None:
    """A shop that never touched its settings gets refined edges and no shadow."""
    options = cutout_options(CutoutSettingsSchema().load({}), max_side_cap=2048)
    assert options.refine is True and options.keep_shadow is False


def test_cutout_options_carry_the_shops_choices_and_the_service_cap() -> None:
    """refine and keep_shadow come from the shop; max_side never passes the service's own limit."""
    settings = CutoutSettingsSchema().load({"refine": False, "keep_shadow": True, "max_side": 4096,
                                            "padding": 0.1, "square": True})
    options = cutout_options(settings, max_side_cap=2048)
    assert (options.refine, options.keep_shadow, options.max_side, options.padding, options.square) == (
        False, True, 2048, 0.1, True)


def test_cutout_options_from_settings_saved_before_refinement_existed() -> None:
    """Stored settings without the new keys still load as the defaults."""
    old = {"enabled": True, "white": True, "padding": 0.05, "square": False, "max_side": 2048, "format": "png"}
    options = cutout_options(old, max_side_cap=2048)
    assert options.refine is True and options.keep_shadow is False
