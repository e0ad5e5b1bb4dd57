"""POST /webhooks/generic/<shop_id>: any platform, signed the Standard Webhooks way.

`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>` (https://www.standardwebhooks.com),
verified with the standardwebhooks library: the signed timestamp bounds a replay to 5 minutes and the
signed id is the dedupe key. `X-Catalog-Signature: sha256=<hex>` with `X-Catalog-Delivery-Id` still works
for existing senders (deprecated: neither its id nor a time is signed).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, request
from flask.typing import ResponseReturnValue
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates
from sqlalchemy.orm import undefer
from standardwebhooks import WebhookVerificationError

from catalog_service.current import services
from catalog_service.intake import ShopRef
from catalog_service.models import Platform, Shop
from catalog_service.schemas import ProductEvent, product_id
from catalog_service.security import standard_webhook, verify_hex_signature

from .common import accept_event, bp, image_refs, invalid, json_body, require_content_type, updated_at_field

STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
SIGNATURE_HEADER = "X-Catalog-Signature"  # deprecated
DELIVERY_HEADER = "X-Catalog-Delivery-Id"  # deprecated, with SIGNATURE_HEADER
MAX_DELIVERY_ID = 200

log = logging.getLogger(__name__)

ACTIONS = {"product.created": "create", "product.updated": "update", "product.deleted": "delete"}


class ImageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Raw(load_default=None, metadata={"description": "the shop's id for the image"})
    src = fields.Url(required=True, schemes={"http", "https"}, validate=validate.Length(max=2048))
    alt = fields.String(load_default="", allow_none=True, validate=validate.Length(max=1000))


class ProductSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Raw(required=True)
    title = fields.String(load_default="", validate=validate.Length(max=1000))
    description = fields.String(load_default="", validate=validate.Length(max=100_000))
    product_type = fields.String(load_default="", validate=validate.Length(max=255))
    vendor = fields.String(load_default="", validate=validate.Length(max=255))
    tags = fields.List(fields.String(validate=validate.Length(max=255)), load_default=list,
                       validate=validate.Length(max=250))
    images = fields.List(fields.Nested(ImageSchema), load_default=list, validate=validate.Length(max=50))
    updated_at = updated_at_field("when the product last changed (ISO 8601; UTC without an offset): "
                                  "a delivery older than one already received is ignored")

    @validates("id")
    def _check_id(self, value: Any, **_kwargs: Any) -> None:
        try:
            product_id(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class EventSchema(Schema):
    """The body of POST /webhooks/generic/<shop_id>."""

    class Meta:
        unknown = EXCLUDE

    event = fields.String(required=True, validate=validate.OneOf(sorted(ACTIONS)))
    product = fields.Nested(ProductSchema, required=True)


_EVENT = EventSchema()


def parse_event(body: Any) -> ProductEvent:
    """Validate a generic webhook body and normalise it. Raises ValidationError with per-field messages."""
    data = _EVENT.load(body)
    return product_event(data["product"], action=ACTIONS[data["event"]])


def product_event(product: dict[str, Any], *, action: str = "create") -> ProductEvent:
    """A product loaded by ProductSchema, normalised (a webhook's, or one a generic shop sends for a backfill)."""
    return ProductEvent(
        action=action,
        product_id=product_id(product["id"]),
        title=product["title"],
        description=product["description"],
        product_type=product["product_type"],
        vendor=product["vendor"],
        tags=tuple(product["tags"]),
        images=image_refs(product["images"]),
        updated_at=product["updated_at"],
    )


@bp.post("/generic/<int:shop_id>")
def generic(shop_id: int) -> ResponseReturnValue:
    shop = services().db.session().get(Shop, shop_id, options=[undefer(Shop.webhook_secret)])
    if shop is None or not shop.active or shop.platform not in (Platform.GENERIC, Platform.FOLDER) \
            or not shop.webhook_secret:
        abort(404, "No active shop with this id accepts generic webhooks.")
    body = request.get_data(cache=True)
    delivery_id = _verified_delivery_id(shop, body)
    payload = json_body(body)
    try:
        event = parse_event(payload)
    except ValidationError as exc:
        raise invalid(exc, "generic webhook") from None
    return accept_event(ShopRef(id=shop.id), event, delivery_key=f"generic:{delivery_id}", topic=payload["event"],
                        not_found="No active shop with this id accepts generic webhooks.")


def _verified_delivery_id(shop: Shop, body: bytes) -> str:
    """The delivery's id once its signature checks out; 401 (or 400, 415) otherwise."""
    assert shop.webhook_secret is not None
    headers = request.headers
    if SIGNATURE_HEADER in headers and "webhook-signature" not in headers:
        if not verify_hex_signature(shop.webhook_secret, body, headers.get(SIGNATURE_HEADER)):
            abort(401, f"{SIGNATURE_HEADER} does not match the body: sign the raw body with the shop's webhook "
                       "secret (or, better, sign the Standard Webhooks way: webhook-id, webhook-timestamp, "
                       "webhook-signature).")
        require_content_type("application/json")
        delivery_id = (headers.get(DELIVERY_HEADER) or "").strip()
        if not delivery_id or len(delivery_id) > MAX_DELIVERY_ID:
            abort(400, f"{DELIVERY_HEADER} is required (a unique id per delivery, at most {MAX_DELIVERY_ID} "
                       "characters).")
        log.info("shop=%s delivery=%s signed with the deprecated %s", shop.id, delivery_id, SIGNATURE_HEADER)
        return delivery_id
    try:
        standard_webhook(shop.webhook_secret).verify(
            body, {name: headers.get(name, "") for name in STANDARD_HEADERS}, json_parse=False)
    except WebhookVerificationError as exc:
        abort(401, f"webhook-signature does not verify ({exc}): sign `<webhook-id>.<webhook-timestamp>.<raw body>` "
                   "with the shop's webhook secret as a Standard Webhooks secret; webhook-timestamp must be "
                   "within 5 minutes of our clock.")
    require_content_type("application/json")
    delivery_id = headers.get("webhook-id", "").strip()
    if not delivery_id or len(delivery_id) > MAX_DELIVERY_ID:
        abort(400, f"webhook-id must be 1 to {MAX_DELIVERY_ID} characters, unique per message.")
    return delivery_id
