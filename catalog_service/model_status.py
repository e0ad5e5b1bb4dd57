"""The scene models' shutdown dates, kept in the database (ModelLifecycle): saved from what the worker reads at
start (scenes/openai_lifecycle.py), and turned into what the merchant must hear: a warning while a model they use
shuts down within NOTICE_DAYS, a refusal once it has shut down, each saying what to choose instead."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import ModelLifecycle, utcnow

PROVIDER = "openai"
NOTICE_DAYS = 30
"""A model shutting down within this many days is named in a warning on the settings page."""
_SNAPSHOT = re.compile(r"^(?P<alias>.+)-\d{4}-\d{2}-\d{2}$")


@dataclasses.dataclass(frozen=True)
class Notice:
    """What to tell the merchant about the model they use: `warning` (shuts down soon) or `error` (shut down)."""

    level: str
    model: str
    shutdown_date: dt.date | None  # None: known to be shut down (scenes/openai_images.py RETIRED), date not read
    instead: tuple[str, ...]
    message: str


def save_shutdown_dates(session: Session, dates: Mapping[str, dt.date | None], *, provider: str = PROVIDER,
                        now: dt.datetime | None = None) -> int:
    """Record the image models among `dates` (model id -> shutdown date or None) as checked `now`; returns how many.

    Only image models are kept: the list names every model of the account, and only these are ours to warn about.
    """
    checked = now or utcnow()
    saved = 0
    for model, shutdown in dates.items():
        if not _is_image_model(model):
            continue
        row = session.get(ModelLifecycle, (provider, model))
        if row is None:
            row = ModelLifecycle(provider=provider, model=model)
            session.add(row)
        row.shutdown_date, row.checked_at = shutdown, checked
        saved += 1
    session.flush()
    return saved


def shutdown_dates(session: Session, *, provider: str = PROVIDER) -> dict[str, dt.date]:
    """The announced shutdown dates on record, by model."""
    rows = session.execute(select(ModelLifecycle.model, ModelLifecycle.shutdown_date)
                           .where(ModelLifecycle.provider == provider, ModelLifecycle.shutdown_date.is_not(None)))
    return {row.model: row.shutdown_date for row in rows}


def notice_for(session: Session, model: str, today: dt.date, *, provider: str = PROVIDER) -> Notice | None:
    """The warning (shuts down within NOTICE_DAYS) or error (shut down) for `model` on `today`; None if all is well."""
    if not model:
        return None
    from .scenes.openai_images import RETIRED

    dates = shutdown_dates(session, provider=provider)
    shutdown = dates.get(model)
    if shutdown is None and model not in RETIRED:
        return None
    instead = choices_instead_of(model, dates, today)
    choose = f"choose {' or '.join(instead)} instead" if instead else "choose another model"
    if shutdown is None:
        return Notice("error", model, None, instead,
                      f"The OpenAI model {model} has been shut down: {choose} (Settings, Scenes, Model).")
    if shutdown <= today:
        return Notice("error", model, shutdown, instead,
                      f"The OpenAI model {model} was shut down on {shutdown.isoformat()}: {choose} "
                      "(Settings, Scenes, Model).")
    days = (shutdown - today).days
    if days > NOTICE_DAYS:
        return None
    return Notice("warning", model, shutdown, instead,
                  f"The OpenAI model {model} shuts down on {shutdown.isoformat()} (in {days} day"
                  f"{'s' if days != 1 else ''}): {choose} before then (Settings, Scenes, Model).")


def refusal(session: Session, model: str, today: dt.date | None = None, *, provider: str = PROVIDER) -> str | None:
    """Why `model` cannot be used any more, in words for the merchant; None while it can (even if shutting down)."""
    notice = notice_for(session, model, today or utcnow().date(), provider=provider)
    return notice.message if notice is not None and notice.level == "error" else None


def choices_instead_of(model: str, dates: Mapping[str, dt.date], today: dt.date) -> tuple[str, ...]:
    """What to choose instead of `model`: its documented replacement, else its alias (for a dated snapshot), else
    the documented replacements of shut-down models; only offered models not shutting down within NOTICE_DAYS."""
    from .scenes.openai_images import MODELS, RETIRED

    horizon = today + dt.timedelta(days=NOTICE_DAYS)

    def usable(name: str) -> bool:
        shutdown = dates.get(name)
        return name != model and name in MODELS and name not in RETIRED and (shutdown is None or shutdown > horizon)

    first = [RETIRED[model]] if model in RETIRED else []
    if (snapshot := _SNAPSHOT.match(model)) is not None:
        first.append(snapshot["alias"])
    preferred = [name for name in first if usable(name)]
    if preferred:
        return (preferred[0],)
    others = [name for name in dict.fromkeys([*RETIRED.values(), *MODELS]) if usable(name)]
    return tuple(others[:2])


def _is_image_model(model: str) -> bool:
    from .scenes.openai_images import MODELS, RETIRED

    return model in MODELS or model in RETIRED or "image" in model or model.startswith("dall-e")
