"""What the benchmarks share: the repository's paths, a photo server on loopback, a database and an environment for
one run, `catalog-service` processes, signed generic webhooks, timing and verdicts.

Importing it puts the repository and tests/ on `sys.path`, as the tests have them, so that a benchmark can then
import catalog_service and the helpers of tests/ (support: free_port, start_redis, stop_redis; fakes: the loopback
fakes). Heavy modules are imported inside the functions that need them: ingest.py's load generator imports this.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fakes.loopback import LoopbackFake  # noqa: E402

SAMPLES = ROOT / "catalog_service" / "samples"
MODEL_DIR = ROOT / "var" / "models"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CLI = [sys.executable, "-m", "catalog_service.cli"]
"""`catalog-service` as this interpreter runs it."""

T = TypeVar("T")


def verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def print_scaling(per_minute: dict[int, float]) -> None:
    """How the rate grew from 1 to 2 workers, when both were run."""
    if 1 in per_minute and 2 in per_minute:
        print(f"scaling 1 -> 2 workers: {per_minute[2] / per_minute[1]:.2f}x (on {os.cpu_count()} CPU cores)")


def timed(step: Callable[[], T], runs: int) -> tuple[list[float], T]:
    """Seconds of each of `runs` calls of `step`, and what the last call returned."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - started)
    return times, result


# --- a shop's CDN on loopback --------------------------------------------------------------------------------


class _FileHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        found = self.server.fake.answer(self.path)  # type: ignore[attr-defined]
        if found is None:
            self.send_error(404)
            return
        data, content_type = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


class FileServer(LoopbackFake):
    """`GET <path>` answers `answer(path)`: (bytes, content type), or 404 for None."""

    handler = _FileHandler
    name = "photo server"

    def __init__(self, answer: Callable[[str], tuple[bytes, str] | None]) -> None:
        super().__init__()
        self.answer = answer


def serve_photo(data: bytes, content_type: str) -> FileServer:
    """The same product photo at every path (not started: `start()`, or a `with` block)."""
    return FileServer(lambda _path: (data, content_type))


# --- the run's database and environment ----------------------------------------------------------------------


def database_for_run(workdir: Path, prefix: str, choice: str = "auto", *, base_url: str = POSTGRES_URL,
                     application_name: bool = False) -> tuple[str, str | None]:
    """(URL, schema) for one run: a fresh schema `<prefix>_<random>` on the PostgreSQL at `base_url` when one answers
    (choice "auto"; "postgresql": it must), else SQLite in `workdir` and schema None (also for choice "sqlite").
    With `application_name`, the connections carry the schema's name (to find their backends in pg_stat_activity)."""
    if choice == "sqlite":
        return f"sqlite:///{workdir / 'catalog.db'}", None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(base_url, connect_args={"connect_timeout": 2})
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except SQLAlchemyError:
        if choice == "postgresql":
            raise
        return f"sqlite:///{workdir / 'catalog.db'}", None
    finally:
        engine.dispose()
    query = {"options": f"-csearch_path={schema}"} | ({"application_name": schema} if application_name else {})
    return make_url(base_url).update_query_dict(query).render_as_string(hide_password=False), schema


def drop_schema(schema: str, base_url: str = POSTGRES_URL) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base_url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def service_env(workdir: Path, database_url: str, redis_url: str, secret_key: str,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the run's `catalog-service` processes: its files under `workdir`, the offline compositor,
    loopback photo URLs allowed; `extra` adds or replaces variables."""
    return {**os.environ, "CATALOG_VAR_DIR": str(workdir / "var"), "CATALOG_DATABASE_URL": database_url,
            "CATALOG_REDIS_URL": redis_url, "CATALOG_STORAGE_URL": f"file://{workdir / 'assets'}",
            "CATALOG_FOLDER_STORE_DIR": str(workdir / "store"), "CATALOG_MODEL_DIR": str(MODEL_DIR),
            "CATALOG_SECRET_KEY": secret_key, "CATALOG_ALLOW_PRIVATE_URLS": "true",
            "CATALOG_SCENE_PROVIDER": "compositor", "CATALOG_LOG_LEVEL": "WARNING", **(extra or {})}


def app_from_env(env: dict[str, str]) -> Any:
    """The app in this process, configured as `env` configures the processes, its database upgraded."""
    from catalog_service.app import create_app

    config = {key.removeprefix("CATALOG_").lower(): value for key, value in env.items()
              if key.startswith("CATALOG_") and key != "CATALOG_ALLOW_PRIVATE_URLS"}
    app = create_app({**config, "allow_private_urls": True})
    app.extensions["catalog_db"].upgrade()
    return app


# --- processes -----------------------------------------------------------------------------------------------


def start_service(env: dict[str, str], *args: str, stdout: Any = subprocess.DEVNULL, stderr: Any = subprocess.DEVNULL,
                  **popen: Any) -> subprocess.Popen[bytes]:
    """`catalog-service <args>` in its own process, from the repository root."""
    return subprocess.Popen([*CLI, *args], env=env, cwd=ROOT, stdout=stdout, stderr=stderr, **popen)


def run_cli(env: dict[str, str], *args: str, timeout_s: float | None = None) -> str:
    """Run `catalog-service <args>` to its end; its output, or RuntimeError with the end of its error output."""
    done = subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"catalog-service {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done.stdout


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float,
                   kill_wait_s: float | None = None) -> None:
    """SIGTERM them all, then wait for each; one still there after `timeout_s` is killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=kill_wait_s)


def wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command's name (state first), None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


# --- webhooks ------------------------------------------------------------------------------------------------


def generic_signature(secret: str, body: bytes) -> str:
    """The generic webhook's `X-Catalog-Signature`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_new_product(client: Any, shop_id: int, secret: str, product: dict[str, Any], delivery_id: str
                     ) -> dict[str, Any]:
    """Send a signed generic `product.created` webhook through the app's test client; its answer (a 200's)."""
    body = json.dumps({"event": "product.created", "product": product}).encode()
    answer = client.post(f"/webhooks/generic/{shop_id}", data=body, content_type="application/json",
                         headers={"X-Catalog-Signature": generic_signature(secret, body),
                                  "X-Catalog-Delivery-Id": delivery_id})
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


# --- cutout ---------------------------------------------------------------------------------------------------


def cutout_sessions(model: str) -> tuple[Any, Any]:
    """(ours, rembg's): one onnxruntime session of `model` for each method, both from MODEL_DIR."""
    import rembg

    from catalog_service.imaging.cutout import get_session

    ours = get_session(model, str(MODEL_DIR))
    os.environ["U2NET_HOME"] = str(MODEL_DIR)  # get_session set it already; rembg's own session needs it too
    return ours, rembg.new_session(model)
