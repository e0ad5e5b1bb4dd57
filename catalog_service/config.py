"""Every setting of the service, read from CATALOG_* environment variables in one place.

Nothing else in the tree reads the environment (the openai library reads OPENAI_API_KEY and
OPENAI_BASE_URL itself). A test builds a Config from a mapping instead of the process environment.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def parse_bool(value: str) -> bool:
    """Strict boolean: an unknown word is an error, not False."""
    word = value.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {value!r} (use true/false)")


def parse_int(value: str) -> int:
    try:
        return int(value.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"not a whole number: {value!r}") from None


def parse_float(value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ConfigError(f"not a number: {value!r}") from None


SCENE_PROVIDERS = ("compositor", "openai")

# name -> (environment variable, parser, meaning). Defaults live on the dataclass fields.
_ENV: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "var_dir": ("CATALOG_VAR_DIR", str, "directory for the default database, assets, models and secret"),
    "database_url": ("CATALOG_DATABASE_URL", str, "any SQLAlchemy URL; PostgreSQL in production"),
    "redis_url": ("CATALOG_REDIS_URL", str, "Redis that carries RQ's queues"),
    "storage_url": ("CATALOG_STORAGE_URL", str, "file://DIR (default) or s3://bucket/prefix"),
    "scene_provider": ("CATALOG_SCENE_PROVIDER", str, "compositor or openai"),
    "cutout_model": ("CATALOG_CUTOUT_MODEL", str, "any rembg model name"),
    "model_dir": ("CATALOG_MODEL_DIR", str, "where rembg models live (exported to rembg as U2NET_HOME)"),
    "secret_key": ("CATALOG_SECRET_KEY", str, "sessions, login links, token encryption"),
    "secret_key_fallbacks": ("CATALOG_SECRET_KEY_FALLBACKS", str,
                             "earlier secret keys, comma-separated: still read, never written (key rotation)"),
    "public_url": ("CATALOG_PUBLIC_URL", str,
                   "base URL for links in pushed assets and the UI (default: localhost at the serve port)"),
    "allow_private_urls": ("CATALOG_ALLOW_PRIVATE_URLS", parse_bool, "allow fetching from private addresses"),
    "max_pixels": ("CATALOG_MAX_PIXELS", parse_int, "largest source image accepted, in pixels"),
    "max_source_bytes": ("CATALOG_MAX_SOURCE_BYTES", parse_int, "largest source download, in bytes"),
    "fetch_connect_timeout_s": ("CATALOG_FETCH_CONNECT_TIMEOUT_S", parse_float, "connect timeout for fetches"),
    "fetch_read_timeout_s": ("CATALOG_FETCH_READ_TIMEOUT_S", parse_float, "read timeout for fetches"),
    "web_fetch_timeout_s": ("CATALOG_WEB_FETCH_TIMEOUT_S", parse_float,
                            "longest a web request spends downloading a reference image URL, in seconds (1-20)"),
    "cutout_max_side": ("CATALOG_CUTOUT_MAX_SIDE", parse_int, "longest side of a cutout, in pixels"),
    "render_timeout_s": ("CATALOG_RENDER_TIMEOUT_S", parse_int, "RQ timeout of one render job"),
    "push_timeout_s": ("CATALOG_PUSH_TIMEOUT_S", parse_int, "RQ timeout of one push job"),
    "worker_max_jobs": ("CATALOG_WORKER_MAX_JOBS", parse_int,
                        "a worker replaces itself with a fresh process after this many jobs (0: never)"),
    "worker_max_rss_mb": ("CATALOG_WORKER_MAX_RSS_MB", parse_int,
                          "a worker still resident above this many MB after a job replaces itself (0: never)"),
    "folder_store_dir": ("CATALOG_FOLDER_STORE_DIR", str, "where the folder store writes shop files"),
    "log_level": ("CATALOG_LOG_LEVEL", str, "DEBUG, INFO, WARNING or ERROR"),
    "log_format": ("CATALOG_LOG_FORMAT", str, "json (one object a line) or text"),
    "max_body_bytes": ("CATALOG_MAX_BODY_BYTES", parse_int, "largest webhook or API body accepted, in bytes"),
    "shopify_api_key": ("CATALOG_SHOPIFY_API_KEY", str, "the Shopify app's client id"),
    "shopify_api_secret": ("CATALOG_SHOPIFY_API_SECRET", str, "the Shopify app's client secret (signs webhooks)"),
    "shopify_api_version": ("CATALOG_SHOPIFY_API_VERSION", str, "the Shopify Admin API version we call"),
    "shopify_scopes": ("CATALOG_SHOPIFY_SCOPES", str, "the access scopes the install asks for"),
    "shopify_admin_url": ("CATALOG_SHOPIFY_ADMIN_URL", str, "one admin address for every shop (tests, staging)"),
    "openai_model": ("CATALOG_OPENAI_MODEL", str, "default GPT Image model for shops that name none"),
    "openai_prices": ("CATALOG_OPENAI_PRICES", str, "JSON price overrides, USD per 1M tokens per model"),
    "openai_timeout_s": ("CATALOG_OPENAI_TIMEOUT_S", parse_float, "timeout of one OpenAI call"),
    "openai_max_retries": ("CATALOG_OPENAI_MAX_RETRIES", parse_int, "retries of a 429/5xx/timeout, with backoff"),
    "openai_batch": ("CATALOG_OPENAI_BATCH", parse_bool,
                     "backfill scenes on OpenAI go through the Batch API, at half price, within 24 h (true/false)"),
    "scene_concurrency": ("CATALOG_SCENE_CONCURRENCY", parse_int, "scenes of one render made at once"),
    "login_link_ttl_s": ("CATALOG_LOGIN_LINK_TTL_S", parse_int, "how long a merchant's sign-in link works, in seconds"),
    "session_ttl_s": ("CATALOG_SESSION_TTL_S", parse_int, "how long a merchant stays signed in, in seconds"),
    "metrics_token": ("CATALOG_METRICS_TOKEN", str, "when set, /metrics wants `Authorization: Bearer <token>`"),
    "demo_redis_db": ("CATALOG_DEMO_REDIS_DB", parse_int,
                      "the Redis database number `catalog-service demo` queues into, on CATALOG_REDIS_URL's server"),
    "c2pa_cert": ("CATALOG_C2PA_CERT", str,
                  "PEM file: certificate chain that signs generated images' C2PA manifests (with CATALOG_C2PA_KEY)"),
    "c2pa_key": ("CATALOG_C2PA_KEY", str, "PEM file: the private key of CATALOG_C2PA_CERT"),
}


@dataclasses.dataclass
class Config:
    """The settings of one process. Build it with `Config.load()`."""

    var_dir: str = "var"
    database_url: str = ""  # default derived from var_dir
    redis_url: str = "redis://localhost:6379/0"
    storage_url: str = ""  # default derived from var_dir
    scene_provider: str = ""  # default: openai when OPENAI_API_KEY is set, else compositor
    cutout_model: str = "u2netp"
    model_dir: str = ""  # default derived from var_dir
    secret_key: str = ""  # default: generated into var_dir on first run
    secret_key_fallbacks: str = ""
    public_url: str = ""  # default derived from serve_port
    # The port `catalog-service serve` listens on (its --port; not an environment variable): an unset
    # CATALOG_PUBLIC_URL follows it, so links work on whatever port a trial runs.
    serve_port: int = 8000
    allow_private_urls: bool = False
    max_pixels: int = 50_000_000
    max_source_bytes: int = 40 * 1024 * 1024
    fetch_connect_timeout_s: float = 5.0
    fetch_read_timeout_s: float = 20.0
    # The web worker is killed at 30 s (cli.py serve): a download inside a request must end well before.
    web_fetch_timeout_s: float = 10.0
    cutout_max_side: int = 2048
    # A render may wait on several GPT Image calls, each retried with backoff: give it room.
    render_timeout_s: int = 1800
    push_timeout_s: int = 300
    # A fresh process gives back what a long-lived one cannot (heap fragmentation, libraries' caches).
    worker_max_jobs: int = 500
    worker_max_rss_mb: int = 1024
    folder_store_dir: str = ""  # default derived from var_dir
    log_level: str = "INFO"
    log_format: str = "json"
    max_body_bytes: int = 5 * 1024 * 1024
    shopify_api_key: str = ""
    shopify_api_secret: str = ""
    shopify_api_version: str = "2026-10"
    shopify_scopes: str = "read_products,write_products,write_files"
    shopify_admin_url: str = ""
    openai_model: str = "gpt-image-2"
    openai_prices: str = ""
    openai_timeout_s: float = 120.0
    openai_max_retries: int = 3
    # Backfill scenes wait for an OpenAI batch (half price, within 24 h); webhook and manual renders never do.
    openai_batch: bool = True
    # Derived, not read from a CATALOG_ variable: whether OPENAI_API_KEY is set (the openai library reads the key).
    openai_key_set: bool = False
    scene_concurrency: int = 4
    login_link_ttl_s: int = 900
    session_ttl_s: int = 8 * 3600
    # Empty: /metrics is open (bind it to a private network). Set: scrapers send it as a bearer token.
    metrics_token: str = dataclasses.field(default="", repr=False)
    # The demo queues into a database of its own, never the one a running service (or another program) uses.
    demo_redis_db: int = 15
    # Both or neither: generated images then carry a signed C2PA manifest besides their XMP marking.
    c2pa_cert: str = ""
    c2pa_key: str = ""
    testing: bool = False

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Environment first, then `overrides` (a test's mapping), then derived defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (var, parse, _meaning) in _ENV.items():
            if var in env:
                try:
                    values[name] = parse(env[var])
                except ConfigError as exc:
                    raise ConfigError(f"{var}: {exc}") from None
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in (overrides or {}).items():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}")
            values[key] = value
        config = cls(**values)
        config._derive(openai_key_set=bool(env.get("OPENAI_API_KEY")))
        config.validate()
        return config

    def _derive(self, openai_key_set: bool) -> None:
        var = Path(self.var_dir)
        if not self.database_url:
            self.database_url = f"sqlite:///{var / 'catalog.db'}"
        if not self.storage_url:
            self.storage_url = f"file://{var / 'assets'}"
        if not self.model_dir:
            self.model_dir = str(var / "models")
        if not self.public_url:
            self.public_url = f"http://localhost:{self.serve_port}"
        if not self.folder_store_dir:
            self.folder_store_dir = str(var / "store")
        self.openai_key_set = self.openai_key_set or openai_key_set
        if not self.scene_provider:
            self.scene_provider = "openai" if openai_key_set and "openai" in SCENE_PROVIDERS else "compositor"

    def validate(self) -> None:
        """Seam names and limits are checked at startup, not at the first job."""
        if self.scene_provider not in SCENE_PROVIDERS:
            raise ConfigError(
                f"CATALOG_SCENE_PROVIDER must be one of {', '.join(SCENE_PROVIDERS)}, "
                f"not {self.scene_provider!r}"
            )
        if not (self.storage_url.startswith("file://") or self.storage_url.startswith("s3://")):
            raise ConfigError("CATALOG_STORAGE_URL must start with file:// or s3://")
        if self.max_pixels < 1 or self.max_source_bytes < 1 or self.max_body_bytes < 1 or self.cutout_max_side < 16:
            raise ConfigError("size limits must be positive (cutout_max_side at least 16)")
        if self.log_format not in ("json", "text"):
            raise ConfigError("CATALOG_LOG_FORMAT must be json or text")
        if not 1 <= self.scene_concurrency <= 16:
            raise ConfigError("CATALOG_SCENE_CONCURRENCY must be between 1 and 16")
        if not 60 <= self.login_link_ttl_s <= 7 * 24 * 3600 or not 300 <= self.session_ttl_s <= 30 * 24 * 3600:
            raise ConfigError("CATALOG_LOGIN_LINK_TTL_S must be 60 s to 7 days, CATALOG_SESSION_TTL_S 5 min to 30 days")
        if self.worker_max_jobs < 0 or self.worker_max_rss_mb < 0:
            raise ConfigError("CATALOG_WORKER_MAX_JOBS and CATALOG_WORKER_MAX_RSS_MB must be 0 (never) or more")
        if not 1 <= self.web_fetch_timeout_s <= 20:
            raise ConfigError("CATALOG_WEB_FETCH_TIMEOUT_S must be 1 to 20 s (web workers are stopped at 30 s)")
        if self.demo_redis_db < 0:
            raise ConfigError("CATALOG_DEMO_REDIS_DB must be a Redis database number, 0 or more")
        if not 1 <= self.serve_port <= 65535:
            raise ConfigError(f"the port must be between 1 and 65535, not {self.serve_port}")
        if not 0 <= self.openai_max_retries <= 10:
            raise ConfigError("CATALOG_OPENAI_MAX_RETRIES must be between 0 and 10")
        if bool(self.c2pa_cert) != bool(self.c2pa_key):
            raise ConfigError("CATALOG_C2PA_CERT and CATALOG_C2PA_KEY go together: set both to sign images, or neither")
        for var, path in (("CATALOG_C2PA_CERT", self.c2pa_cert), ("CATALOG_C2PA_KEY", self.c2pa_key)):
            if path and not Path(path).is_file():
                raise ConfigError(f"{var}: no file at {path}")
        from .scenes.pricing import PriceTable

        try:
            prices = PriceTable.from_json(self.openai_prices or "{}")
            prices.price(self.openai_model)
        except ValueError as exc:
            raise ConfigError(f"CATALOG_OPENAI_PRICES / CATALOG_OPENAI_MODEL: {exc}") from None

    def ensure_secret_key(self) -> str:
        """The configured secret, or one generated once into var_dir and reused after."""
        if self.secret_key:
            return self.secret_key
        path = Path(self.var_dir) / "secret_key"
        if path.exists():
            self.secret_key = path.read_text().strip()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            # O_EXCL: two processes starting at once must not write two different keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self.secret_key = path.read_text().strip()
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(key)
                self.secret_key = key
        return self.secret_key

    def fallback_keys(self) -> list[str]:
        """The earlier secret keys, newest first, that signatures and stored secrets may still use."""
        return [key.strip() for key in self.secret_key_fallbacks.split(",") if key.strip()]

    @staticmethod
    def describe() -> list[tuple[str, str]]:
        """(variable, meaning) for every setting, for the README and --help."""
        return [(var, meaning) for var, _parse, meaning in _ENV.values()]
