"""Structured logs: one JSON object a line, with the render and shop a job works on in every line."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

# Read-only: every change sets a new mapping, so contexts copied into threads never share one.
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "catalog_log_context", default=MappingProxyType({}))


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every log line inside carries these fields (e.g. render=42, shop=7), in any thread's own context."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context (inside a log_context, which restores it when it ends)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            **_context.get(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _ContextText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _context.get().items())
        line = super().format(record)
        return f"{line} {fields}" if fields else line


class _CatalogHandler(logging.StreamHandler):
    """Ours, so configuring again replaces it and leaves other handlers (pytest's) alone."""


def configure(level: str, fmt: str) -> None:
    """Configure the root logger once per process: `json` for services, `text` for people."""
    handler = _CatalogHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         _ContextText("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _CatalogHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
