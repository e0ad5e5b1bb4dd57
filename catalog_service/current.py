"""The Services of the app serving this request: what views and blueprints take their resources from."""

from __future__ import annotations

from flask import current_app

from .services import Services


def services() -> Services:
    """The resources of the app in the current request (built once by create_app())."""
    svc: Services = current_app.extensions["catalog"]
    return svc
