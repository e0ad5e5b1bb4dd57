"""Operators' endpoints: /healthz (the process answers), /readyz (its dependencies do), /metrics (Prometheus)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from .current import services
from .models import Delivery, Render, UsageRecord
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


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus text format, read from the database and Redis, so every web process reports the same."""
    from jobs.queues import ALL_QUEUES, get_queue

    svc = services()
    session = svc.db.session()
    lines: list[str] = []

    def family(name: str, kind: str, helptext: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {helptext}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            rendered = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
            lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")

    deliveries = session.execute(
        select(Delivery.platform, Delivery.outcome, func.count()).group_by(Delivery.platform, Delivery.outcome)).all()
    family("catalog_deliveries_total", "counter", "Webhook deliveries recorded, by platform and outcome.",
           [({"platform": p.value, "outcome": o}, n) for p, o, n in deliveries])
    renders = session.execute(select(Render.status, func.count()).group_by(Render.status)).all()
    family("catalog_renders", "gauge", "Renders by status.", [({"status": s.value}, n) for s, n in renders])
    spend = session.execute(
        select(UsageRecord.model, func.sum(UsageRecord.cost_usd)).group_by(UsageRecord.model)).all()
    family("catalog_openai_spend_usd_total", "counter", "Priced provider spend, by model.",
           [({"model": m}, round(float(c or 0), 6)) for m, c in spend])
    stages: dict[str, list[int]] = {}
    recent = session.scalars(select(Render.timings).where(Render.finished_at.is_not(None))
                             .order_by(Render.id.desc()).limit(500))
    for timings in recent:
        for stage, ms in (timings or {}).items():
            stages.setdefault(stage.split(":")[0], []).append(int(ms))
    family("catalog_stage_seconds_avg", "gauge", "Mean stage duration over the last 500 finished renders.",
           [({"stage": stage}, round(sum(v) / len(v) / 1000, 4)) for stage, v in sorted(stages.items())])
    try:
        depths = [({"queue": name}, float(get_queue(name, svc.redis).count)) for name in ALL_QUEUES]
    except RedisError:
        depths = []
    family("catalog_queue_depth", "gauge", "Jobs waiting in each RQ queue.", depths)
    return Response("\n".join(lines) + "\n", mimetype="text/plain", headers={"Content-Type": "text/plain; version=0.0.4"})


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
