"""What every platform's webhook view shares: body checks, and intake -> commit -> enqueue."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest

from catalog_service import intake
from catalog_service.current import services
from catalog_service.db import Database
from catalog_service.intake import IntakeResult, ShopRef
from catalog_service.schemas import ImageRef, ProductEvent, image_id, unstorable_text
from jobs.queues import enqueue_render

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# Platform ids are 64-bit integers; anything larger is not an id (and would not fit our columns).
MAX_ID = 2**63 - 1


class PlatformImageSchema(Schema):
    """An image as Shopify and WooCommerce send it: a numeric id, a URL, alt text."""

    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(load_default=None, allow_none=True, strict=False)
    src = fields.Url(required=True, schemes={"http", "https"}, validate=validate.Length(max=2048))
    alt = fields.String(load_default="", allow_none=True, validate=validate.Length(max=1000))


class DeletedSchema(Schema):
    """The body of a product delete on both platforms: `{"id": N}`."""

    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))


DELETED = DeletedSchema()


def updated_at_field(description: str = "") -> fields.AwareDateTime:
    """A product's signed last-change time: ISO 8601, UTC when it has no offset, optional.

    Bounded to years intake can move to UTC (year 1 at +01:00 has no UTC), so an odd value is a 400.
    """
    return fields.AwareDateTime(
        load_default=None, allow_none=True, default_timezone=dt.UTC,
        validate=validate.Range(min=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), max=dt.datetime(9000, 1, 1, tzinfo=dt.UTC)),
        metadata={"description": description} if description else {})


def image_refs(images: list[dict[str, Any]] | None) -> tuple[ImageRef, ...]:
    """Loaded platform images as normalised references, in the shop's order."""
    return tuple(
        ImageRef(external_id=image_id(image["id"], i), src=image["src"], alt=image["alt"] or "")
        for i, image in enumerate(images or [])
    )


MAX_JSON_DEPTH = 64
"""Deeper JSON than this is refused: no product payload nests that far, and recursion has a limit."""


def require_content_type(*allowed: str) -> None:
    """415 unless the request says it carries one of `allowed`."""
    if request.mimetype not in allowed:
        abort(415, f"Content-Type must be {' or '.join(allowed)}, not {request.mimetype or 'missing'}.")


def json_body(body: bytes) -> Any:
    """The parsed body, or 400 with a plain reason."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        abort(400, "The body is not valid JSON.")
    if _depth(payload) > MAX_JSON_DEPTH:
        abort(400, f"The JSON nests deeper than {MAX_JSON_DEPTH} levels.")
    # Text the database cannot hold (NUL; a lone surrogate, which is not UTF-8) is the sender's error: refuse
    # it here rather than fail at the database. Both can only arrive as JSON escapes, so most bodies skip the walk.
    if (b"\\u0000" in body or b"\\ud" in body or b"\\uD" in body) and (problems := unstorable_text(payload)):
        abort(400, f"Some text cannot be stored: {json.dumps(problems, sort_keys=True)}")
    return payload


def invalid(exc: ValidationError, what: str) -> BadRequest:
    """A 400 naming every field that failed, as marshmallow reported it."""
    return BadRequest(f"The body does not match the {what} schema: {json.dumps(exc.messages, sort_keys=True)}")


def body_key(body: bytes) -> str:
    """A dedupe key from the body itself, for platforms that send no delivery id."""
    return "body:" + hashlib.sha256(body).hexdigest()


def accept_event(
    ref: ShopRef, event: ProductEvent, *, delivery_key: str, topic: str, not_found: str
) -> ResponseReturnValue:
    """Run product intake (committed before this returns), enqueue, answer the shop at once.

    `not_found` is the 404's message when `ref` names no active shop.
    """
    return run_intake(
        ref, delivery_key,
        lambda db: intake.accept_delivery(db, ref, event, delivery_key=delivery_key, topic=topic),
        not_found=not_found,
    )


def in_transaction(action: Callable[[Session], IntakeResult]) -> Callable[[Database], IntakeResult]:
    """`action` run in one transaction of the database it is given."""
    def run(db: Database) -> IntakeResult:
        with db.transaction() as session:
            return action(session)
    return run


def run_intake(
    shop: object, delivery_key: str, action: Callable[[Database], IntakeResult], *,
    not_found: str = "No active shop matches this delivery.",
) -> ResponseReturnValue:
    """Run `action`, which commits; 503 when the database fails, so the shop delivers again.

    `shop` names the shop in log lines.
    """
    svc = services()
    for attempt in (1, 2):
        try:
            result = action(svc.db)
            break
        except intake.UnknownShop:
            abort(404, not_found)
        except IntegrityError:
            # Intake's inserts skip rows a concurrent delivery already made (ON CONFLICT DO NOTHING), so
            # this is a row it refers to changing under it, such as a shop removed mid-way; a fresh try
            # sees the committed state.
            if attempt == 2:
                log.exception("shop=%s delivery=%s intake conflict", shop, delivery_key)
                abort(503, "The service could not record this delivery; please retry.")
        except SQLAlchemyError:
            log.exception("shop=%s delivery=%s intake failed", shop, delivery_key)
            # Nothing was written, and the shop will deliver again.
            abort(503, "The service could not record this delivery; please retry.")
    queued = None
    if result.render_id is not None:
        queued = enqueue_render(svc.redis, result.render_id, timeout_s=svc.config.render_timeout_s)
    log.info("shop=%s delivery=%s outcome=%s render=%s", shop, delivery_key, result.outcome, result.render_id)
    body: dict[str, Any] = {"outcome": result.outcome, "render_id": result.render_id, "reason": result.reason}
    if queued is not None:
        body["queued"] = queued
    return jsonify(body), 200


def _depth(value: Any, limit: int = MAX_JSON_DEPTH + 1) -> int:
    """How deeply containers nest, counting no further than `limit`."""
    depth, level = 0, [value]
    while level and depth < limit:
        children: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        if not children and not any(isinstance(item, (dict, list)) for item in level):
            break
        depth += 1
        level = children
    return depth
