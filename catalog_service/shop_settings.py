"""Rules about a shop's settings that need the database: what the schema alone cannot check, and the month's spend."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import ReferenceImage, UsageRecord, utcnow


def spent_this_month(session: Session, shop_id: int, now: dt.datetime | None = None) -> float:
    """What the shop's paid scene calls cost since the first of this month (UTC): the budget's measure."""
    month_start = (now or utcnow()).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent = session.scalar(select(func.coalesce(func.sum(UsageRecord.cost_usd), 0.0))
                           .where(UsageRecord.shop_id == shop_id, UsageRecord.created_at >= month_start))
    return float(spent or 0.0)


def check_for_shop(session: Session, shop_id: int, settings: dict[str, Any]) -> None:
    """What the schema cannot know: preset names unique, reference images this shop's own."""
    errors: dict[int, Any] = {}
    known = set(session.scalars(select(ReferenceImage.id).where(ReferenceImage.shop_id == shop_id)))
    seen: set[str] = set()
    for index, preset in enumerate(settings["presets"]):
        entry: dict[str, list[str]] = {}
        if preset["name"] in seen:
            entry["name"] = ["Another preset already has this name."]
        seen.add(preset["name"])
        missing = [ref for ref in preset["reference_image_ids"] if ref not in known]
        if missing:
            entry["reference_image_ids"] = [f"Reference image {ref} is not one of this shop's." for ref in missing]
        if entry:
            errors[index] = entry
    if errors:
        raise ValidationError({"presets": errors})
