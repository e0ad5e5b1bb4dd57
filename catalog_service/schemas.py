"""marshmallow schemas: shop settings, and the normalised product event every webhook becomes."""

from __future__ import annotations

import dataclasses
from typing import Any

from marshmallow import RAISE, Schema, fields, validate

PRESET_NAME = validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,47}$", error="Use lowercase letters, digits and dashes.")


class CutoutSettingsSchema(Schema):
    class Meta:
        unknown = RAISE

    enabled = fields.Boolean(load_default=True)
    white = fields.Boolean(load_default=True, metadata={"description": "also make a white-background JPEG"})
    padding = fields.Float(load_default=0.05, validate=validate.Range(0, 0.5))
    square = fields.Boolean(load_default=False)
    max_side = fields.Integer(load_default=2048, validate=validate.Range(256, 4096))
    format = fields.String(load_default="png", validate=validate.OneOf(["png", "webp"]))


class SettingsSchema(Schema):
    """A shop's settings. Every key has a default; unknown keys are refused."""

    class Meta:
        unknown = RAISE

    auto_generate = fields.Boolean(load_default=True, metadata={"description": "render new products at once"})
    on_update = fields.String(
        load_default="new_images",
        validate=validate.OneOf(["new_images", "ignore"]),
        metadata={"description": "render again when a product's images change, or never"},
    )
    cutout = fields.Nested(CutoutSettingsSchema, load_default=lambda: CutoutSettingsSchema().load({}))
    scene_presets = fields.List(
        fields.String(validate=PRESET_NAME),
        load_default=lambda: ["studio", "marble-counter", "brand-gradient", "reference"],
        validate=validate.Length(max=8),
    )
    brand_color = fields.String(load_default="#3b6ea5", validate=validate.Regexp(r"^#[0-9a-fA-F]{6}$"))
    provider = fields.String(load_default="", validate=validate.OneOf(["", "compositor", "openai"]))
    publish_mode = fields.String(load_default="auto", validate=validate.OneOf(["auto", "review"]))
    alt_template = fields.String(load_default="{title} ({kind})", validate=validate.Length(max=200))


# Schemas are built once: building one is most of the cost of a small load(), and load() keeps no state.
SETTINGS = SettingsSchema()


def settings_with_defaults(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A shop's stored settings merged over the defaults, validated."""
    return SETTINGS.load(stored or {})


def default_settings() -> dict[str, Any]:
    return SETTINGS.load({})


# The normalised event: what every platform's webhook becomes before intake sees it.


@dataclasses.dataclass(frozen=True)
class ImageRef:
    external_id: str
    src: str
    alt: str = ""


@dataclasses.dataclass(frozen=True)
class ProductEvent:
    """A product was created, updated or deleted in a shop."""

    action: str  # create | update | delete
    product_id: str
    title: str = ""
    description: str = ""
    product_type: str = ""
    vendor: str = ""
    tags: tuple[str, ...] = ()
    images: tuple[ImageRef, ...] = ()


def image_id(raw: Any, position: int) -> str:
    """The shop's id for an image, or its position when the platform sends none."""
    text = "" if raw is None else str(raw).strip()
    return text[:64] if text else f"pos-{position}"


def product_id(raw: Any) -> str:
    """A product id as we store it; raises ValueError for anything that is not a usable id."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError("Must be a string or an integer.")
    text = str(raw).strip()
    if not text or len(text) > 64:
        raise ValueError("Must be 1 to 64 characters.")
    return text
