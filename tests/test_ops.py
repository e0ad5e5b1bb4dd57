"""Operators' endpoints: liveness, readiness with the failing dependency named, Prometheus metrics."""

from __future__ import annotations

from jobs.queues import redis_connection


def test_healthz_and_readyz_when_everything_answers(client) -> None:
    """The process is up, and so are the database, Redis and storage."""
    assert client.get("/healthz").get_json() == {"status": "ok"}
    body = client.get("/readyz").get_json()
    assert body == {"status": "ready", "checks": {"database": "ok", "redis": "ok", "storage": "ok"}}


def test_readyz_names_redis_when_it_is_down(app, client) -> None:
    """Redis unreachable: 503 and which check failed, the others still ok."""
    app.extensions["catalog"].redis = redis_connection("redis://127.0.0.1:1/0")
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok" and checks["redis"].startswith("unreachable")


def test_metrics_count_deliveries_renders_and_queue_depth(client, webhooks) -> None:
    """After one accepted and one duplicate delivery the counters and the queue depth say so."""
    product = {"id": 1, "title": "Mug", "images": [{"id": 1, "src": "https://cdn.example.com/m.jpg"}]}
    webhooks.send("product.created", product, delivery_id="a")
    webhooks.send("product.created", product, delivery_id="a")
    text = client.get("/metrics").get_data(as_text=True)
    assert '# TYPE catalog_deliveries_total counter' in text
    assert 'catalog_deliveries_total{outcome="render",platform="generic"} 1' in text
    assert 'catalog_renders{status="queued"} 1' in text
    assert 'catalog_queue_depth{queue="renders"} 1.0' in text
