"""Concurrent duplicate deliveries through a real threaded HTTP server: one delivery row, one render."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from pathlib import Path

import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from catalog_service.models import Delivery, Product, Render

PAYLOAD = json.loads((Path(__file__).parent / "payloads" / "shopify_product.json").read_text())
DOMAIN = "acme-apparel.myshopify.com"
THREADS = 8


def serve(app):  # type: ignore[no-untyped-def]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def post_all_at_once(url: str, bodies_and_headers: list[tuple[bytes, dict[str, str]]]) -> list[requests.Response]:
    barrier = threading.Barrier(len(bodies_and_headers))
    responses: list[requests.Response] = [None] * len(bodies_and_headers)  # type: ignore[list-item]

    def send(index: int, body: bytes, headers: dict[str, str]) -> None:
        barrier.wait(timeout=10)
        responses[index] = requests.post(url, data=body, headers=headers, timeout=30)

    threads = [threading.Thread(target=send, args=(i, body, headers)) for i, (body, headers) in enumerate(bodies_and_headers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def signed(secret: str, event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(PAYLOAD).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "products/create",
        "X-Shopify-Shop-Domain": DOMAIN,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Webhook-Id": event_id + "-wh",
        "X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode(),
    }


def count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return app.extensions["catalog_db"].session().scalar(select(func.count()).select_from(model))


def test_same_event_posted_by_eight_threads_at_once_renders_once(app, app_config) -> None:
    """Eight simultaneous copies of one delivery: all answered 200, one accepted, seven duplicates."""
    from catalog_service.shops import create_shop

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            create_shop(session, platform="shopify", domain=DOMAIN)
    server = serve(app)
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/shopify"
        responses = post_all_at_once(url, [signed(app_config["shopify_api_secret"], "evt-race")] * THREADS)
    finally:
        server.shutdown()
        server.server_close()
    assert [r.status_code for r in responses] == [200] * THREADS
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["duplicate"] * (THREADS - 1) + ["render"]
    assert count(app, Delivery) == 1 and count(app, Render) == 1


def test_distinct_events_for_one_new_product_race_to_one_product_row(app, app_config) -> None:
    """Different deliveries creating the same product at once: one product row, no 500."""
    from catalog_service.shops import create_shop

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            create_shop(session, platform="shopify", domain=DOMAIN)
    server = serve(app)
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/shopify"
        responses = post_all_at_once(url, [signed(app_config["shopify_api_secret"], f"evt-{i}") for i in range(4)])
    finally:
        server.shutdown()
        server.server_close()
    assert all(r.status_code in (200, 503) for r in responses), [r.status_code for r in responses]
    assert any(r.status_code == 200 for r in responses)
    assert count(app, Product) == 1 and count(app, Render) == 1
