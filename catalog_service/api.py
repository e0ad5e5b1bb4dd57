"""The JSON API (/api/v1): renders, reference images, usage, refinement. Bearer API key per shop."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, g, jsonify, request, url_for
from flask import session as web_session
from flask.typing import ResponseReturnValue
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from . import manual, ratelimit
from .current import services
from .http import FetchError, FetchTimeout, fetch
from .imaging.errors import ImageRejected
from .intake import insert_render
from .models import (
    Asset,
    AssetKind,
    Product,
    PushStatus,
    ReferenceImage,
    Render,
    RenderStatus,
    Shop,
    UsageRecord,
    get_for_shop,
)
from .presenters import render_json
from .references import MAX_REFERENCE_IMAGES, add_reference_image
from .scenes.base import ProviderError
from .schemas import SETTINGS_INPUT, StorableSchema, settings_with_defaults, text_problem, unstorable_text
from .security import hash_api_key
from .shop_settings import REFINING_PROVIDERS, check_for_shop, merge_patch
from .web.common import check_csrf, signed_in_shop

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_MASK_BYTES = 4 * 1024 * 1024
"""OpenAI's limit for an edit mask."""

MAX_PRODUCT_RESULTS = 50
"""Most products one search answers with: a picker shows a page, never the whole catalog."""


def require_api_key(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Authenticate the shop (sets g.shop): a bearer API key, or else the settings page's signed-in session.

    A bearer header, when present, always decides (and needs no CSRF token: no cookie authenticates it).
    Without one, `session["shop_id"]` is the shop, and a request that changes anything passes the pages'
    CSRF check (web.common.check_csrf: `X-CSRF-Token` equal to the session's token, else 403).
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        header = request.headers.get("Authorization")
        g.shop = _shop_by_key(header) if header is not None else _shop_by_session()
        return view(*args, **kwargs)

    return wrapped


def _shop_by_key(header: str) -> Shop:
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        abort(401, "Send the shop's API key as `Authorization: Bearer <key>`.")
    shop = services().db.session().scalar(select(Shop).where(Shop.api_key_hash == hash_api_key(key.strip())))
    if shop is None or not shop.active:
        abort(401, "The API key is not valid (or the shop is no longer active).")
    return shop


def _shop_by_session() -> Shop:
    had_session = web_session.get("shop_id") is not None
    shop = signed_in_shop()
    if shop is None and not had_session:
        abort(401, "Send the shop's API key as `Authorization: Bearer <key>`, or sign in to the settings page.")
    if shop is None:
        abort(401, "Your session is no longer valid (signed out, expired, or the shop is not active); sign in again.")
    check_csrf()
    return shop


def own_shop(shop_id: int) -> Shop:
    """The authenticated shop, which must be the one in the URL."""
    if shop_id != g.shop.id:
        abort(403, "This API key (or session) belongs to another shop.")
    return g.shop


def owned(model: type, object_id: int) -> Any:
    row = get_for_shop(services().db.session(), model, object_id, g.shop.id)
    if row is None:
        abort(404, f"No {model.__name__.lower()} {object_id} in this shop.")
    return row


def body_errors(exc: ValidationError, what: str = "request body") -> ResponseReturnValue:
    """400 naming each field that failed, in the one error shape (`what`: the body, or the query)."""
    return jsonify(error={"code": 400, "message": f"The {what} is not valid.", "fields": exc.messages}), 400


# --- renders ----------------------------------------------------------------------------------------------


@bp.get("/renders/<int:render_id>")
@require_api_key
def get_render(render_id: int) -> ResponseReturnValue:
    return render_json(owned(Render, render_id), services().config)


@bp.post("/renders/<int:render_id>/push")
@require_api_key
def push_again(render_id: int) -> ResponseReturnValue:
    """Push a render's failed assets again; held ones too, except in review mode unless `approve_held` says so."""
    from jobs.queues import enqueue_push

    svc = services()
    try:
        body = PUSH_BODY.load((request.get_json(silent=True, force=True) or {}) if request.get_data().strip() else {})
    except ValidationError as exc:
        return body_errors(exc)
    review = settings_with_defaults(g.shop.settings)["publish_mode"] == "review"
    with svc.db.transaction():  # owned() reads through this same (thread's) session
        render = owned(Render, render_id)
        try:
            waiting, held = manual.push_now(render, review=review, approve_held=body["approve_held"])
        except manual.ReviewConflict as exc:
            abort(409, str(exc))
    queued = enqueue_push(svc.redis, render_id, timeout_s=svc.config.push_timeout_s) if waiting else False
    return {"render_id": render_id, "assets": len(waiting), "held": held, "queued": queued,
            "status_url": url_for("api.get_render", render_id=render_id, _external=True)}, 202


class PushSchema(StorableSchema):
    """The optional body of POST /renders/<id>/push."""

    class Meta:
        unknown = RAISE

    approve_held = fields.Boolean(load_default=False, metadata={
        "description": "review mode: approve the render's held images and push them too (otherwise they wait)"})


PUSH_BODY = PushSchema()


# --- reference images -------------------------------------------------------------------------------------


def reference_json(row: ReferenceImage) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "width": row.width, "height": row.height,
            "content_type": row.content_type, "created_at": row.created_at.isoformat()}


@bp.get("/shops/<int:shop_id>/reference-images")
@require_api_key
def list_reference_images(shop_id: int) -> ResponseReturnValue:
    shop = own_shop(shop_id)
    rows = services().db.session().scalars(
        select(ReferenceImage).where(ReferenceImage.shop_id == shop.id).order_by(ReferenceImage.id))
    return {"reference_images": [reference_json(row) for row in rows]}


@bp.post("/shops/<int:shop_id>/reference-images")
@require_api_key
def add_reference(shop_id: int) -> ResponseReturnValue:
    """Multipart `file` (and optional `name`), or JSON `{"url": ..., "name": ...}`."""
    shop = own_shop(shop_id)
    svc = services()
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            abort(400, "Send the image as the multipart field `file`.")
        data, name = upload.read(), request.form.get("name") or upload.filename or ""
        if problem := text_problem(name):
            return body_errors(ValidationError({"name": [problem]}))
    elif request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            abort(400, 'Send JSON {"url": "https://..."} or a multipart `file`.')
        if errors := unstorable_text(body):
            return body_errors(ValidationError(errors))
        budget = svc.config.web_fetch_timeout_s  # the whole download, so the web worker is never killed mid-request
        try:
            data = fetch(body["url"], max_bytes=svc.config.max_source_bytes,
                         connect_timeout_s=svc.config.fetch_connect_timeout_s,
                         read_timeout_s=svc.config.fetch_read_timeout_s, total_timeout_s=budget,
                         allow_private=svc.config.allow_private_urls, session=svc.http).data
        except FetchTimeout:
            abort(504, f"The image server did not send the whole image within {budget:g} s; "
                       "upload the file instead, or link a copy on a faster host.")
        except FetchError as exc:
            abort(502 if exc.retryable else 400, f"The image could not be downloaded: {exc}")
        name = str(body.get("name") or "")
    else:
        abort(415, "Send multipart/form-data with `file`, or application/json with `url`.")
    with svc.db.transaction() as session:
        count = session.scalar(
            select(func.count()).select_from(ReferenceImage).where(ReferenceImage.shop_id == shop.id))
        if (count or 0) >= MAX_REFERENCE_IMAGES:
            abort(409, f"A shop keeps at most {MAX_REFERENCE_IMAGES} reference images; delete one first.")
        try:
            row = add_reference_image(session, svc.storage, shop, data, name=name, max_pixels=svc.config.max_pixels)
        except ImageRejected as exc:
            abort(400, str(exc))
    return reference_json(row), 201


@bp.delete("/shops/<int:shop_id>/reference-images/<int:image_id>")
@require_api_key
def delete_reference(shop_id: int, image_id: int) -> ResponseReturnValue:
    own_shop(shop_id)
    svc = services()
    with svc.db.transaction() as session:
        row = get_for_shop(session, ReferenceImage, image_id, g.shop.id)
        if row is None:
            abort(404, f"No reference image {image_id} in this shop.")
        key = row.storage_key
        session.delete(row)
        still_used = session.scalar(select(func.count()).select_from(ReferenceImage).where(
            ReferenceImage.storage_key == key, ReferenceImage.id != image_id))
    if not still_used:
        svc.storage.delete(key)
    return "", 204


# --- usage ------------------------------------------------------------------------------------------------


@bp.get("/shops/<int:shop_id>/usage")
@require_api_key
def usage(shop_id: int) -> ResponseReturnValue:
    """Spend by month, model and quality, newest month first."""
    shop = own_shop(shop_id)
    rows = services().db.session().execute(
        select(UsageRecord.created_at, UsageRecord.model, UsageRecord.quality, UsageRecord.cost_usd,
               UsageRecord.input_text_tokens, UsageRecord.input_image_tokens, UsageRecord.output_tokens)
        .where(UsageRecord.shop_id == shop.id)
    ).all()
    # Grouped here rather than in SQL: month truncation differs between SQLite and PostgreSQL.
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
        key = (created.strftime("%Y-%m"), row.model, row.quality)
        group = groups.setdefault(key, {"month": key[0], "model": key[1], "quality": key[2], "calls": 0,
                                        "cost_usd": 0.0, "input_text_tokens": 0, "input_image_tokens": 0,
                                        "output_tokens": 0})
        group["calls"] += 1
        group["cost_usd"] += row.cost_usd
        group["input_text_tokens"] += row.input_text_tokens
        group["input_image_tokens"] += row.input_image_tokens
        group["output_tokens"] += row.output_tokens
    items = sorted(groups.values(), key=lambda g_: (g_["month"], g_["model"], g_["quality"]), reverse=True)
    for item in items:
        item["cost_usd"] = round(item["cost_usd"], 6)
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    spent = sum(item["cost_usd"] for item in items if item["month"] == this_month)
    budget = settings_with_defaults(shop.settings)["monthly_budget_usd"]
    return {"usage": items, "this_month": {"month": this_month, "spent_usd": round(spent, 6), "budget_usd": budget}}


# --- refinement -------------------------------------------------------------------------------------------


class RefineSchema(StorableSchema):
    class Meta:
        unknown = RAISE

    instruction = fields.String(required=True, validate=validate.Length(min=3, max=1000))
    mask = fields.String(load_default=None,
                         metadata={"description": "base64 PNG with alpha, transparent where to edit"})
    rect = fields.List(fields.Integer(validate=validate.Range(min=0)), load_default=None,
                       validate=validate.Length(equal=4), metadata={"description": "[left, top, right, bottom]"})

    @validates_schema
    def _one_mask(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("mask") and data.get("rect"):
            raise ValidationError("Send a mask or a rect, not both.", "rect")
        rect = data.get("rect")
        if rect and not (rect[0] < rect[2] and rect[1] < rect[3]):
            raise ValidationError("The rect must be [left, top, right, bottom] with left < right and top < bottom.",
                                  "rect")


@bp.post("/assets/<int:asset_id>/refine")
@require_api_key
def refine(asset_id: int) -> ResponseReturnValue:
    """A new version of a scene from an instruction (and an optional mask); answered 202, made by a worker."""
    from jobs.queues import enqueue_render

    asset = owned(Asset, asset_id)
    if asset.kind != AssetKind.SCENE:
        abort(400, "Only scenes can be refined; this asset is a " + asset.kind.value + ".")
    try:
        body = RefineSchema().load(request.get_json(silent=True) or {})
    except ValidationError as exc:
        return body_errors(exc)
    svc = services()
    if refused := _cannot_refine(settings_with_defaults(g.shop.settings)["provider"]):
        return refused
    mask_key = None
    if body["mask"]:
        try:
            mask = base64.b64decode(body["mask"], validate=True)
        except (binascii.Error, ValueError):
            abort(400, "The mask is not valid base64.")
        if len(mask) > MAX_MASK_BYTES or not mask.startswith(b"\x89PNG\r\n\x1a\n"):
            abort(400, "The mask must be a PNG (with alpha, the scene's size) under 4 MB.")
        mask_key = svc.storage.put(mask, ext="png")
    elif body["rect"]:
        left, top, right, bottom = body["rect"]
        if right > asset.width or bottom > asset.height:
            abort(400, f"The rect lies outside the {asset.width}x{asset.height} scene.")
    options = {"refine": {"asset_id": asset.id, "instruction": body["instruction"], "mask_key": mask_key,
                          "rect": body["rect"]}}
    with svc.db.transaction() as session:
        render_id = insert_render(session, asset.shop_id, asset.render.product_id, trigger="refine", options=options)
    queued = enqueue_render(svc.redis, render_id, timeout_s=svc.config.render_timeout_s)
    return {"render_id": render_id, "status_url": url_for("api.get_render", render_id=render_id, _external=True),
            "queued": queued}, 202


def _cannot_refine(provider: str) -> ResponseReturnValue | None:
    """409 with the reason when the shop's scene maker cannot refine, so nothing is queued only to fail."""
    try:
        name = services().provider(provider).name
    except ProviderError:
        message, reason = ("Refining a scene needs OpenAI, which this service has no API key for: ask the "
                           "service's operator to set OPENAI_API_KEY."), "not_configured"
    else:
        if name in REFINING_PROVIDERS:
            return None
        message, reason = ("Refining a scene needs the OpenAI provider: the built-in compositor cannot follow an "
                           "instruction. Choose OpenAI GPT Image as the scene maker in the settings."), "not_supported"
    response = jsonify(error={"code": 409, "message": message, "reason": reason})
    response.status_code = 409
    return response


# --- settings ---------------------------------------------------------------------------------------------


@bp.get("/shops/<int:shop_id>/settings")
@require_api_key
def get_settings(shop_id: int) -> ResponseReturnValue:
    """The shop's settings with every default filled in (the same schema as the settings page)."""
    return settings_with_defaults(own_shop(shop_id).settings)


@bp.put("/shops/<int:shop_id>/settings")
@require_api_key
def put_settings(shop_id: int) -> ResponseReturnValue:
    """Replace the settings: keys left out take their defaults (PATCH changes only the keys it names).
    Nothing is saved when any field is invalid."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "Send the settings as a JSON object.")
    return _save_settings(own_shop(shop_id), lambda _current: body)


@bp.patch("/shops/<int:shop_id>/settings")
@require_api_key
def patch_settings(shop_id: int) -> ResponseReturnValue:
    """Change the keys the body names (a JSON merge patch, RFC 7396: null resets a key to its default) and keep
    every other. Nothing is saved when any field of the result is invalid."""
    patch = request.get_json(silent=True)
    if not isinstance(patch, dict):
        abort(400, "Send a JSON object naming the settings to change (a JSON merge patch, RFC 7396).")
    return _save_settings(own_shop(shop_id), lambda current: merge_patch(current, patch))


def _save_settings(shop: Shop, new: Callable[[dict[str, Any]], Any]) -> ResponseReturnValue:
    """Validate and store `new(current settings)`, reading and writing the row under one lock so that two
    patches of different keys both stick."""
    svc = services()
    with svc.db.transaction() as session:
        row = session.get(Shop, shop.id, with_for_update=True)
        if row is None:
            abort(404, "This shop no longer exists.")
        try:
            settings = SETTINGS_INPUT.load(new(settings_with_defaults(row.settings)))
            check_for_shop(session, shop.id, settings, provider=svc.provider)
        except ValidationError as exc:
            return body_errors(exc)
        row.settings = settings
    return settings


# --- manual regenerate, render history, review ------------------------------------------------------------


@bp.post("/shops/<int:shop_id>/products/<product_id>/regenerate")
@require_api_key
def regenerate(shop_id: int, product_id: str) -> ResponseReturnValue:
    """Render a product again: the shop's defaults, or named scenes, a one-off prompt, chosen references."""
    from jobs.queues import enqueue_render

    shop = own_shop(shop_id)
    svc = services()
    body = request.get_json(silent=True, force=True) if request.get_data().strip() else {}
    per_minute = settings_with_defaults(shop.settings)["regenerate_per_minute"]
    try:
        with svc.db.transaction() as session:
            render = manual.regenerate(
                session, shop, product_id, body, default_provider=svc.config.scene_provider,
                allow=lambda: ratelimit.enforce(svc.redis, f"regenerate:{shop.id}", limit=per_minute))
            render_id = render.id
    except ValidationError as exc:
        return body_errors(exc)
    except manual.ProductNotFound as exc:
        abort(404, str(exc))
    except manual.NothingToRender as exc:
        abort(409, str(exc))
    except ratelimit.LimitReached as exc:
        wait = exc.verdict.retry_after_s
        response = jsonify(error={"code": 429, "message": (
            f"This shop may regenerate at most {per_minute} times a minute; try again in {wait} s "
            "(or raise regenerate_per_minute in the settings)."), "retry_after_s": wait})
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        return response
    queued = enqueue_render(svc.redis, render_id, timeout_s=svc.config.render_timeout_s)
    return {"render_id": render_id, "status_url": url_for("api.get_render", render_id=render_id, _external=True),
            "queued": queued}, 202


class RenderListQuery(Schema):
    """The query of GET /shops/<id>/renders."""

    class Meta:
        unknown = EXCLUDE

    product_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                               metadata={"description": "the shop's product id"})
    status = fields.String(load_default=None, validate=validate.OneOf([status.value for status in RenderStatus]))
    push_status = fields.String(load_default=None, validate=validate.OneOf([status.value for status in PushStatus]),
                                metadata={"description": "only renders with an asset in this state (held: to review)"})
    cursor = fields.String(load_default=None, metadata={"description": "next_cursor of the previous page"})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


RENDER_LIST_QUERY = RenderListQuery()


def encode_cursor(render_id: int) -> str:
    """An opaque page cursor: the last render id shown, which clients must not rely on."""
    return base64.urlsafe_b64encode(f"r1:{render_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The render id behind a cursor; ValidationError for anything this API did not hand out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "r1" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError(
            {"cursor": ["Not a cursor from this API; use next_cursor of the previous page."]}) from None


@bp.get("/shops/<int:shop_id>/renders")
@require_api_key
def list_renders(shop_id: int) -> ResponseReturnValue:
    """The shop's renders newest first, with product, assets and signed image links; keyset-paginated."""
    shop = own_shop(shop_id)
    try:
        query = RENDER_LIST_QUERY.load(request.args)
        before = decode_cursor(query["cursor"]) if query["cursor"] else None
    except ValidationError as exc:
        return body_errors(exc, "query")
    statement = (
        select(Render).where(Render.shop_id == shop.id).order_by(Render.id.desc()).limit(query["limit"] + 1)
        .options(selectinload(Render.assets), selectinload(Render.product).selectinload(Product.images))
    )
    if query["product_id"]:
        statement = statement.join(Product, Render.product_id == Product.id).where(
            Product.external_id == query["product_id"])
    if query["status"]:
        statement = statement.where(Render.status == RenderStatus(query["status"]))
    if query["push_status"]:
        statement = statement.where(Render.assets.any(Asset.push_status == PushStatus(query["push_status"])))
    if before is not None:
        statement = statement.where(Render.id < before)
    rows = services().db.session().scalars(statement).all()
    page = rows[:query["limit"]]
    more = len(rows) > query["limit"]
    return {"renders": [render_json(render, services().config) for render in page],
            "next_cursor": encode_cursor(page[-1].id) if more else None}


@bp.post("/assets/<int:asset_id>/approve")
@require_api_key
def approve_asset(asset_id: int) -> ResponseReturnValue:
    """Review mode: push this asset to the shop (202; the push job sends it)."""
    from jobs.queues import enqueue_push

    svc = services()
    with svc.db.transaction():  # owned() reads through this same (thread's) session
        asset = owned(Asset, asset_id)
        try:
            manual.approve(asset)
        except manual.ReviewConflict as exc:
            abort(409, str(exc))
        render_id = asset.render_id
    queued = enqueue_push(svc.redis, render_id, timeout_s=svc.config.push_timeout_s)
    return {"asset_id": asset_id, "push_status": PushStatus.PENDING.value, "queued": queued,
            "status_url": url_for("api.get_render", render_id=render_id, _external=True)}, 202


@bp.post("/assets/<int:asset_id>/reject")
@require_api_key
def reject_asset(asset_id: int) -> ResponseReturnValue:
    """Never push this asset; one already on the shop is taken off by a job (202), otherwise done at once (200)."""
    from jobs.queues import enqueue_takedown

    svc = services()
    with svc.db.transaction():  # owned() reads through this same (thread's) session
        asset = owned(Asset, asset_id)
        take_down = manual.reject(asset)
        status, render_id = asset.push_status.value, asset.render_id
    queued = enqueue_takedown(svc.redis, asset_id, timeout_s=svc.config.push_timeout_s) if take_down else False
    return {"asset_id": asset_id, "push_status": status, "queued": queued,
            "status_url": url_for("api.get_render", render_id=render_id, _external=True)}, 202 if take_down else 200


class BulkReviewSchema(StorableSchema):
    """The body of a bulk approve or reject: the shop's asset ids."""

    class Meta:
        unknown = RAISE

    asset_ids = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)), required=True,
                            validate=validate.Length(min=1, max=manual.MAX_BULK_ASSETS))


BULK_REVIEW_BODY = BulkReviewSchema()


def _bulk_review(shop_id: int, action: Callable[..., manual.BulkOutcome]) -> ResponseReturnValue:
    from jobs.queues import enqueue_push, enqueue_takedown

    shop = own_shop(shop_id)
    try:
        body = BULK_REVIEW_BODY.load(request.get_json(silent=True) or {})
    except ValidationError as exc:
        return body_errors(exc)
    svc = services()
    with svc.db.transaction() as session:
        outcome = action(session, shop.id, list(dict.fromkeys(body["asset_ids"])))
    for render_id in outcome.push_render_ids:
        enqueue_push(svc.redis, render_id, timeout_s=svc.config.push_timeout_s)
    for asset_id in outcome.takedown_asset_ids:
        enqueue_takedown(svc.redis, asset_id, timeout_s=svc.config.push_timeout_s)
    done = sum(1 for result in outcome.results if "error" not in result)
    return {"assets": outcome.results, "done": done, "failed": len(outcome.results) - done}


@bp.post("/shops/<int:shop_id>/assets/approve")
@require_api_key
def approve_assets(shop_id: int) -> ResponseReturnValue:
    """Review mode: approve many assets at once; one result per id (an error for each that could not be)."""
    return _bulk_review(shop_id, manual.approve_many)


@bp.post("/shops/<int:shop_id>/assets/reject")
@require_api_key
def reject_assets(shop_id: int) -> ResponseReturnValue:
    """Reject many assets at once; those on the shop already are taken off by a job."""
    return _bulk_review(shop_id, manual.reject_many)


class ProductSearchQuery(Schema):
    """The query of GET /shops/<id>/products."""

    class Meta:
        unknown = EXCLUDE

    q = fields.String(load_default="", validate=validate.Length(max=200),
                      metadata={"description": "words of the title, or the start of the shop's product id"})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, MAX_PRODUCT_RESULTS))


PRODUCT_SEARCH_QUERY = ProductSearchQuery()


@bp.get("/shops/<int:shop_id>/products")
@require_api_key
def search_products(shop_id: int) -> ResponseReturnValue:
    """The shop's products matching `q` (title or id), most recently changed first; one capped page."""
    shop = own_shop(shop_id)
    try:
        query = PRODUCT_SEARCH_QUERY.load(request.args)
    except ValidationError as exc:
        return body_errors(exc, "query")
    statement = (select(Product).where(Product.shop_id == shop.id, Product.deleted.is_(False))
                 .order_by(Product.updated_at.desc(), Product.id.desc()).limit(query["limit"] + 1)
                 .options(selectinload(Product.images)))
    text = query["q"].strip()
    if text:
        statement = statement.where(or_(func.lower(Product.title).contains(text.lower(), autoescape=True),
                                        Product.external_id.startswith(text, autoescape=True)))
    rows = services().db.session().scalars(statement).all()
    return {"products": [{"id": row.external_id, "title": row.title,
                          "image": row.images[0].src if row.images else None} for row in rows[:query["limit"]]],
            "more": len(rows) > query["limit"]}


@bp.get("/openapi.json")
def openapi_document() -> ResponseReturnValue:
    """The API described as OpenAPI 3.1; no key needed."""
    from .openapi import api_document

    return jsonify(api_document(request.host_url.rstrip("/") + (bp.url_prefix or "")))


# --- sign-in links ----------------------------------------------------------------------------------------


@bp.post("/shops/<int:shop_id>/login-link")
@require_api_key
def login_link(shop_id: int) -> ResponseReturnValue:
    """A one-time, expiring link that signs the merchant in to the shop's settings and renders pages."""
    from .login_links import make_link

    shop = own_shop(shop_id)
    link = make_link(services().config, shop)
    expires = dt.datetime.fromtimestamp(link.expires_at, dt.UTC)
    return {"url": link.url, "expires_at": expires.isoformat()}
