"""When OpenAI's models shut down, as `GET /v1/models` says: read through the openai library, no database here.

`client.models.list()` answers OpenAI's list shape (`{"object": "list", "data": [{"id", "object": "model",
"created", "owned_by", "shutdown_date"?}]}`); `shutdown_date` is optional, `YYYY-MM-DD`, and null or absent while
no shutdown is announced (openai-python `src/openai/types/model.py`, 3.63: `shutdown_date: Optional[str]`; an older
library keeps an unknown field in the object's `model_extra`). catalog_service/model_status.py saves what this
reads; the worker reads it once at start.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import openai

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
"""Longest wait for the list of models: a worker reads it at start and must not hang there."""


class LifecycleError(RuntimeError):
    """The models' shutdown dates could not be read. `retryable`: whether asking again later may work."""

    retryable = False


class LifecycleUnavailable(LifecycleError):
    """OpenAI did not answer in time, could not be reached, or failed (429, 5xx): try again at the next start."""

    retryable = True


class LifecycleRefused(LifecycleError):
    """OpenAI refused the request (the key) or answered something that is not a list of models."""


def make_client(*, timeout_s: float = LIST_TIMEOUT_S) -> openai.OpenAI:
    """A client for the list alone: the library reads OPENAI_API_KEY and OPENAI_BASE_URL itself; one try only,
    since the worker asks again at its next start. LifecycleRefused when no key is set."""
    try:
        return openai.OpenAI(max_retries=0, timeout=timeout_s)
    except openai.OpenAIError as exc:
        raise LifecycleRefused("OpenAI is not configured (set OPENAI_API_KEY) so its models cannot be listed.") from exc


def read_shutdown_dates(client: openai.OpenAI, *, timeout_s: float = LIST_TIMEOUT_S) -> dict[str, dt.date | None]:
    """Each listed model's shutdown date (None: none announced), by model id; LifecycleError when it cannot be read.

    A date that is not `YYYY-MM-DD` is read as none announced, and logged: one bad entry must not hide the others.
    """
    try:
        page = client.models.list(timeout=timeout_s)
        models = list(page.data)
    except openai.APITimeoutError:
        raise LifecycleUnavailable(f"OpenAI did not list its models within {timeout_s:.0f} s.") from None
    except openai.APIConnectionError:
        raise LifecycleUnavailable("Could not connect to OpenAI to list its models.") from None
    except openai.APIStatusError as exc:
        # `from None` and no body: an error body can quote the key (as the 401 answer does).
        if exc.status_code == 429 or exc.status_code >= 500:
            raise LifecycleUnavailable(f"OpenAI failed to list its models (HTTP {exc.status_code}).") from None
        raise LifecycleRefused(f"OpenAI refused to list its models (HTTP {exc.status_code}): check OPENAI_API_KEY."
                               ) from None
    except (openai.OpenAIError, ValueError, TypeError) as exc:
        raise LifecycleRefused(f"OpenAI's list of models could not be read ({type(exc).__name__}).") from None
    dates: dict[str, dt.date | None] = {}
    for model in models:
        model_id = getattr(model, "id", None)
        if not isinstance(model_id, str) or not model_id:
            continue
        dates[model_id] = parse_shutdown_date(model_id, _shutdown_field(model))
    return dates


def parse_shutdown_date(model: str, value: object) -> dt.date | None:
    """A `shutdown_date` value as a date; None when absent, null or not a YYYY-MM-DD date (logged)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    log.warning("openai model=%s shutdown_date=%r is not a YYYY-MM-DD date; read as none announced", model, value)
    return None


def _shutdown_field(model: Any) -> object:
    """The documented field, or the same key among the extra fields of a library that does not declare it."""
    value = getattr(model, "shutdown_date", None)
    if value is None:
        extra = getattr(model, "model_extra", None) or {}
        value = extra.get("shutdown_date") if isinstance(extra, dict) else None
    return value
