"""Operators' endpoints: /healthz (the process answers), /readyz (its dependencies do), /metrics (Prometheus)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from .current import services
from .models import Delivery, Render, UsageRecord
from .services import Services
from .storage import StorageError

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """200 when the database, Redis and asset storage all answer; 503 naming the ones that do not."""
    svc = services()
    checks: dict[str, str] = {}
    try:
        svc.db.session().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {exc.__class__.__name__}"
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"unreachable: {exc.__class__.__name__}"
    try:
        svc.storage.exists("sha256/00/00/" + "0" * 64 + ".png")
        checks["storage"] = "ok"
    except (StorageError, OSError) as exc:
        checks["storage"] = f"unreachable: {exc.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503


class CatalogCollector(Collector):
    """The service's metrics, read from the database and Redis at each scrape, so every web process reports the same."""

    def __init__(self, svc: Callable[[], Services]) -> None:
        self._services = svc

    def collect(self) -> Iterator[Metric]:
        from jobs.queues import ALL_QUEUES, get_queue

        svc = self._services()
        session = svc.db.session()
        deliveries = CounterMetricFamily("catalog_deliveries_total",
                                         "Webhook deliveries recorded, by platform and outcome.",
                                         labels=["outcome", "platform"])
        by_outcome = (select(Delivery.platform, Delivery.outcome, func.count())
                      .group_by(Delivery.platform, Delivery.outcome))
        for platform, outcome, count in session.execute(by_outcome):
            deliveries.add_metric([outcome, platform.value], count)
        yield deliveries
        renders = GaugeMetricFamily("catalog_renders", "Renders by status.", labels=["status"])
        for status, count in session.execute(select(Render.status, func.count()).group_by(Render.status)):
            renders.add_metric([status.value], count)
        yield renders
        spend = CounterMetricFamily("catalog_openai_spend_usd_total", "Priced provider spend, by model.",
                                    labels=["model"])
        for model, cost in session.execute(
                select(UsageRecord.model, func.sum(UsageRecord.cost_usd)).group_by(UsageRecord.model)):
            spend.add_metric([model], float(cost or 0))
        yield spend
        stages: dict[str, list[int]] = {}
        recent = session.scalars(select(Render.timings).where(Render.finished_at.is_not(None))
                                 .order_by(Render.id.desc()).limit(500))
        for timings in recent:
            for stage, ms in (timings or {}).items():
                stages.setdefault(stage.split(":")[0], []).append(int(ms))
        stage_avg = GaugeMetricFamily("catalog_stage_seconds_avg",
                                      "Mean stage duration over the last 500 finished renders.", labels=["stage"])
        for stage, values in sorted(stages.items()):
            stage_avg.add_metric([stage], sum(values) / len(values) / 1000)
        yield stage_avg
        depth = GaugeMetricFamily("catalog_queue_depth", "Jobs waiting in each RQ queue.", labels=["queue"])
        try:
            counts = [(name, get_queue(name, svc.redis).count) for name in ALL_QUEUES]
        except RedisError:
            counts = []  # Redis down: /readyz says so; the database's figures are still worth a scrape
        for name, count in counts:
            depth.add_metric([name], count)
        yield depth


@bp.record_once
def _register_metrics(state: BlueprintSetupState) -> None:
    # A registry per app, not prometheus_client's global one: tests build many apps in one process.
    registry = CollectorRegistry()
    registry.register(CatalogCollector(lambda: state.app.extensions["catalog"]))
    state.app.extensions["catalog_metrics"] = registry


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus exposition of the app's registry; behind `Authorization: Bearer` when a metrics token is set."""
    token = services().config.metrics_token
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
            response = jsonify(error={"code": 401, "message": "Send the metrics token as "
                                      "`Authorization: Bearer <token>` (CATALOG_METRICS_TOKEN)."})
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    registry = current_app.extensions["catalog_metrics"]
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
