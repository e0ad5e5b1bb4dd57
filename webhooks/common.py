"""What every platform's webhook view does after it has verified and parsed: intake, commit, enqueue."""

from __future__ import annotations

import logging

from flask import abort, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from catalog_service import intake
from catalog_service.app import services
from catalog_service.models import Shop
from catalog_service.schemas import ProductEvent
from jobs.queues import enqueue_render

log = logging.getLogger(__name__)


def accept_event(shop: Shop, event: ProductEvent, *, delivery_key: str, topic: str) -> ResponseReturnValue:
    """Run intake in one transaction, enqueue after commit, answer the shop at once."""
    svc = services()
    try:
        with svc.db.transaction() as session:
            shop = session.merge(shop, load=False) if shop not in session else shop
            result = intake.accept(session, shop, event, delivery_key=delivery_key, topic=topic)
    except SQLAlchemyError:
        log.exception("shop=%s delivery=%s intake failed", shop.id, delivery_key)
        # 503: nothing was written, and the shop will deliver again.
        abort(503, "The service could not record this delivery; please retry.")
    queued = None
    if result.render_id is not None:
        queued = enqueue_render(svc.redis, result.render_id, timeout_s=svc.config.render_timeout_s)
    log.info("shop=%s delivery=%s topic=%s outcome=%s render=%s", shop.id, delivery_key, topic,
             result.outcome, result.render_id)
    body = {"outcome": result.outcome, "render_id": result.render_id, "reason": result.reason}
    if queued is not None:
        body["queued"] = queued
    return jsonify(body), 200
