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
import json
import tempfile
import time
from pathlib import Path

import harness

from support import free_port, start_redis, stop_redis

PHOTO = harness.SAMPLES / "coffee.png"


def one_run(products: int, workers: int, photo_url: str) -> dict[str, float]:
    from sqlalchemy import create_engine, func, select

    from catalog_service.models import Asset, PushStatus, Render, RenderStatus
    from catalog_service.shops import create_shop

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        redis = start_redis(port, workdir)
        url, schema = harness.database_for_run(workdir, "pipe")
        env = harness.service_env(workdir, url, f"redis://127.0.0.1:{port}/0", "pipeline-bench")
        try:
            app = harness.app_from_env(env)
            with app.app_context(), app.extensions["catalog_db"].transaction() as session:
                shop, _key, secret = create_shop(session, platform="generic", domain="bench.example.com")
                shop_id = shop.id
            client = app.test_client()
            for n in range(products):
                harness.post_new_product(client, shop_id, secret, {
                    "id": n + 1, "title": f"Cup {n}", "images": [{"id": 1, "src": f"{photo_url}/p{n}.png"}]}, str(n))
            app.extensions["catalog_db"].dispose()

            started = time.perf_counter()
            procs = [harness.start_service(env, "worker", "--burst") for _ in range(workers)]
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
                harness.drop_schema(schema)
        finally:
            stop_redis(redis)
    return {"seconds": elapsed, "per_minute": 60 * products / elapsed, "succeeded": done, "pushed": pushed,
            "files": files, "database": "PostgreSQL" if schema else "SQLite"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=24)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    args = parser.parse_args()
    results = {}
    with harness.serve_photo(PHOTO.read_bytes(), "image/png") as photos:
        for workers in (int(w) for w in args.workers.split(",")):
            results[workers] = one_run(args.products, workers, photos.url)
            r = results[workers]
            print(f"{workers} worker(s): {args.products} products in {r['seconds']:.1f} s = "
                  f"{r['per_minute']:.1f} products/minute ({r['database']}); {r['succeeded']} renders succeeded, "
                  f"{r['pushed']} assets pushed, {r['files']} files in the store")
    harness.print_scaling({workers: r["per_minute"] for workers, r in results.items()})


if __name__ == "__main__":
    main()
