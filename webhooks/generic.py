"""POST /webhooks/generic/<shop_id>: any platform, signed with `X-Catalog-Signature: sha256=<hex>`."""

from __future__ import annotations

import json

from flask import abort, request
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest

from catalog_service.app import services
from catalog_service.models import Platform, Shop
from catalog_service.schemas import generic_event
from catalog_service.security import verify_hex_signature

from . import bp
from .common import accept_event

SIGNATURE_HEADER = "X-Catalog-Signature"
DELIVERY_HEADER = "X-Catalog-Delivery-Id"


@bp.post("/generic/<int:shop_id>")
def generic(shop_id: int) -> ResponseReturnValue:
    shop = services().db.session().get(Shop, shop_id)
    if shop is None or shop.platform not in (Platform.GENERIC, Platform.FOLDER) or not shop.webhook_secret:
        abort(404, "No shop with this id accepts generic webhooks.")
    body = request.get_data(cache=True)
    if not verify_hex_signature(shop.webhook_secret, body, request.headers.get(SIGNATURE_HEADER)):
        abort(401, f"{SIGNATURE_HEADER} does not match the body: sign the raw body with the shop's webhook secret.")
    delivery_id = (request.headers.get(DELIVERY_HEADER) or "").strip()
    if not delivery_id or len(delivery_id) > 200:
        abort(400, f"{DELIVERY_HEADER} is required (a unique id per delivery, at most 200 characters).")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        abort(400, "The body is not valid JSON.")
    try:
        event = generic_event(payload)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return accept_event(shop, event, delivery_key=f"generic:{delivery_id}", topic=payload["event"])


def _invalid(exc: ValidationError) -> BadRequest:
    error = BadRequest("The body does not match the generic webhook schema: " + json.dumps(exc.messages))
    return error
