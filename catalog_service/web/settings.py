"""/shops/<id>/settings: the settings form (driven by SettingsSchema) and the shop's reference images."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError
from sqlalchemy import func, select

from ..current import services
from ..imaging.errors import ImageRejected
from ..model_status import Notice, notice_for
from ..models import ReferenceImage, Shop, get_for_shop, utcnow
from ..references import MAX_REFERENCE_IMAGES, add_reference_image
from ..scenes import builtin_presets
from ..schemas import SETTINGS, SETTINGS_INPUT, PresetSchema, settings_with_defaults, text_problem
from ..shop_settings import check_for_shop, spent_this_month, styles_drawn_by
from ..shop_tokens import needs_reauth
from .common import MAX_UPLOAD_FILES, bp, shop_page, size_words
from .forms import LABELS, FormField, describe, errors_for, flatten_errors, parse, value_at

SECTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("New and changed products", ("auto_generate", "on_update")),
    ("Cutout", ("cutout",)),
    ("Scenes", ("scene_presets", "image_ratio", "brand_color", "provider", "model", "presets")),
    ("Budget", ("monthly_budget_usd",)),
    ("Publishing", ("publish_mode", "on_regenerate", "alt_template")),
]
"""How the page groups the schema's fields; fields added to the schema later land in "More"."""


def label_for(path: str) -> str:
    """A field's path in words, for the error summary: "cutout.padding" -> "Cutout: Padding around the product"."""
    parts = path.split(".")
    words: list[str] = []
    for index, part in enumerate(parts):
        if part.isdigit():
            if index and parts[index - 1] == "presets":
                words[-1] = f"Preset {int(part) + 1}"
            continue
        words.append(LABELS.get(part, (part.replace("_", " ").capitalize(), ""))[0])
    return ": ".join(words)


def sections(all_fields: list[FormField]) -> list[tuple[str, list[FormField]]]:
    by_key = {f.key: f for f in all_fields}
    out = [(title, [by_key[key] for key in keys if key in by_key]) for title, keys in SECTIONS]
    placed = {key for _title, keys in SECTIONS for key in keys}
    rest = [f for f in all_fields if f.key not in placed]
    return [(title, items) for title, items in out if items] + ([("More", rest)] if rest else [])


def _references(shop_id: int) -> list[ReferenceImage]:
    return list(services().db.session().scalars(
        select(ReferenceImage).where(ReferenceImage.shop_id == shop_id).order_by(ReferenceImage.id)))


def _scene_choices(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Built-in scenes of the chosen provider, the shop's own presets, and anything already chosen."""
    provider = values.get("provider") or services().config.scene_provider
    names = list(builtin_presets(provider if provider in ("compositor", "openai") else "compositor"))
    own = [p.get("name", "") for p in values.get("presets") or [] if isinstance(p, dict) and p.get("name")]
    chosen = [name for name in values.get("scene_presets") or [] if isinstance(name, str)]
    out: list[tuple[str, str]] = []
    for name in names + own + chosen:
        if name not in {n for n, _ in out}:
            label = name.replace("-", " ").capitalize() + (" (your preset)" if name in own else "")
            out.append((name, label))
    return out


def _default_style(values: dict[str, Any]) -> str:
    """A new preset's style: one the chosen scene maker draws, so that adding a preset never makes one it cannot."""
    provider = values.get("provider") or services().config.scene_provider
    drawn = styles_drawn_by(provider if isinstance(provider, str) else "")
    return "prompt" if drawn is None or "prompt" in drawn else drawn[0]


def _model_notice(values: dict[str, Any]) -> Notice | None:
    """The warning (shutting down soon) or error (shut down) about the OpenAI model the shop's scenes use."""
    config = services().config
    if (values.get("provider") or config.scene_provider) != "openai":
        return None
    model = values.get("model") or config.openai_model
    return notice_for(services().db.session(), model, utcnow().date()) if isinstance(model, str) else None


def render_settings(shop: Shop, values: dict[str, Any], errors: dict[str, list[str]] | None = None, *,
                    upload_errors: list[str] | None = None, status: int = 200) -> ResponseReturnValue:
    from ..scenes.openai_images import MODELS

    svc = services()
    settings = settings_with_defaults(shop.settings)
    return render_template(
        "settings.html", shop=shop, values=values, errors=errors or {}, upload_errors=upload_errors or [],
        sections=sections(describe(SETTINGS, model_choices=sorted(MODELS))), preset_fields=describe(PresetSchema()),
        preset_defaults={**PresetSchema().load({"name": "new-preset"}), "name": "", "style": _default_style(values)},
        scene_choices=_scene_choices(values),
        references=_references(shop.id), max_references=MAX_REFERENCE_IMAGES,
        spent=spent_this_month(svc.db.session(), shop.id), budget=settings["monthly_budget_usd"],
        max_upload_bytes=svc.config.max_source_bytes, errors_for=errors_for, value_at=value_at, label_for=label_for,
        needs_reauth=needs_reauth(shop), model_notice=_model_notice(values),
    ), status


@bp.route("/shops/<int:shop_id>/settings", methods=["GET", "POST"])
@shop_page
def settings(shop_id: int) -> ResponseReturnValue:
    """Show the settings; on POST validate everything and save only when all of it is valid."""
    shop = g.shop
    if request.method == "GET":
        return render_settings(shop, settings_with_defaults(shop.settings))
    submitted = parse(SETTINGS, request.form)
    svc = services()
    try:
        cleaned = SETTINGS_INPUT.load(submitted)
        check_for_shop(svc.db.session(), shop.id, cleaned, provider=svc.provider)
    except ValidationError as exc:
        return render_settings(shop, submitted, flatten_errors(exc.messages), status=400)
    with svc.db.transaction() as session:
        row = session.get(Shop, shop.id)
        if row is None:
            abort(404, "This shop no longer exists.")
        row.settings = cleaned
    flash("Settings saved.", "success")
    return redirect(url_for("web.settings", shop_id=shop.id))


@bp.post("/shops/<int:shop_id>/reference-images")
@shop_page
def upload_references(shop_id: int) -> ResponseReturnValue:
    """Add reference photos from the file picker or a drop; each is checked like a product photo."""
    shop = g.shop
    svc = services()
    current = settings_with_defaults(shop.settings)
    uploads = [f for f in request.files.getlist("file") if f and f.filename]
    if not uploads:
        return render_settings(shop, current, upload_errors=["Choose a photo (or drop one on the box) first."],
                               status=400)
    if len(uploads) > MAX_UPLOAD_FILES:
        return render_settings(shop, current, upload_errors=[f"Upload at most {MAX_UPLOAD_FILES} photos at once."],
                               status=400)
    problems: list[str] = []
    added = 0
    with svc.db.transaction() as session:
        count = session.scalar(select(func.count()).select_from(ReferenceImage)
                               .where(ReferenceImage.shop_id == shop.id)) or 0
        for upload in uploads:
            name = upload.filename or "photo"
            if problem := text_problem(name):
                problems.append(f"{name.encode('utf-8', 'replace').decode()}: the file name is not usable. {problem}")
                continue
            if count + added >= MAX_REFERENCE_IMAGES:
                problems.append(f"{name}: a shop keeps at most {MAX_REFERENCE_IMAGES} reference images; "
                                "delete one first.")
                continue
            data = upload.read(svc.config.max_source_bytes + 1)
            if len(data) > svc.config.max_source_bytes:
                problems.append(f"{name}: larger than {size_words(svc.config.max_source_bytes)}; "
                                "send a smaller photo.")
                continue
            try:
                add_reference_image(session, svc.storage, shop, data, name=name, max_pixels=svc.config.max_pixels)
            except ImageRejected as exc:
                problems.append(f"{name}: {exc}")
                continue
            added += 1
    if problems:
        if added:
            flash(f"{added} photo(s) added.", "success")
        return render_settings(shop, current, upload_errors=problems, status=400)
    flash(f"{added} reference photo{'s' if added != 1 else ''} added.", "success")
    return redirect(url_for("web.settings", shop_id=shop.id, _anchor="references"))


@bp.post("/shops/<int:shop_id>/reference-images/<int:image_id>/delete")
@shop_page
def delete_reference(shop_id: int, image_id: int) -> ResponseReturnValue:
    """Delete a reference photo, and its file unless another row still uses it; presets stop naming it."""
    svc = services()
    with svc.db.transaction() as session:
        row = get_for_shop(session, ReferenceImage, image_id, shop_id)
        if row is None:
            flash("That photo was already deleted.", "info")
            return redirect(url_for("web.settings", shop_id=shop_id, _anchor="references"))
        key = row.storage_key
        session.delete(row)
        shop = session.get(Shop, shop_id)
        if shop is None:
            abort(404, "This shop no longer exists.")
        current = settings_with_defaults(shop.settings)
        if any(image_id in p["reference_image_ids"] for p in current["presets"]):
            for preset in current["presets"]:
                preset["reference_image_ids"] = [ref for ref in preset["reference_image_ids"] if ref != image_id]
            shop.settings = current
        still_used = session.scalar(select(func.count()).select_from(ReferenceImage).where(
            ReferenceImage.storage_key == key, ReferenceImage.id != image_id))
    if not still_used:
        svc.storage.delete(key)
    flash("Reference photo deleted.", "success")
    return redirect(url_for("web.settings", shop_id=shop_id, _anchor="references"))
