"""create_app(): the Flask app factory. Builds the config, wires each resource, registers blueprints."""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map

from webhooks import bp as webhooks_bp

from . import api_backfills  # noqa: F401 - adds the backfill routes to the API blueprint
from . import services as services_module
from .api import bp as api_bp
from .assets import bp as assets_bp
from .config import Config
from .ops import bp as ops_bp
from .services import Services
from .shopify_install import bp as shopify_bp
from .web import bp as web_bp
from .web.sessions import CookieSessions

MAX_DATABASE_ID = 2**31 - 1
"""The largest id every supported database holds: our primary keys are INTEGER, 32 bits on PostgreSQL
(64 on SQLite). Every `<int:...>` in our routes is one of those keys."""


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` in our routes: an id above what the database holds matches no route (404) instead of
    overflowing the query (500 on SQLite past 2^63, 503 on PostgreSQL past 2^31)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DATABASE_ID)
        super().__init__(url_map, *args, **kwargs)


def init_services(app: Flask, svc: Services) -> None:
    """Attach the process's Services to the app; each request's database session is removed at teardown."""
    app.extensions["catalog"] = svc
    app.extensions["catalog_db"] = svc.db

    @app.teardown_appcontext
    def _remove_session(_exc: BaseException | None) -> None:
        svc.db.remove()


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    if not isinstance(config, Config):
        config = Config.load(config)
    app = Flask(__name__)
    # Before any blueprint adds its rules, which bind their converters when added.
    app.url_map.converters["int"] = DatabaseIdConverter
    app.config["CATALOG"] = config
    app.config["SECRET_KEY"] = config.ensure_secret_key()
    # Session cookies signed with a rotated-out key stay valid, like links and stored secrets.
    app.config["SECRET_KEY_FALLBACKS"] = config.fallback_keys()
    # Webhook and API bodies are JSON documents; anything bigger is refused (413) before it is read.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["TESTING"] = config.testing
    # The merchant pages' session: signed cookie, out of scripts' reach, not sent on cross-site posts.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = config.public_url.startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = config.session_ttl_s
    init_services(app, services_module.build(config))

    app.session_interface = CookieSessions()

    app.before_request(_streamed_body_under_the_cap)
    app.after_request(_security_headers)

    app.register_blueprint(webhooks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(assets_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(shopify_bp)
    app.register_blueprint(web_bp)

    @app.errorhandler(HTTPException)
    def _json_error(exc: HTTPException) -> ResponseReturnValue:
        # One error shape for every machine caller: {"error": {"code", "message"}}.
        response = jsonify(error={"code": exc.code, "message": exc.description})
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError) -> ResponseReturnValue:
        # The database is down or not migrated: 503 tells a shop to deliver again later.
        logging.getLogger("catalog_service").error("database error: %s", exc.__class__.__name__)
        response = jsonify(error={"code": 503, "message": "The service cannot reach its database; retry later."})
        response.status_code = 503
        return response

    return app


def _streamed_body_under_the_cap() -> None:
    """413 for a chunked body at or past MAX_CONTENT_LENGTH, as for one whose Content-Length says so.

    A chunked body has no length to check up front, and Werkzeug's capped stream, read whole, stops quietly
    at the cap: a webhook was verified against a truncated body and answered 401. Read here, whatever
    reaches the cap is refused (a body of exactly the cap too: what follows cannot be read to tell).
    The pages are left out: a browser sends a length, and their upload form raises its own cap later.
    """
    limit = request.max_content_length
    if limit is None or request.blueprint == "web" or \
            "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    if len(request.get_data(cache=True)) >= limit:
        abort(413, f"The body is larger than the {limit} bytes this service accepts.")


def _security_headers(response: Response) -> Response:
    """What every answer carries; the pages add their own policy (web/common.py) before this runs."""
    config: Config = current_app.config["CATALOG"]
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "application/json":
        # API answers hold shop data and signed links: never kept by a browser or a shared cache.
        response.headers.setdefault("Cache-Control", "no-store")
    if config.public_url.startswith("https://"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def freeze_for_workers() -> None:
    """Call once the web app is built, before a server forks its workers (gunicorn).

    What is loaded by then (modules, the app, its pools' setup) lives as long as the process. Frozen, the
    cyclic garbage collector stops walking it: each full collection in a worker walked every one of those
    objects and wrote to their pages, which the workers had shared with the arbiter, so the kernel copied
    them, which cost every webhook CPU under load.
    """
    gc.collect()
    gc.freeze()

