"""The process's resources, built once from Config: database, Redis, storage, HTTP session, scene providers,
and the C2PA signer when one is configured.

No Flask and no RQ here. `create_app()` builds one for the web process; `catalog-service worker` builds one
and `install()`s it, so the jobs it runs find it with `current()`; the sweeper and the other commands
build their own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import requests
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry

from . import logs, security
from .config import Config, ConfigError
from .db import Database
from .http import make_session
from .imaging import provenance
from .scenes import provider_for
from .scenes.base import SceneProvider
from .storage import AssetStorage, storage_from_url

REDIS_CONNECT_TIMEOUT_S = 1.0
"""A webhook waits at most about this long per try for Redis before answering without queueing."""

REDIS_SOCKET_TIMEOUT_S = 5.0
"""Longest wait for one Redis reply."""


def redis_connection(url: str) -> Redis:
    """A Redis client with bounded timeouts and retries: a Redis outage never stalls a webhook for long."""
    return Redis.from_url(
        url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S, socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        retry=RedisRetry(ExponentialBackoff(cap=0.5, base=0.1), retries=2), health_check_interval=30,
    )


@dataclasses.dataclass
class Services:
    """The process-wide resources, built once by build()."""

    config: Config
    db: Database
    storage: AssetStorage
    redis: Redis
    scene_provider: SceneProvider
    http: requests.Session
    # Signs generated images' C2PA manifests; None when CATALOG_C2PA_CERT / CATALOG_C2PA_KEY are unset.
    c2pa_signer: provenance.Signer | None = None
    _providers: dict[str, SceneProvider] = dataclasses.field(default_factory=dict)

    def provider(self, name: str = "") -> SceneProvider:
        """A shop's chosen provider ("" = the service default), built once per process."""
        if not name or name == self.scene_provider.name:
            return self.scene_provider
        if name not in self._providers:
            self._providers[name] = provider_for(name, self.config)
        return self._providers[name]

    def close(self) -> None:
        """Close the database pools, Redis and HTTP connections (for code that builds services and drops them)."""
        self.db.dispose()
        self.redis.close()
        self.http.close()


def build(config: Config) -> Services:
    """Everything a process needs, from its Config; logging and secret encryption are set up as well."""
    config.ensure_secret_key()
    logs.configure(config.log_level, config.log_format)
    security.configure(config.secret_key, config.fallback_keys())
    signer = c2pa_signer(config)  # first: a pair that cannot sign stops the process before any connection opens
    return Services(
        config=config,
        db=Database(config.database_url),
        storage=storage_from_url(config.storage_url),
        redis=redis_connection(config.redis_url),
        scene_provider=provider_for(config.scene_provider, config),
        http=make_session(),
        c2pa_signer=signer,
    )


def c2pa_signer(config: Config) -> provenance.Signer | None:
    """The configured C2PA signer, or None; a pair that cannot sign stops the process at start, named."""
    if not config.c2pa_cert:
        return None
    try:
        return provenance.load_signer(Path(config.c2pa_cert).read_bytes(), Path(config.c2pa_key).read_bytes())
    except OSError as exc:
        raise ConfigError(f"CATALOG_C2PA_CERT / CATALOG_C2PA_KEY: cannot read {exc.filename}: {exc.strerror}") from None
    except provenance.SignerUnusable as exc:
        raise ConfigError(f"CATALOG_C2PA_CERT / CATALOG_C2PA_KEY: {exc}") from None


_current: Services | None = None


def install(services: Services) -> None:
    """Make these the services that jobs run in this process use (the worker and the sweeper call it)."""
    global _current
    _current = services


def current() -> Services:
    """The services install() made current; jobs take their database, Redis and storage from here."""
    if _current is None:
        raise RuntimeError("no services installed in this process: build them with services.build(config)")
    return _current
