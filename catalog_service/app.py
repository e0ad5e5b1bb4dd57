"""create_app(): the Flask app factory. Builds the config, wires each resource, registers blueprints."""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Mapping
from typing import Any

import requests
from flask import Flask, current_app, jsonify
from redis import Redis
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from jobs.queues import redis_connection

from . import db, logs, security
from .config import Config
from .http import make_session
from .scenes import provider_for
from .scenes.base import SceneProvider
from .storage import AssetStorage, storage_from_url

@dataclasses.dataclass
class Services:
    """The process-wide resources of one app, built once in create_app()."""

    config: Config
    db: db.Database
    storage: AssetStorage
    redis: Redis
    scene_provider: SceneProvider
    http: requests.Session
    _providers: dict[str, SceneProvider] = dataclasses.field(default_factory=dict)

    def provider(self, name: str = "") -> SceneProvider:
        """A shop's chosen provider ("" = the service default), built once per process."""
        if not name or name == self.scene_provider.name:
            return self.scene_provider
        if name not in self._providers:
            self._providers[name] = provider_for(name, self.config)
        return self._providers[name]

    def close(self) -> None:
        """Close the database pools, Redis and HTTP connections (for code that builds apps and drops them)."""
        self.db.dispose()
        self.redis.close()
        self.http.close()


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    if not isinstance(config, Config):
        config = Config.load(config)
    app = Flask(__name__)
    app.config["CATALOG"] = config
    app.config["SECRET_KEY"] = config.ensure_secret_key()
    # Webhook and API bodies are JSON documents; anything bigger is refused (413) before it is read.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["TESTING"] = config.testing
    # The merchant pages' session: signed cookie, out of scripts' reach, not sent on cross-site posts.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = config.public_url.startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = config.session_ttl_s
    logs.configure(config.log_level, config.log_format)
    security.configure(config.secret_key)

    database = db.init_app(app)
    app.extensions["catalog"] = Services(
        config=config,
        db=database,
        storage=storage_from_url(config.storage_url),
        redis=redis_connection(config.redis_url),
        scene_provider=provider_for(config.scene_provider, config),
        http=make_session(),
    )

    from webhooks import bp as webhooks_bp

    from .api import bp as api_bp
    from .assets import bp as assets_bp
    from .ops import bp as ops_bp
    from .shopify_install import bp as shopify_bp
    from .web import bp as web_bp
    from .web.sessions import CookieSessions

    app.session_interface = CookieSessions()

    app.register_blueprint(webhooks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(assets_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(shopify_bp)
    app.register_blueprint(web_bp)

    @app.errorhandler(HTTPException)
    def _json_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        # One error shape for every machine caller: {"error": {"code", "message"}}.
        response = jsonify(error={"code": exc.code, "message": exc.description})
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError):  # type: ignore[no-untyped-def]
        # The database is down or not migrated: 503 tells a shop to deliver again later.
        logging.getLogger("catalog_service").error("database error: %s", exc.__class__.__name__)
        response = jsonify(error={"code": 503, "message": "The service cannot reach its database; retry later."})
        response.status_code = 503
        return response

    return app


def freeze_for_workers() -> None:
    """Call once the web app is built, before a server forks its workers (gunicorn).

    What is loaded by then (modules, the app, its pools' setup) lives as long as the process. Frozen, the
    cyclic garbage collector stops walking it: each full collection in a worker walked every one of those
    objects and wrote to their pages, which the workers had shared with the arbiter, so the kernel copied
    them. That cost a webhook about 5% of its CPU under load.
    """
    gc.collect()
    gc.freeze()


def services() -> Services:
    """The resources of the app in the current context (a request or a job)."""
    return current_app.extensions["catalog"]
