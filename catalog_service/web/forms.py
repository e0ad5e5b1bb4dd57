"""A marshmallow schema as an HTML form: field descriptions for the template, form data back to a dict.

Generic over the schema, so a field added to SettingsSchema appears on the page without a template edit:
booleans become checkboxes, OneOf strings selects, numbers number inputs, nested schemas fieldsets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, validate
from werkzeug.datastructures import MultiDict

from ..schemas import RegenerateSchema

# key -> (label, help). Keys not listed get a label from their name and help from the field's description.
LABELS: dict[str, tuple[str, str]] = {
    "auto_generate": ("Make images for new products automatically", "When a product is created in your shop."),
    "on_update": ("When a product's photos change", "Make new images, or leave the product as it is."),
    "cutout": ("Cutout", "The product on its own, background removed."),
    "enabled": ("Make a cutout", ""),
    "white": ("Also make a white-background version", "For marketplaces that want white (JPEG)."),
    "padding": ("Padding around the product", "A share of the image side: 0 to 0.5 (0.05 = 5%)."),
    "square": ("Square image", "Pad the cutout to a square."),
    "max_side": ("Longest side, in pixels", "256 to 4096."),
    "format": ("File format", "Transparent PNG or WebP."),
    "refine": ("Refine edges", ""),
    "keep_shadow": ("Keep the product's shadow", ""),
    "scene_presets": ("Scenes to make for every product",
                      "Built-in scenes and your own presets below. Studio, brand gradient and your own backdrop "
                      "photos (reference) look like real product photography; marble counter and wooden table are "
                      "drawn surfaces, best for products shot from the side."),
    "image_ratio": ("Product image ratio", "Width to height, as your theme shows product images. Built-in scenes, "
                                           "and your presets with no aspect of their own, are made at it."),
    "brand_color": ("Brand colour", "Used by the brand scenes."),
    "provider": ("Scene maker", "Who makes the scenes."),
    "model": ("Image model", "Only for OpenAI scenes."),
    "monthly_budget_usd": ("Monthly budget (USD)", "Paid scenes stop when this month's spend would pass it."),
    "presets": ("Your scene presets", ""),
    "publish_mode": ("Publishing", "Review first: nothing reaches your shop until you approve it on Renders."),
    "on_regenerate": ("When a product is made again", "Replace takes our earlier images off the product; "
                                                       "your own photos are never touched."),
    "alt_template": ("Alt text", "Placeholders: {title}, {kind}, {preset}."),
    "regenerate_per_minute": ("Regenerations per minute", "The most manual regenerations accepted in a minute."),
    # Preset fields.
    "name": ("Name", "Lowercase letters, digits and dashes, e.g. kitchen-morning."),
    "style": ("Style", ""),
    "prompt": ("Prompt", "Describe the setting: surface, light, mood."),
    "surface": ("Surface", "For the surface style."),
    "aspect": ("Aspect", "Width to height of this scene."),
    "long_side": ("Longest side, in pixels", "512 to 4096; the other side follows from the aspect."),
    "size": ("Fixed size (older setting)", "Kept from before scenes had an aspect. Choose \"From the aspect and "
                                           "longest side\" to use those instead."),
    "quality": ("Quality", "Higher quality costs more."),
    "reference_image_ids": ("Reference images", "Photos that show the look you want."),
    "text": ("Exact text (optional)", "Up to 40 characters shown on the image, e.g. a sale line."),
    "text_mode": ("How the text is added", ""),
    "product_lock": ("Your product in the scene", "OpenAI scenes: keep your product's own pixels exact, or let the "
                                                 "model redraw it for a stylised look (each such scene is checked and "
                                                 "held for review if the product changed). The compositor always "
                                                 "keeps it exact."),
}

ASPECT_LABELS = {"1:1": "Square 1:1", "4:5": "Portrait 4:5", "3:4": "Portrait 3:4", "16:9": "Landscape 16:9",
                 "9:16": "Vertical 9:16"}

CHOICE_LABELS: dict[str, dict[str, str]] = {
    "on_update": {"new_images": "Make new images", "ignore": "Do nothing"},
    "format": {"png": "PNG", "webp": "WebP"},
    "provider": {"": "Service default", "compositor": "Built-in compositor (free)", "openai": "OpenAI GPT Image"},
    "model": {"": "Service default"},
    "publish_mode": {"auto": "Push to my shop at once", "review": "Let me review first"},
    "on_regenerate": {"keep": "Keep the earlier images", "replace": "Replace the earlier images"},
    "style": {"prompt": "From the prompt", "studio": "Studio", "surface": "On a surface", "gradient": "Gradient",
              "reference": "Like my reference images"},
    "surface": {"marble": "Marble", "wood": "Wood"},
    "quality": {"low": "Low", "medium": "Medium", "high": "High", "auto": "Automatic"},
    "text_mode": {"overlay": "Drawn on top (exact)", "model": "Painted by the model"},
    "image_ratio": ASPECT_LABELS,
    "aspect": {"": "Same as the product image ratio", **ASPECT_LABELS},
    "size": {"": "From the aspect and longest side", "1536x1024": "Landscape 1536×1024",
             "1024x1024": "Square 1024×1024", "1024x1536": "Portrait 1024×1536"},
    "product_lock": {"exact": "Keep my product exact", "model": "Let the model redraw it"},
}
LONG_TEXT = {"prompt"}


@dataclasses.dataclass
class FormField:
    key: str
    label: str
    help: str
    widget: str  # checkbox | select | number | text | textarea | color | group | presets | checklist | references
    choices: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    children: list[FormField] = dataclasses.field(default_factory=list)
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None


def _label(key: str, field: fields.Field) -> tuple[str, str]:
    if key in LABELS:
        label, help_text = LABELS[key]
        return label, help_text or str(field.metadata.get("description", ""))
    return key.replace("_", " ").capitalize(), str(field.metadata.get("description", ""))


def _validators(field: fields.Field) -> list[Any]:
    return list(getattr(field, "validators", []) or [])


def describe(schema: Schema, *, model_choices: list[str] | None = None) -> list[FormField]:
    """One FormField per schema field, in declaration order."""
    out = []
    for key, field in schema.fields.items():
        label, help_text = _label(key, field)
        item = FormField(key=key, label=label, help=help_text, widget="text", required=field.required)
        one_of = next((v for v in _validators(field) if isinstance(v, validate.OneOf)), None)
        ranged = next((v for v in _validators(field) if isinstance(v, validate.Range)), None)
        if isinstance(field, fields.String):
            limits = text_limits(field)
            item.min_length, item.max_length = limits.get("minlength"), limits.get("maxlength")
        if isinstance(field, fields.Boolean):
            item.widget = "checkbox"
        elif isinstance(field, fields.Nested):
            item.widget, item.children = "group", describe(field.schema, model_choices=model_choices)
        elif isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
            item.widget, item.children = "presets", describe(field.inner.schema, model_choices=model_choices)
        elif isinstance(field, fields.List) and isinstance(field.inner, fields.Integer):
            item.widget = "references"
        elif isinstance(field, fields.List):
            item.widget = "checklist"
        elif isinstance(field, (fields.Integer, fields.Float)):
            item.widget, item.step = "number", "1" if isinstance(field, fields.Integer) else "any"
            if ranged is not None:
                item.minimum, item.maximum = ranged.min, ranged.max
        elif one_of is not None:
            item.widget = "select"
            item.choices = [(str(c), CHOICE_LABELS.get(key, {}).get(str(c), str(c) or "Default"))
                            for c in one_of.choices]
        elif key == "model" and model_choices is not None:
            item.widget = "select"
            item.choices = [("", CHOICE_LABELS["model"][""])] + [(name, name) for name in model_choices]
        elif key == "brand_color":
            item.widget = "color"
        elif key in LONG_TEXT:
            item.widget = "textarea"
        out.append(item)
    return out


def text_limits(field: fields.Field) -> dict[str, int]:
    """A text field's Length limits as the HTML attributes that enforce them while typing (minlength, maxlength),
    so a page never lets a merchant type what the API then refuses."""
    length = next((v for v in _validators(field) if isinstance(v, validate.Length)), None)
    if length is None:
        return {}
    low = length.equal if length.equal is not None else length.min
    high = length.equal if length.equal is not None else length.max
    return {name: value for name, value in (("minlength", low), ("maxlength", high)) if value}


REGENERATE_LIMITS = {key: text_limits(field) for key, field in RegenerateSchema().fields.items()}
"""The regenerate forms' text limits, from the schema the API checks the request with."""


def parse(schema: Schema, form: MultiDict[str, str], prefix: str = "") -> dict[str, Any]:
    """Form data (names like `cutout.padding`, `presets.0.name`) as the dict the schema loads.

    Values stay strings: the schema converts and validates them. An unchecked checkbox is False.
    """
    data: dict[str, Any] = {}
    for key, field in schema.fields.items():
        name = prefix + key
        if isinstance(field, fields.Boolean):
            data[key] = name in form and form.get(name) not in ("", "0", "false", "off")
        elif isinstance(field, fields.Nested):
            data[key] = parse(field.schema, form, prefix=name + ".")
        elif isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
            indices = sorted({int(part.split(".")[0]) for part in (k[len(name) + 1:] for k in form.keys()
                              if k.startswith(name + ".")) if part.split(".")[0].isdigit()})
            data[key] = [parse(field.inner.schema, form, prefix=f"{name}.{index}.") for index in indices]
        elif isinstance(field, fields.List):
            data[key] = [value for value in form.getlist(name) if value != ""]
        elif name in form:
            data[key] = form.get(name, "").strip()
    return data


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"cutout.padding": [...], "presets.0.name": [...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            out.update(flatten_errors(value, f"{prefix}{key}."))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix.rstrip(".") or "_schema"] = list(messages)
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            out.update(flatten_errors(value, f"{prefix}{index}."))
    else:
        out[prefix.rstrip(".") or "_schema"] = [str(messages)]
    return out


def errors_for(errors: Mapping[str, list[str]], path: str) -> list[str]:
    """The messages for a field and anything below it (a list field's items)."""
    found = list(errors.get(path, []))
    for key, messages in errors.items():
        if key.startswith(path + ".") and key.rsplit(".", 1)[-1].isdigit():
            found.extend(messages)
    return found


def value_at(values: Any, path: str) -> Any:
    """values["cutout"]["padding"] for "cutout.padding"; None when missing."""
    current = values
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current
