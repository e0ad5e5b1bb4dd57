"""Rules about a shop's settings that need the database or the service: what the schema alone cannot check, a
merge patch of them, and the month's spend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .model_status import refusal
from .models import ReferenceImage, UsageRecord, utcnow
from .scenes import builtin_presets
from .scenes.base import ProviderError, SceneProvider

REFINING_PROVIDERS = frozenset({"openai"})
"""Providers that can edit a made scene from an instruction (the compositor draws, it cannot follow words)."""


def styles_drawn_by(provider: str) -> tuple[str, ...] | None:
    """The preset styles a provider can draw; None when it draws any (GPT Image works from the prompt text)."""
    if provider == "compositor":
        from .scenes.compositor import STYLES

        return STYLES
    return None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def spent_this_month(session: Session, shop_id: int, now: dt.datetime | None = None) -> float:
    """What the shop's paid scene calls cost since the first of this month (UTC): the budget's measure."""
    month_start = (now or utcnow()).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent = session.scalar(select(func.coalesce(func.sum(UsageRecord.cost_usd), 0.0))
                           .where(UsageRecord.shop_id == shop_id, UsageRecord.created_at >= month_start))
    return float(spent or 0.0)


def check_for_shop(session: Session, shop_id: int, settings: dict[str, Any], *,
                   provider: Callable[[str], SceneProvider]) -> None:
    """What the schema cannot know, refused with the field named: preset names unique, reference images this
    shop's own, a provider this service can build, preset styles and scenes that provider can make, and a model
    that has not been shut down (OpenAI's dates, as the worker last read them: model_status.py).

    `provider` builds a provider by name ("" = the service default) or raises ProviderError (Services.provider).
    """
    errors: dict[str, Any] = {}
    try:
        maker: SceneProvider | None = provider(settings["provider"])
    except ProviderError:
        maker = None
        errors["provider"] = ["OpenAI is not available on this service (it has no OpenAI API key): choose the "
                              "built-in compositor, or ask the service's operator to set OPENAI_API_KEY."]
    drawn = styles_drawn_by(maker.name) if maker is not None else None
    presets: dict[int, Any] = {}
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
        if drawn is not None and preset["style"] not in drawn:
            entry["style"] = [f"The built-in compositor cannot draw the style {preset['style']!r}; choose "
                              f"{', '.join(drawn)}, or OpenAI GPT Image as the scene maker."]
        if entry:
            presets[index] = entry
    if presets:
        errors["presets"] = presets
    if maker is not None:
        available = set(builtin_presets(maker.name)) | seen
        unknown = [name for name in settings["scene_presets"] if name not in available]
        if unknown:
            errors["scene_presets"] = [f"The scene maker has no scene {name!r}: choose one it offers, or add a "
                                       "preset with that name." for name in unknown]
    if settings.get("model") and (shut_down := refusal(session, settings["model"])):
        errors["model"] = [shut_down]
    if errors:
        raise ValidationError(errors)
