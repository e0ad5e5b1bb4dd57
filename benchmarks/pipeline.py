"""The whole pipeline under load: N products through webhook -> render (compositor) -> push, on 1 and 2 workers.

Each run gets a fresh database and a Redis of its own. N signed generic webhooks go in through the app;
then `catalog-service worker --burst` processes (1, then 2) drain the queues, rendering with the offline
compositor and pushing to the folder store. It reports products per minute for each worker count and the
scaling ratio, and checks that every product got its assets exactly once.

    .venv/bin/python benchmarks/pipeline.py [--products 24] [--workers 1,2]

Uses PostgreSQL when one answers on 127.0.0.1:5432 (workers on several processes is what it is for),
else SQLite.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHOTO = ROOT / "catalog_service" / "samples" / "coffee.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_photo(data: bytes) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def database_url(workdir: Path) -> tuple[str, str | None]:
    try:
        import psycopg

        psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=2").close()
    except Exception:
        return f"sqlite:///{workdir / 'catalog.db'}", None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"pipe_{uuid.uuid4().hex[:10]}"
    base = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    with create_engine(base).begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    return make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False), schema


def one_run(products: int, workers: int, photo_url: str) -> dict[str, float]:
    from sqlalchemy import create_engine, func, select, text

    from catalog_service.app import create_app
    from catalog_service.models import Asset, PushStatus, Render, RenderStatus
    from catalog_service.shops import create_shop

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url, schema = database_url(workdir)
        env = {**os.environ, "CATALOG_VAR_DIR": str(workdir / "var"), "CATALOG_DATABASE_URL": url,
               "CATALOG_REDIS_URL": f"redis://127.0.0.1:{port}/0",
               "CATALOG_STORAGE_URL": f"file://{workdir / 'assets'}",
               "CATALOG_FOLDER_STORE_DIR": str(workdir / "store"), "CATALOG_MODEL_DIR": str(ROOT / "var" / "models"),
               "CATALOG_SECRET_KEY": "pipeline-bench", "CATALOG_ALLOW_PRIVATE_URLS": "true",
               "CATALOG_SCENE_PROVIDER": "compositor", "CATALOG_LOG_LEVEL": "WARNING"}
        try:
            time.sleep(0.3)
            config = {key.removeprefix("CATALOG_").lower(): value for key, value in env.items()
                      if key.startswith("CATALOG_") and key != "CATALOG_ALLOW_PRIVATE_URLS"}
            app = create_app({**config, "allow_private_urls": True})
            app.extensions["catalog_db"].upgrade()
            with app.app_context(), app.extensions["catalog_db"].transaction() as session:
                shop, _key, secret = create_shop(session, platform="generic", domain="bench.example.com")
                shop_id = shop.id
            client = app.test_client()
            for n in range(products):
                body = json.dumps({"event": "product.created", "product": {
                    "id": n + 1, "title": f"Cup {n}", "images": [{"id": 1, "src": f"{photo_url}/p{n}.png"}]}}).encode()
                signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                answer = client.post(f"/webhooks/generic/{shop_id}", data=body, content_type="application/json",
                                     headers={"X-Catalog-Signature": signature, "X-Catalog-Delivery-Id": str(n)})
                assert answer.status_code == 200, answer.get_json()
            app.extensions["catalog_db"].dispose()

            started = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker", "--burst"], env=env,
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for _ in range(workers)]
            for proc in procs:
                proc.wait(timeout=1800)
            elapsed = time.perf_counter() - started

            engine = create_engine(url)
            with engine.connect() as connection:
                done = connection.scalar(select(func.count()).select_from(Render)
                                         .where(Render.status == RenderStatus.SUCCEEDED))
                pushed = connection.scalar(select(func.count()).select_from(Asset)
                                           .where(Asset.push_status == PushStatus.PUSHED))
            engine.dispose()
            manifests = list((workdir / "store").glob("*/*/manifest.json"))
            files = sum(len(json.loads(m.read_text())["assets"]) for m in manifests)
            if schema:
                with create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test").begin() as connection:
                    connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        finally:
            redis.terminate()
            redis.wait(timeout=30)
    return {"seconds": elapsed, "per_minute": 60 * products / elapsed, "succeeded": done, "pushed": pushed,
            "files": files, "database": "PostgreSQL" if schema else "SQLite"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=24)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    args = parser.parse_args()
    server, photo_url = serve_photo(PHOTO.read_bytes())
    results = {}
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            results[workers] = one_run(args.products, workers, photo_url)
            r = results[workers]
            print(f"{workers} worker(s): {args.products} products in {r['seconds']:.1f} s = "
                  f"{r['per_minute']:.1f} products/minute ({r['database']}); {r['succeeded']} renders succeeded, "
                  f"{r['pushed']} assets pushed, {r['files']} files in the store")
    finally:
        server.shutdown()
        server.server_close()
    if 1 in results and 2 in results:
        print(f"scaling 1 -> 2 workers: {results[2]['per_minute'] / results[1]['per_minute']:.2f}x "
              f"(on {os.cpu_count()} CPU cores)")


if __name__ == "__main__":
    main()
