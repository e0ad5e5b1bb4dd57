"""Concurrent duplicate deliveries through a real threaded HTTP server: one delivery row, one render."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, create_engine, func, insert, select, text
from werkzeug.serving import BaseWSGIServer, make_server

from catalog_service.models import Base, Delivery, Product, Render

pytestmark = pytest.mark.both_databases  # database behaviour: on PostgreSQL too

PAYLOAD = json.loads((Path(__file__).parent / "payloads" / "shopify_product.json").read_text())
DOMAIN = "acme-apparel.myshopify.com"
THREADS = 8


def serve(app: Flask) -> BaseWSGIServer:
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

    threads = [threading.Thread(target=send, args=(i, body, headers))
               for i, (body, headers) in enumerate(bodies_and_headers)]
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


def count(app: Flask, model: type[Base]) -> int:
    with app.app_context():
        return app.extensions["catalog_db"].session().scalar(select(func.count()).select_from(model))


def test_same_event_posted_by_eight_threads_at_once_renders_once(app, app_config) -> None:
    """Eight simultaneous copies of one delivery: all answered 200, one accepted, seven duplicates."""
    from catalog_service.shops import create_shop

    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
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
    """Different deliveries creating the same product at once: all answered 200, one product row, one render."""
    from catalog_service.shops import create_shop

    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        create_shop(session, platform="shopify", domain=DOMAIN)
    server = serve(app)
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/shopify"
        responses = post_all_at_once(url, [signed(app_config["shopify_api_secret"], f"evt-{i}") for i in range(4)])
    finally:
        server.shutdown()
        server.server_close()
    assert [r.status_code for r in responses] == [200] * 4
    # The first to insert the product renders it; the others find it with the same photos.
    assert sorted(r.json()["outcome"] for r in responses) == ["ignored"] * 3 + ["render"]
    assert count(app, Product) == 1 and count(app, Render) == 1


def test_a_copy_being_recorded_makes_intake_wait_then_call_it_a_duplicate(app, app_config, postgres_url) -> None:
    """PostgreSQL: the same delivery is being recorded by another transaction when ours reaches its Delivery
    insert. Ours waits for it on the unique key, and once the other commits it is a duplicate: no product or
    render of its own is left behind."""
    from catalog_service.shops import create_shop

    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop_id = create_shop(session, platform="shopify", domain=DOMAIN)[0].id
    engine = create_engine(postgres_url)
    holder = engine.connect()
    holder.begin()
    holder.execute(insert(Delivery).values(
        shop_id=shop_id, platform="shopify", delivery_key="shopify:evt-held", topic="products/create",
        outcome="ignored", received_at=dt.datetime.now(dt.UTC)))
    server = serve(app)
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/shopify"
        answer: list[requests.Response] = []
        body, headers = signed(app_config["shopify_api_secret"], "evt-held")
        sender = threading.Thread(
            target=lambda: answer.append(requests.post(url, data=body, headers=headers, timeout=30)))
        sender.start()
        waiting_for_lock(engine, timeout_s=10)
        holder.commit()
        sender.join(timeout=30)
    finally:
        holder.close()
        engine.dispose()
        server.shutdown()
        server.server_close()
    assert answer[0].status_code == 200 and answer[0].json()["outcome"] == "duplicate"
    assert count(app, Delivery) == 1 and count(app, Product) == 0 and count(app, Render) == 0


def waiting_for_lock(engine: Engine, *, timeout_s: float) -> None:
    """Return once some backend waits for a lock (intake, on the held row), or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # A fresh transaction each time: pg_stat_activity holds still for the length of one.
        with engine.connect() as connection:
            if connection.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")):
                return
        time.sleep(0.02)
    pytest.fail("intake never waited for the held Delivery row")
