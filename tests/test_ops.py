"""Operators' endpoints: liveness, readiness with the failing dependency named, Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from catalog_service.app import create_app
from catalog_service.services import redis_connection


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
    response = client.get("/metrics")
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = response.get_data(as_text=True)
    assert '# TYPE catalog_deliveries_total counter' in text
    assert 'catalog_deliveries_total{outcome="render",platform="generic"} 1.0' in text
    assert 'catalog_renders{status="queued"} 1.0' in text
    assert 'catalog_queue_depth{queue="renders"} 1.0' in text


def test_metrics_parse_as_prometheus_text_and_each_app_has_its_own_registry(app, app_config, client, webhooks) -> None:
    """The exposition parses; a second app in the same process registers its metrics without a clash."""
    from prometheus_client.parser import text_string_to_metric_families

    webhooks.send("product.created", {"id": 2, "title": "Cup", "images": []}, delivery_id="b")
    second = create_app(app_config)
    try:
        for scraped in (client, second.test_client()):
            families = {family.name: family for family in
                        text_string_to_metric_families(scraped.get("/metrics").get_data(as_text=True))}
            assert {"catalog_deliveries", "catalog_renders", "catalog_queue_depth"} <= set(families)
            assert sum(sample.value for sample in families["catalog_deliveries"].samples) == 1
        assert second.extensions["catalog_metrics"] is not app.extensions["catalog_metrics"]
    finally:
        second.extensions["catalog"].close()


def test_metrics_still_answer_when_redis_is_down(app, client, webhooks) -> None:
    """Without Redis the database's figures are scraped and the queue depth is left out, not a 500."""
    webhooks.send("product.created", {"id": 3, "title": "Pot", "images": []}, delivery_id="c")
    app.extensions["catalog"].redis = redis_connection("redis://127.0.0.1:1/0")
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "catalog_deliveries_total{" in text
    assert "catalog_queue_depth{" not in text


def test_metrics_want_the_token_when_one_is_set(app_config, redis) -> None:  # type: ignore[no-untyped-def]
    """With CATALOG_METRICS_TOKEN set: no or a wrong bearer is 401; the token gets the exposition."""
    app = create_app({**app_config, "metrics_token": "scrape-me"})
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "CATALOG_METRICS_TOKEN" in wrong.get_json()["error"]["message"]
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert right.status_code == 200 and b"catalog_queue_depth" in right.data
    finally:
        app.extensions["catalog"].close()
