"""POST /webhooks/woocommerce/<shop_id>: product topics, signed with the webhook's secret.

WooCommerce pings a new webhook with a form-encoded `webhook_id=N` and no signature (answer 200),
never retries a failed delivery, and disables a webhook after repeated failures.
"""

from __future__ import annotations

import re
from typing import Any

from flask import abort, request
from flask.typing import ResponseReturnValue
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy.orm import undefer

from catalog_service.current import services
from catalog_service.intake import ShopRef
from catalog_service.models import Platform, Shop
from catalog_service.schemas import ProductEvent
from catalog_service.security import verify_base64_signature

from .common import (
    DELETED,
    MAX_ID,
    PlatformImageSchema,
    accept_event,
    body_key,
    bp,
    image_refs,
    invalid,
    json_body,
    require_content_type,
    updated_at_field,
)

TOPICS = {"product.created": "create", "product.updated": "update", "product.deleted": "delete",
          "product.restored": "update"}
_PING = re.compile(rb"^webhook_id=\d{1,20}$")

class TermSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(load_default="", validate=validate.Length(max=255))


class ProductSchema(Schema):
    """The REST v3 product object; fields we do not use pass."""

    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))
    name = fields.String(load_default="", allow_none=True, validate=validate.Length(max=1000))
    description = fields.String(load_default="", allow_none=True, validate=validate.Length(max=500_000))
    short_description = fields.String(load_default="", allow_none=True, validate=validate.Length(max=100_000))
    categories = fields.List(fields.Nested(TermSchema), load_default=list, validate=validate.Length(max=250))
    tags = fields.List(fields.Nested(TermSchema), load_default=list, validate=validate.Length(max=250))
    images = fields.List(fields.Nested(PlatformImageSchema), load_default=list, validate=validate.Length(max=250))
    # In the signed body, unlike the delivery id header; written in UTC without an offset.
    date_modified_gmt = updated_at_field()


_PRODUCT = ProductSchema()


def parse_product(topic: str, payload: Any) -> ProductEvent:
    """Normalise a product.* payload. Raises ValidationError with per-field messages."""
    action = TOPICS[topic]
    if action == "delete":
        return ProductEvent(action="delete", product_id=str(DELETED.load(payload)["id"]))
    data = _PRODUCT.load(payload)
    categories = [term["name"] for term in data["categories"] if term["name"]]
    return ProductEvent(
        action=action,
        product_id=str(data["id"]),
        title=data["name"] or "",
        description=data["description"] or data["short_description"] or "",
        product_type=categories[0] if categories else "",
        tags=tuple(term["name"] for term in data["tags"] if term["name"]),
        images=image_refs(data["images"]),
        updated_at=data["date_modified_gmt"],
    )


@bp.post("/woocommerce/<int:shop_id>")
def woocommerce(shop_id: int) -> ResponseReturnValue:
    shop = services().db.session().get(Shop, shop_id, options=[undefer(Shop.webhook_secret)])
    if shop is None or not shop.active or shop.platform != Platform.WOOCOMMERCE or not shop.webhook_secret:
        abort(404, "No active WooCommerce shop with this id.")
    body = request.get_data(cache=True)
    signature = request.headers.get("X-WC-Webhook-Signature")
    if signature is None and request.mimetype == "application/x-www-form-urlencoded" and _PING.match(body.strip()):
        return {"outcome": "ping", "render_id": None, "reason": "webhook saved"}, 200
    if not verify_base64_signature(shop.webhook_secret, body, signature):
        abort(401, "X-WC-Webhook-Signature does not match the body: check the webhook's secret.")
    require_content_type("application/json")
    topic = (request.headers.get("X-WC-Webhook-Topic") or "").strip()
    payload = json_body(body)
    if topic not in TOPICS:
        return {"outcome": "ignored", "render_id": None, "reason": f"topic {topic or '(none)'} is not used"}, 200
    try:
        event = parse_product(topic, payload)
    except ValidationError as exc:
        raise invalid(exc, f"WooCommerce {topic}") from None
    delivery_id = (request.headers.get("X-WC-Webhook-Delivery-ID") or "").strip()[:200]
    # WooCommerce always sends a delivery id; the body hash is a fallback for hand-made requests.
    key = f"woocommerce:{delivery_id}" if delivery_id else body_key(body)
    return accept_event(ShopRef(id=shop.id), event, delivery_key=key, topic=topic,
                        not_found="No active WooCommerce shop with this id.")
