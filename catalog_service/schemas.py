"""marshmallow schemas: shop settings, and the normalised product event every webhook becomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import string
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from .scenes import ASPECTS, DEFAULT_LONG_SIDE, DEFAULT_RATIO, DEFAULT_SCENES, MAX_LONG_SIDE, MIN_LONG_SIDE, dimensions
from .scenes.base import PRODUCT_LOCKS, ScenePreset

NUL_MESSAGE = "Must not contain NUL (\\u0000) characters."
SURROGATE_MESSAGE = "Must be valid Unicode: a lone surrogate (\\ud800-\\udfff) is not a character."


def text_problem(text: str) -> str | None:
    """Why the database cannot store this text (NUL; a lone surrogate, which is not UTF-8), or None."""
    if "\x00" in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def unstorable_text(value: Any) -> dict[str | int, Any]:
    """marshmallow-shaped errors for every string in a parsed body (keys included) the database cannot store.

    Empty when all of it can be stored. Paths follow the body, so `{"presets": [{"prompt": "\\ud800"}]}`
    gives `{"presets": {0: {"prompt": [SURROGATE_MESSAGE]}}}`, as a field validator's error would be.
    """
    errors: dict[str | int, Any] = {}
    if isinstance(value, dict):
        items: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return errors
    for key, item in items:
        if isinstance(key, str) and (problem := text_problem(key)):
            errors[key.encode("utf-8", "backslashreplace").decode("ascii", "replace")] = [problem]
        elif isinstance(item, str):
            if problem := text_problem(item):
                errors[key] = [problem]
        elif inner := unstorable_text(item):
            errors[key] = inner
    return errors


class StorableSchema(Schema):
    """A schema for what a merchant sends: text the database cannot store (NUL, a lone surrogate) is refused
    before loading, with the field named, so it gets no further than the request that carried it (400)."""

    refuse_unstorable_text = True

    @pre_load
    def _storable_text(self, data: Any, **_kwargs: Any) -> Any:
        if self.refuse_unstorable_text and (errors := unstorable_text(data)):
            raise ValidationError(errors)
        return data


ALT_PLACEHOLDERS = ("title", "kind", "preset")
"""What the push fills into the alt-text template (jobs/push.py alt_text)."""


def template_problem(template: str) -> str | None:
    """Why str.format_map, which fills the alt text on every push, cannot fill this template; or None."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        template.format_map({name: "" for name in names})
    except (ValueError, LookupError, AttributeError, TypeError) as exc:
        return (f"Not a usable template ({exc}); use the placeholders {{title}}, {{kind}} and {{preset}}, "
                "and write a literal brace as {{ or }}.")
    unknown = sorted(names - set(ALT_PLACEHOLDERS))
    if unknown:
        # A push would fill an unknown name with nothing: refused here, where the merchant can still fix it.
        return (f"No placeholder {', '.join('{' + name + '}' for name in unknown)}: use {{title}}, {{kind}} and "
                "{preset}, and write a literal brace as {{ or }}.")
    return None


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
    refine = fields.Boolean(load_default=True,
                            metadata={"description": "crisp edges without the old background's fringe"})
    keep_shadow = fields.Boolean(load_default=False,
                                 metadata={"description": "keep the product's own shadow in the transparent cutout"})


LEGACY_SIZES = ("1024x1024", "1536x1024", "1024x1536")
"""The fixed sizes a preset named before presets had an aspect and a long side; still accepted, deprecated."""


class PresetSchema(Schema):
    """A shop's own scene preset: how it looks, its aspect and long side, and whether the product is kept exact.

    `size` is deprecated: presets saved before aspects existed keep their fixed size, and it wins over `aspect` and
    `long_side` while it is set; leave it out (or empty) to size the scene by `aspect` and `long_side`.
    """

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=PRESET_NAME)
    style = fields.String(load_default="prompt",
                          validate=validate.OneOf(["prompt", "studio", "surface", "gradient", "reference"]))
    prompt = fields.String(load_default="", validate=validate.Length(max=2000))
    surface = fields.String(load_default="marble", validate=validate.OneOf(["marble", "wood"]))
    aspect = fields.String(
        load_default="",
        validate=validate.OneOf(["", *ASPECTS], error=f"Use one of {', '.join(ASPECTS)} (or empty: the shop's "
                                                      "image_ratio)."),
        metadata={"description": "width:height of the scene; empty: the shop's image_ratio"})
    long_side = fields.Integer(
        load_default=DEFAULT_LONG_SIDE, validate=validate.Range(MIN_LONG_SIDE, MAX_LONG_SIDE),
        metadata={"description": "the scene's longer side in px; the other follows from the aspect"})
    size = fields.String(
        load_default="", validate=validate.OneOf(
            ["", *LEGACY_SIZES], error="Use aspect and long_side (or one of 1024x1024, 1536x1024, 1024x1536: "
                                       "the older fixed sizes)."),
        metadata={"deprecated": True,
                  "description": "deprecated: a fixed WxH kept from older settings, which wins over aspect and "
                                 "long_side; leave it out (or empty) to use them"})
    quality = fields.String(load_default="medium", validate=validate.OneOf(["low", "medium", "high", "auto"]))
    reference_image_ids = fields.List(fields.Integer(validate=validate.Range(min=1)), load_default=list,
                                      validate=validate.Length(max=15))
    text = fields.String(load_default="", validate=validate.Length(max=40))
    text_mode = fields.String(load_default="overlay", validate=validate.OneOf(["overlay", "model"]))
    product_lock = fields.String(
        load_default="exact", validate=validate.OneOf(PRODUCT_LOCKS),
        metadata={"description": "exact: the product's own pixels are laid back over every scene, so no model "
                                 "redraws it; model: a GPT Image model may redraw it too (stylised scenes), and a "
                                 "scene whose product changed waits for review"})

    @validates_schema
    def _one_way_to_size(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("size") and data.get("aspect"):
            raise ValidationError({"size": ["Give an aspect or the older fixed size, not both: empty size to use "
                                            f"aspect {data['aspect']} and long_side."]})


class SettingsSchema(StorableSchema):
    """A shop's settings. Every key has a default; unknown keys are refused.

    `incoming=True` (SETTINGS_INPUT) is for what a merchant saves: it also refuses unstorable text, an
    alt-text template a push cannot fill, and settings that make nothing. Stored settings load without
    those checks (SETTINGS), so a shop saved before a check existed keeps working.
    """

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
        load_default=lambda: list(DEFAULT_SCENES),
        validate=validate.Length(max=8),
    )
    image_ratio = fields.String(
        load_default=DEFAULT_RATIO, validate=validate.OneOf(ASPECTS),
        metadata={"description": "the theme's product image ratio (width:height): built-in scenes, and presets "
                                 "that name no aspect, are made at it"})
    brand_color = fields.String(load_default="#3b6ea5", validate=validate.Regexp(r"^#[0-9a-fA-F]{6}$"))
    provider = fields.String(load_default="", validate=validate.OneOf(["", "compositor", "openai"]))
    model = fields.String(load_default="", validate=lambda name: _known_model(name),
                          metadata={"description": "GPT Image model; empty for the service default"})
    monthly_budget_usd = fields.Float(load_default=20.0, validate=validate.Range(0, 100_000),
                                      metadata={"description":
                                                "paid scene calls stop when this month's spend would pass it"})
    presets = fields.List(fields.Nested(PresetSchema), load_default=list, validate=validate.Length(max=20))
    publish_mode = fields.String(load_default="auto", validate=validate.OneOf(["auto", "review"]))
    on_regenerate = fields.String(
        load_default="keep", validate=validate.OneOf(["keep", "replace"]),
        metadata={"description": "replace: a new render's push takes our earlier images off the product "
                                 "(never the merchant's own)"})
    alt_template = fields.String(load_default="{title} ({kind})", validate=validate.Length(max=200))
    regenerate_per_minute = fields.Integer(
        load_default=10, validate=validate.Range(1, 600),
        metadata={"description": "manual regenerate requests accepted per minute (API and page together)"})

    def __init__(self, *, incoming: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.incoming = self.refuse_unstorable_text = incoming

    @validates_schema
    def _usable(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not self.incoming:
            return
        errors: dict[str, Any] = {}
        if problem := template_problem(data["alt_template"]):
            errors["alt_template"] = [problem]
        if not data["cutout"]["enabled"] and not data["scene_presets"]:
            errors["scene_presets"] = ["Nothing would be made: choose at least one scene, or turn on "
                                       "Cutout: Make a cutout (cutout.enabled)."]
        if errors:
            raise ValidationError(errors)


MAX_REGENERATE_PROMPT = 1000
"""Characters of a one-off regenerate prompt; it is added to every scene's own prompt."""


class RegenerateSchema(StorableSchema):
    """The body of a manual regenerate. Left-out keys take the shop's settings; `{}` is the shop's defaults.

    Built with the shop's preset names and reference image ids, it also refuses names and ids the shop
    does not have; built without them (the OpenAPI document), it checks shapes only.
    """

    class Meta:
        unknown = RAISE

    scenes = fields.List(
        fields.String(validate=PRESET_NAME), load_default=None, validate=validate.Length(min=1, max=8),
        metadata={"description": "scene preset names (built-in or the shop's own); default: the shop's scene_presets"})
    prompt = fields.String(load_default="", validate=validate.Length(max=MAX_REGENERATE_PROMPT),
                           metadata={"description": "one-off words added to every scene's prompt"})
    reference_image_ids = fields.List(
        fields.Integer(validate=validate.Range(min=1)), load_default=None, validate=validate.Length(min=1, max=8),
        metadata={"description": "the shop's reference images to use; default: all of them"})
    cutout = fields.Boolean(load_default=None, metadata={
        "description": "also make the cutout and white-background images; default: the shop's cutout.enabled"})

    def __init__(self, *, preset_names: set[str] | None = None, reference_ids: set[int] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.preset_names, self.reference_ids = preset_names, reference_ids

    @validates_schema
    def _known_to_the_shop(self, data: dict[str, Any], **_kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        if self.preset_names is not None and data.get("scenes"):
            unknown = [name for name in data["scenes"] if name not in self.preset_names]
            if unknown:
                errors["scenes"] = [f"No scene preset {name!r} in this shop; choose from "
                                    f"{', '.join(sorted(self.preset_names))}." for name in unknown]
        if self.reference_ids is not None and data.get("reference_image_ids"):
            missing = [ref for ref in data["reference_image_ids"] if ref not in self.reference_ids]
            if missing:
                errors["reference_image_ids"] = [f"No reference image {ref} in this shop." for ref in missing]
        if errors:
            raise ValidationError(errors)


def preset_from_settings(entry: dict[str, Any], image_ratio: str = DEFAULT_RATIO) -> ScenePreset:
    """A shop's validated preset entry as a ScenePreset, sized for a shop whose product images are `image_ratio`.

    An older entry's fixed `size` wins; otherwise its aspect (or else the shop's ratio) at its long side.
    """
    if entry.get("size"):
        width, height = (int(side) for side in entry["size"].split("x"))
    else:
        width, height = dimensions(entry.get("aspect") or image_ratio, entry.get("long_side", DEFAULT_LONG_SIDE))
    return ScenePreset(
        name=entry["name"], style=entry["style"], prompt=entry["prompt"], width=width, height=height,
        quality=entry["quality"], surface=entry["surface"], text=entry["text"], text_mode=entry["text_mode"],
        product_lock=entry.get("product_lock", "exact"),
    )


def _known_model(name: str) -> None:
    from .scenes.openai_images import MODELS

    if name and name not in MODELS:
        raise ValidationError(f"Unknown model; choose one of {', '.join(sorted(MODELS))}.")


# Schemas are built once: building one is most of the cost of a small load(), and load() keeps no state.
SETTINGS = SettingsSchema()
SETTINGS_INPUT = SettingsSchema(incoming=True)


def settings_with_defaults(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A shop's stored settings merged over the defaults, validated (what a merchant sends: SETTINGS_INPUT)."""
    return SETTINGS.load(stored or {})


def default_settings() -> dict[str, Any]:
    return SETTINGS.load({})


@functools.cache
def _defaults() -> dict[str, Any]:
    return default_settings()


def setting(stored: dict[str, Any] | None, name: str) -> Any:
    """One top-level setting, or its default. Stored settings were validated when saved.

    The webhook path needs two flags; loading the whole schema for them would be wasted work.
    """
    if stored and name in stored:
        return stored[name]
    return _defaults()[name]


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
    # When the shop last changed the product, as the signed body says (aware); None when the platform sends
    # none. Delivery ids are not signed, so this is what tells a replayed old body from a new one.
    updated_at: dt.datetime | None = None


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
