"""POST /webhooks/shopify: product, uninstall and privacy topics, signed with the app's client secret.

Shopify sends the REST-shaped resource in every API version (`tags` a comma-and-space string,
`images[]` with id/src/alt, `media[]` since 2024-07) and expects an answer within 5 seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, request
from flask.typing import ResponseReturnValue
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy.orm import Session

from catalog_service import intake
from catalog_service.current import services
from catalog_service.intake import IntakeResult, ShopRef
from catalog_service.models import Platform, Shop
from catalog_service.schemas import ProductEvent
from catalog_service.security import verify_base64_signature

from .common import (
    DELETED,
    MAX_ID,
    PlatformImageSchema,
    accept_event,
    bp,
    image_refs,
    in_transaction,
    invalid,
    json_body,
    require_content_type,
    run_intake,
    updated_at_field,
)

PRODUCT_TOPICS = {"products/create": "create", "products/update": "update", "products/delete": "delete"}
PRIVACY_TOPICS = {"customers/data_request", "customers/redact", "shop/redact"}
UNINSTALLED = "app/uninstalled"

log = logging.getLogger(__name__)


class ProductSchema(Schema):
    """The REST product object as webhooks carry it; fields we do not use (variants, media, ...) pass."""

    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))
    title = fields.String(load_default="", allow_none=True, validate=validate.Length(max=1000))
    body_html = fields.String(load_default="", allow_none=True, validate=validate.Length(max=500_000))
    vendor = fields.String(load_default="", allow_none=True, validate=validate.Length(max=255))
    product_type = fields.String(load_default="", allow_none=True, validate=validate.Length(max=255))
    tags = fields.String(load_default="", allow_none=True, validate=validate.Length(max=100_000))
    images = fields.List(fields.Nested(PlatformImageSchema), load_default=list, allow_none=True,
                         validate=validate.Length(max=250))
    # Signed, unlike the delivery id headers: it tells a replayed old delivery from a new one.
    updated_at = updated_at_field()


_PRODUCT = ProductSchema()


def parse_product(topic: str, payload: Any) -> ProductEvent:
    """Normalise a products/* payload. Raises ValidationError with per-field messages."""
    action = PRODUCT_TOPICS[topic]
    if action == "delete":
        return ProductEvent(action="delete", product_id=str(DELETED.load(payload)["id"]))
    data = _PRODUCT.load(payload)
    tags = tuple(tag.strip() for tag in (data["tags"] or "").split(",") if tag.strip())
    return ProductEvent(
        action=action,
        product_id=str(data["id"]),
        title=data["title"] or "",
        description=data["body_html"] or "",
        product_type=data["product_type"] or "",
        vendor=data["vendor"] or "",
        tags=tags[:250],
        images=image_refs(data["images"]),
        updated_at=data["updated_at"],
    )


def named_domain(topic: str, payload: Any) -> str | None:
    """The shop a privacy or uninstall body names, lowercased; None when it names none.

    The privacy topics carry `shop_domain`. app/uninstalled carries the shop object, whose `domain` is the
    storefront's primary domain (often the merchant's own) and `myshopify_domain` the one the header holds.
    """
    if not isinstance(payload, dict):
        return None
    if topic == UNINSTALLED:
        named = payload.get("myshopify_domain") or payload.get("domain")
    else:
        named = payload.get("shop_domain")
    return named.strip().lower() if isinstance(named, str) and named.strip() else None


@bp.post("/shopify")
def shopify() -> ResponseReturnValue:
    svc = services()
    body = request.get_data(cache=True)
    secret = svc.config.shopify_api_secret
    if not secret:
        abort(401, "Shopify webhooks cannot be verified: CATALOG_SHOPIFY_API_SECRET is not set on this service.")
    if not verify_base64_signature(secret, body, request.headers.get("X-Shopify-Hmac-Sha256")):
        abort(401, "X-Shopify-Hmac-Sha256 does not match the body.")
    require_content_type("application/json")
    topic = (request.headers.get("X-Shopify-Topic") or "").strip()
    domain = (request.headers.get("X-Shopify-Shop-Domain") or "").strip().lower()
    # Several subscriptions to one topic share an event id; a retry of one delivery keeps its webhook id.
    headers = request.headers
    delivery_id = (headers.get("X-Shopify-Event-Id") or headers.get("X-Shopify-Webhook-Id") or "").strip()
    if not topic or not domain:
        abort(400, "X-Shopify-Topic and X-Shopify-Shop-Domain are required.")
    if not delivery_id or len(delivery_id) > 200:
        abort(400, "X-Shopify-Event-Id or X-Shopify-Webhook-Id is required.")
    payload = json_body(body)
    delivery_key = f"shopify:{delivery_id}"

    if topic in PRODUCT_TOPICS:
        try:
            event = parse_product(topic, payload)
        except ValidationError as exc:
            raise invalid(exc, f"Shopify {topic}") from None
        # The shop is looked up by intake, in the same statement that records the delivery (PostgreSQL).
        return accept_event(ShopRef(platform=Platform.SHOPIFY, domain=domain), event, delivery_key=delivery_key,
                            topic=topic, not_found=f"No active Shopify shop {domain} is installed.")

    if topic in PRIVACY_TOPICS or topic == UNINSTALLED:
        # The header is not signed; the body is. A signed body for one shop sent with another shop's
        # header must not act on either.
        named = named_domain(topic, payload)
        if named is None:
            abort(400, f"The {topic} body does not name its shop ("
                       f"{'myshopify_domain' if topic == UNINSTALLED else 'shop_domain'}).")
        if named != domain:
            log.warning("shopify %s for %s arrived with X-Shopify-Shop-Domain %s: ignored", topic, named, domain)
            # 200, not 4xx: Shopify never sends this itself, and a refusal would only be retried for hours.
            return {"outcome": "ignored", "render_id": None,
                    "reason": "the signed body names another shop than X-Shopify-Shop-Domain"}, 200
    shop = intake.shop_by_domain(svc.db.session(), Platform.SHOPIFY, domain)
    if topic in PRIVACY_TOPICS or topic == UNINSTALLED:
        if shop is None:
            # Authentic (the app's HMAC) and about a shop we hold nothing for: done.
            return {"outcome": "ignored", "render_id": None, "reason": "no data is held for this shop"}, 200
        shop_id = shop.id
        if topic == "shop/redact":
            return run_intake(shop_id, delivery_key, in_transaction(
                lambda session: _redact(session, _shop(session, shop_id))))
        return run_intake(shop_id, delivery_key, in_transaction(lambda session: intake.accept_shop_event(
            session, _shop(session, shop_id), delivery_key=delivery_key, topic=topic)))
    if shop is None or not shop.active:
        abort(404, f"No active Shopify shop {domain} is installed.")
    return {"outcome": "ignored", "render_id": None, "reason": f"topic {topic} is not used"}, 200


def _shop(session: Session, shop_id: int) -> Shop:
    shop = session.get(Shop, shop_id)
    if shop is None:  # redacted by a concurrent delivery
        raise intake.UnknownShop(f"shop {shop_id} is gone")
    return shop


def _redact(session: Session, shop: Shop) -> IntakeResult:
    removed = intake.redact_shop(session, services().storage, shop)
    return IntakeResult("redacted", reason=f"the shop's data and {removed} stored file(s) were deleted")
