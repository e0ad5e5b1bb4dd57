"""The settings page: every SettingsSchema field on the form, all-or-nothing saves, reference photos."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from catalog_service.models import ReferenceImage, Shop, UsageRecord
from catalog_service.schemas import SETTINGS, settings_with_defaults
from merchant import field_error, form_data

FIXTURES = Path(__file__).parents[1] / "fixtures"


def stored(app, shop_id: int) -> dict:  # type: ignore[type-arg]
    with app.app_context():
        return dict(app.extensions["catalog_db"].session().get(Shop, shop_id).settings)


def schema_paths(schema, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    from marshmallow import fields

    paths = []
    for key, field in schema.fields.items():
        if isinstance(field, fields.Nested):
            paths += schema_paths(field.schema, f"{prefix}{key}.")
        elif not (isinstance(field, fields.List) and isinstance(field.inner, fields.Nested)):
            paths.append(prefix + key)
    return paths


def test_the_form_has_a_labelled_control_for_every_setting(app, merchant) -> None:
    """Each schema field (nested cutout included) is on the page, with a label and its current value."""
    html = merchant.get(f"/shops/{merchant.id}/settings").get_data(as_text=True)
    for path in schema_paths(SETTINGS):
        assert f'name="{path}"' in html, path
    for match in re.finditer(r'<(input|select|textarea)[^>]*\bid="(f-[^"]+)"', html):
        assert f'for="{match.group(2)}"' in html or "<legend>" in html, match.group(2)
    assert 'value="20.0"' in html and "Spent this month" in html


def test_a_valid_form_is_saved(app, merchant) -> None:
    """Changed fields, a new preset and a nested cutout option are saved, validated, with a confirmation."""
    settings = settings_with_defaults({})
    settings.update(publish_mode="review", monthly_budget_usd=55.5, auto_generate=False)
    settings["cutout"].update(square=True, padding=0.1, format="webp")
    settings["presets"] = [{"name": "kitchen", "prompt": "on a kitchen counter, morning light", "size": "1024x1024",
                            "quality": "high", "text": "NEW", "style": "surface", "surface": "wood"}]
    settings["scene_presets"] = ["studio", "kitchen"]
    response = merchant.post(f"/shops/{merchant.id}/settings", data=form_data(settings))
    assert response.status_code == 302, response.get_data(as_text=True)
    saved = stored(app, merchant.id)
    assert saved["publish_mode"] == "review" and saved["monthly_budget_usd"] == 55.5 and not saved["auto_generate"]
    assert saved["cutout"]["square"] and saved["cutout"]["format"] == "webp" and saved["cutout"]["padding"] == 0.1
    assert saved["presets"][0]["name"] == "kitchen" and saved["presets"][0]["text"] == "NEW"
    assert saved["scene_presets"] == ["studio", "kitchen"]
    assert "Settings saved." in merchant.get(response.headers["Location"]).get_data(as_text=True)


def selected(html: str, path: str) -> str | None:
    """The chosen option of a select on the page."""
    select_ = re.search(r'<select id="f-%s".*?</select>' % re.escape(path.replace(".", "-")), html, re.S)
    assert select_, path
    chosen = re.search(r'<option value="([^"]*)" selected', select_.group(0))
    return chosen.group(1) if chosen else None


def test_the_shop_ratio_and_a_presets_aspect_long_side_and_product_lock_round_trip(app, merchant) -> None:
    """The merchant picks a 4:5 theme ratio and a 16:9 preset at 1600 px whose product the model may redraw: saved,
    and shown chosen when the page opens again. A new preset offers aspect, long side and product lock, and no
    fixed size."""
    html = merchant.get(f"/shops/{merchant.id}/settings").get_data(as_text=True)
    assert selected(html, "image_ratio") == "1:1"
    template = re.search(r'<template id="preset-template">(.*?)</template>', html, re.S)
    assert template
    for key in ("aspect", "long_side", "product_lock"):
        assert f'name="presets.__i__.{key}"' in template.group(1), key
    assert 'name="presets.__i__.size"' not in template.group(1)
    settings = settings_with_defaults({})
    settings["image_ratio"] = "4:5"
    settings["presets"] = [{"name": "banner", "style": "gradient", "aspect": "16:9", "long_side": 1600,
                            "product_lock": "model"}]
    settings["scene_presets"] = ["studio", "banner"]
    response = merchant.post(f"/shops/{merchant.id}/settings", data=form_data(settings))
    assert response.status_code == 302, response.get_data(as_text=True)
    saved = stored(app, merchant.id)
    assert saved["image_ratio"] == "4:5"
    assert {key: saved["presets"][0][key] for key in ("aspect", "long_side", "product_lock", "size")} == {
        "aspect": "16:9", "long_side": 1600, "product_lock": "model", "size": ""}
    html = merchant.get(f"/shops/{merchant.id}/settings").get_data(as_text=True)
    assert selected(html, "image_ratio") == "4:5"
    assert (selected(html, "presets.0.aspect"), selected(html, "presets.0.product_lock")) == ("16:9", "model")
    assert 'name="presets.0.long_side" value="1600"' in html


def test_a_preset_with_the_old_fixed_size_keeps_it_when_the_page_is_saved(app, merchant) -> None:
    """A preset stored before aspects existed shows its fixed size, and saving the page leaves it as it was."""
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        row = session.get(Shop, merchant.id)
        row.settings = {**row.settings, "presets": [{"name": "kitchen", "style": "studio", "size": "1024x1536"}],
                        "scene_presets": ["studio", "kitchen"]}
    html = merchant.get(f"/shops/{merchant.id}/settings").get_data(as_text=True)
    assert selected(html, "presets.0.size") == "1024x1536"
    response = merchant.post(f"/shops/{merchant.id}/settings", data=form_data(settings_with_defaults(
        stored(app, merchant.id))))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert stored(app, merchant.id)["presets"][0]["size"] == "1024x1536"


@pytest.mark.parametrize(("path", "value", "words"), [
    ("cutout.padding", "0.9", "less than or equal to 0.5"),
    ("cutout.max_side", "12", "greater than or equal to 256"),
    ("monthly_budget_usd", "", "Not a valid number"),
    ("monthly_budget_usd", "-5", "greater than or equal to 0"),
    ("brand_color", "red", "match"),
    ("publish_mode", "sometimes", "Must be one of"),
    ("model", "gpt-image-1", "Unknown model"),
    ("presets.0.name", "Bad Name", "lowercase letters"),
    ("presets.0.size", "999x999", "1024x1024"),
    ("presets.0.text", "x" * 41, "40"),
    ("presets.0.aspect", "2:3", "4:5"),
    ("presets.0.long_side", "100", "greater than or equal to 512"),
    ("presets.0.product_lock", "loose", "exact, model"),
    ("image_ratio", "3:2", "Must be one of"),
    ("alt_template", "Nice\x00 {title}", "NUL"),
    ("presets.0.prompt", "a\x00b", "NUL"),
    ("alt_template", "{title", "Not a usable template"),
    ("alt_template", "{0} photo", "Not a usable template"),
])
def test_an_invalid_field_is_shown_beside_it_and_nothing_is_saved(app, merchant, path, value, words) -> None:
    """One bad field: 400, the message beside that field, the summary on top, and no field saved."""
    before = stored(app, merchant.id)
    settings = settings_with_defaults({})
    settings["publish_mode"] = "review"  # a valid change that must not be saved either
    settings["presets"] = [{"name": "kitchen", "prompt": "counter", "style": "studio"}]
    data = form_data(settings)
    data[path] = value
    response = merchant.post(f"/shops/{merchant.id}/settings", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert words in field_error(html, path), field_error(html, path)
    assert "Nothing was saved" in html
    assert stored(app, merchant.id) == before
    assert f'value="{value}"' in html or value not in ("0.9", "-5", "red")  # the typed value is kept for fixing


@pytest.mark.parametrize(("change", "path", "words"), [
    ({"presets": [{"name": "beach", "style": "prompt", "prompt": "on sand"}]}, "presets.0.style",
     "cannot draw the style"),
    ({"provider": "openai"}, "provider", "OPENAI_API_KEY"),
    ({"alt_template": "{title} by {brand}"}, "alt_template", "No placeholder {brand}"),
])
def test_a_value_that_could_only_fail_later_is_refused_beside_its_field(app, merchant, monkeypatch, change, path,
                                                                       words) -> None:
    """The compositor without an OpenAI key: a style it cannot draw, OpenAI itself, an unknown alt-text placeholder
    are each shown beside their field, and nothing is saved."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    before = stored(app, merchant.id)
    response = merchant.post(f"/shops/{merchant.id}/settings", data=form_data({**settings_with_defaults({}),
                                                                                **change}))
    assert response.status_code == 400
    assert words in field_error(response.get_data(as_text=True), path)
    assert stored(app, merchant.id) == before


def _attributes(html: str, element_id: str) -> dict[str, str]:
    match = re.search(r'<(?:input|textarea)[^>]*\bid="%s"[^>]*>' % re.escape(element_id), html)
    assert match, element_id
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(0)))


def test_length_and_range_limits_on_the_pages_come_from_the_schemas(app, merchant) -> None:
    """Every maxlength, min and max on the settings page is the schema's Length or Range; the regenerate prompt
    boxes allow what RegenerateSchema accepts (not 2,000 when the API takes 1,000)."""
    from marshmallow import fields, validate
    from test_api_regenerate import make_renders

    from catalog_service.schemas import PresetSchema, RegenerateSchema

    html = merchant.get(f"/shops/{merchant.id}/settings").get_data(as_text=True)
    checked = 0
    for schema, prefix in ((SETTINGS, "f-"), (SETTINGS.fields["cutout"].schema, "f-cutout-")):
        for key, schema_field in schema.fields.items():
            for rule in schema_field.validators:
                if isinstance(rule, validate.Length) and rule.max and isinstance(schema_field, fields.String):
                    assert _attributes(html, prefix + key)["maxlength"] == str(rule.max), key
                    checked += 1
                elif isinstance(rule, validate.Range):
                    attributes = _attributes(html, prefix + key)
                    assert (float(attributes["min"]), float(attributes["max"])) == (rule.min, rule.max), key
                    checked += 1
    assert checked >= 5
    template = re.search(r'<template id="preset-template">(.*?)</template>', html, re.S)
    assert template
    for key in ("prompt", "text"):
        (rule,) = [v for v in PresetSchema().fields[key].validators if isinstance(v, validate.Length)]
        assert _attributes(template.group(1), f"f-presets-__i__-{key}")["maxlength"] == str(rule.max)
    (prompt_rule,) = [v for v in RegenerateSchema().fields["prompt"].validators if isinstance(v, validate.Length)]
    make_renders(app, merchant.id, 1)
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:  # prompts go to OpenAI only
        row = session.get(Shop, merchant.id)
        row.settings = {**row.settings, "provider": "openai"}
    renders = merchant.get(f"/shops/{merchant.id}/renders").get_data(as_text=True)
    boxes = re.findall(r'<textarea[^>]*name="prompt"[^>]*>', renders)
    assert len(boxes) >= 2, renders
    assert all(f'maxlength="{prompt_rule.max}"' in box for box in boxes), boxes


def test_a_new_preset_starts_with_a_style_the_scene_maker_draws(app, merchant) -> None:
    """On the compositor, "Add a preset" starts with a style it draws, so saving it as it is works."""
    html = merchant.get(f"/shops/{merchant.id}/settings").get_data(as_text=True)
    template = re.search(r'<template id="preset-template">(.*?)</template>', html, re.S)
    assert template
    chosen = re.search(r'<select id="f-presets-__i__-style".*?<option value="(\w+)" selected', template.group(1), re.S)
    assert chosen and chosen.group(1) == "studio"


def test_settings_that_make_nothing_are_refused_naming_the_field(app, merchant) -> None:
    """Cutout off and no scene chosen: 400, the reason beside the scenes field, nothing saved."""
    before = stored(app, merchant.id)
    settings = settings_with_defaults({})
    settings["cutout"]["enabled"] = False
    settings["scene_presets"] = []
    response = merchant.post(f"/shops/{merchant.id}/settings", data=form_data(settings))
    assert response.status_code == 400
    assert "Nothing would be made" in field_error(response.get_data(as_text=True), "scene_presets")
    assert stored(app, merchant.id) == before


def test_a_surrogates_bytes_in_the_form_are_never_stored_as_a_surrogate(app, client, merchant) -> None:
    """Werkzeug keeps undecodable percent escapes as they were, so a surrogate's bytes (ED A0 80) arrive as the
    text `%ED%A0%80`: saved as text, no 500, and the next push can encode it."""
    from urllib.parse import urlencode

    data = form_data(settings_with_defaults({}))
    del data["alt_template"]
    body = urlencode({"csrf_token": merchant.csrf, **data}, doseq=True) + "&alt_template=%ED%A0%80+{title}"
    response = client.post(f"/shops/{merchant.id}/settings", data=body,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 302, response.get_data(as_text=True)
    saved = stored(app, merchant.id)["alt_template"]
    assert saved == "%ED%A0%80 {title}"


def test_duplicate_preset_names_and_foreign_reference_images_are_refused(app, merchant) -> None:
    """What the schema cannot see is checked too, beside the preset's own fields."""
    settings = settings_with_defaults({})
    settings["presets"] = [{"name": "kitchen"}, {"name": "kitchen", "reference_image_ids": [424242]}]
    response = merchant.post(f"/shops/{merchant.id}/settings", data=form_data(settings))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Another preset already has this name" in field_error(html, "presets.1.name")
    assert "424242" in field_error(html, "presets.1.reference_image_ids")


@pytest.mark.both_databases
def test_this_months_spend_is_shown_beside_the_budget(app, merchant) -> None:
    """Paid calls this month add up; last month's do not count."""
    now = dt.datetime.now(dt.UTC)
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        for cost, when in ((0.25, now), (0.07, now), (9.0, now - dt.timedelta(days=40))):
            session.add(UsageRecord(shop_id=merchant.id, provider="openai", model="gpt-image-2", cost_usd=cost,
                                    created_at=when))
    html = merchant.get(f"/shops/{merchant.id}/settings").get_data(as_text=True)
    assert "<strong>$0.32</strong>" in html and "of $20.00" in html


def photo(size: tuple[int, int] = (300, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def test_upload_preview_and_delete_a_reference_image(app, merchant) -> None:
    """An uploaded photo is listed with a thumbnail that loads; deleting it removes it from presets too."""
    response = merchant.post(f"/shops/{merchant.id}/reference-images",
                             data={"file": (io.BytesIO((FIXTURES / "rocket.jpg").read_bytes()), "launch.jpg")},
                             content_type="multipart/form-data")
    assert response.status_code == 302
    html = merchant.get(response.headers["Location"]).get_data(as_text=True)
    thumb = re.search(r'<img src="(/shops/%d/thumbs/reference/\d+\.webp\?v=\w+)" alt="launch.jpg"' % merchant.id, html)
    assert thumb, html
    image = merchant.get(thumb.group(1))
    assert image.status_code == 200 and image.mimetype == "image/webp"
    with Image.open(io.BytesIO(image.data)) as preview:
        assert 250 <= max(preview.size) <= 360  # small; a JPEG may decode at a reduced scale
    with app.app_context():
        ref_id = app.extensions["catalog_db"].session().scalars(select(ReferenceImage.id)).one()
    settings = settings_with_defaults({})
    settings["presets"] = [{"name": "launch", "style": "reference", "reference_image_ids": [ref_id]}]
    assert merchant.post(f"/shops/{merchant.id}/settings", data=form_data(settings)).status_code == 302
    deleted = merchant.post(f"/shops/{merchant.id}/reference-images/{ref_id}/delete")
    assert deleted.status_code == 302
    assert stored(app, merchant.id)["presets"][0]["reference_image_ids"] == []
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalars(select(ReferenceImage)).all() == []


@pytest.mark.parametrize(("files", "words"), [
    ([(b"<html>no</html>", "page.jpg")], "web page"),
    ([(photo()[:60], "broken.jpg")], "damaged"),
    ([], "Choose a photo"),
])
def test_a_bad_upload_is_explained_beside_the_picker(app, merchant, files, words) -> None:
    """The same checks as product photos; the reason is shown by the upload field; nothing is stored."""
    data = {"file": [(io.BytesIO(body), name) for body, name in files]} if files else {}
    response = merchant.post(f"/shops/{merchant.id}/reference-images", data=data, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    error = re.search(r'id="upload-error"[^>]*>([^<]*)<', html)
    assert error and words in error.group(1), error and error.group(1)
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalars(select(ReferenceImage)).all() == []


def test_another_shops_reference_image_cannot_be_deleted(app, merchant) -> None:
    """Deleting by id is scoped to the signed-in shop."""
    from catalog_service.references import add_reference_image
    from catalog_service.shops import create_shop

    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        other, _, _ = create_shop(session, platform="generic", domain="other.example.com")
        ref = add_reference_image(session, app.extensions["catalog"].storage, other, photo(), max_pixels=10**7)
        ref_id = ref.id
    merchant.post(f"/shops/{merchant.id}/reference-images/{ref_id}/delete")
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(ReferenceImage, ref_id) is not None


def test_photos_over_the_size_cap_are_refused_in_words(app_config, redis, shop) -> None:  # type: ignore[no-untyped-def]
    """One photo over the per-photo cap is explained by the picker; a body over all of them is a 413 page."""
    from catalog_service.app import create_app
    from merchant import sign_in

    small = create_app({**app_config, "max_source_bytes": 20_000})
    try:
        client = small.test_client()
        csrf = sign_in(small, client, shop[0])
        response = client.post(f"/shops/{shop[0]}/reference-images", content_type="multipart/form-data", data={
            "csrf_token": csrf, "file": (io.BytesIO(b"\xff\xd8" + b"0" * 30_000), "huge.jpg")})
        error = re.search(r'id="upload-error"[^>]*>([^<]*)<', response.get_data(as_text=True))
        assert response.status_code == 400 and error and "huge.jpg: larger than 19 KB" in error.group(1)
        too_much = client.post(f"/shops/{shop[0]}/reference-images", content_type="multipart/form-data", data={
            "csrf_token": csrf, "file": (io.BytesIO(b"0" * 120_000), "all.jpg")})
        assert too_much.status_code == 413 and "each up to 19 KB" in too_much.get_data(as_text=True)
    finally:
        small.extensions["catalog"].close()
