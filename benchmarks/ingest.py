"""Webhook intake under load: signed Shopify deliveries against the app under gunicorn on loopback.

Measures deliveries per second and p50/p99 latency of `POST /webhooks/shopify` (one delivery in five
repeats an earlier one, as a retrying shop sends), next to a bare Flask endpoint served the same way in
the same run: after an unmeasured warm-up, rounds alternate bare and ours, and the medians are reported,
because this machine's speed drifts from one minute to the next. The load generator is another process.
Afterwards it checks the books: every accepted delivery has exactly one Delivery row and every product at
most one Render.

Goals (printed with PASS or FAIL): p99 under GOAL_P99_MS at the default concurrency of 4 connections,
throughput at least GOAL_SHARE times the bare endpoint's in the same run, and the books right.

    .venv/bin/python benchmarks/ingest.py [--rounds 5] [--deliveries 3000] [--concurrency 4] [--workers 3]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Uses the PostgreSQL of --database-url when it answers (as production would), else SQLite; Redis is a
redis-server of its own on a free port, so the shared one is never touched. With --profile it instead
sends the deliveries through the app in its own process under cProfile, on the same set-up, and prints
where the time goes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import harness
from harness import ROOT

SECRET = "bench-shopify-client-secret"
DOMAIN = "bench-shop.myshopify.com"
GOAL_P99_MS = 50.0
GOAL_SHARE = 0.12  # of the bare Flask endpoint's deliveries per second, in the same run
GOAL_CONCURRENCY = 4
WARMUP_DELIVERIES = 500
WARMUP_FIRST_PRODUCT = 10**8  # far from the rounds' products

BARE_APP = '''
from flask import Flask, request
app = Flask(__name__)

@app.post("/webhooks/shopify")
def bare():
    request.get_data()
    return {"outcome": "ok"}, 200
'''


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = harness.proc_stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def postgres_backends(engine: object, application_name: str) -> list[int]:
    from sqlalchemy import text

    with engine.connect() as connection:  # type: ignore[attr-defined]
        return list(connection.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"), {"name": application_name}))


def deliveries(count: int, duplicate_share: float, first_product: int = 0) -> list[tuple[bytes, dict[str, str]]]:
    """Signed products/create deliveries; every fifth (by default) repeats an earlier one exactly.

    Products are numbered from `first_product`, so every round of the benchmark brings new products.
    """
    out: list[tuple[bytes, dict[str, str]]] = []
    originals: list[tuple[bytes, dict[str, str]]] = []
    every = round(1 / duplicate_share) if duplicate_share else 0
    for index in range(count):
        if every and index % every == every - 1 and originals:
            out.append(originals[(index * 7919) % len(originals)])
            continue
        product_id = 9_000_000_000 + first_product + index
        payload = {
            "id": product_id, "title": f"Product {index}", "body_html": "<p>Benchmark product</p>",
            "vendor": "Bench", "product_type": "Things", "tags": "a, b, c",
            "images": [{"id": product_id * 10, "alt": "", "position": 1,
                        "src": f"https://cdn.shopify.com/s/files/1/0000/0001/files/p{index}.jpg?v=1"}],
            "variants": [{"id": product_id * 100, "price": "9.99"}], "media": [],
        }
        body = json.dumps(payload).encode()
        event_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "products/create",
            "X-Shopify-Shop-Domain": DOMAIN,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-API-Version": "2026-10",
            "X-Shopify-Hmac-Sha256": base64.b64encode(
                hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode(),
        }
        originals.append((body, headers))
        out.append((body, headers))
    return out


def generate(port: int, count: int, concurrency: int, duplicate_share: float, first_product: int) -> dict[str, Any]:
    """The load generator (run in its own process): send everything, time every request."""
    work = deliveries(count, duplicate_share, first_product)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    cursor = iter(range(len(work)))

    def worker() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            body, headers = work[index]
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/webhooks/shopify", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            connection.close()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                try:
                    outcome = json.loads(answer).get("outcome", "?")
                except ValueError:
                    outcome = "?"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "per_second": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "statuses": statuses,
        "outcomes": outcomes,
        "unique": len({headers["X-Shopify-Event-Id"] for _, headers in work}),
    }


def run_generator(port: int, args: argparse.Namespace, first_product: int = 0, count: int | None = None
                  ) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--generate", str(port), "--deliveries", str(count or args.deliveries),
         "--concurrency", str(args.concurrency), "--first-product", str(first_product)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(output)


def gunicorn(app_spec: str, port: int, workers: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "--preload", app_spec],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    harness.wait_for_port(port, 30)
    # The arbiter binds the port before it forks the workers; count CPU only once all of them exist.
    deadline = time.monotonic() + 30
    while len(children(process.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=GOAL_CONCURRENCY,
                        help=f"connections the load generator keeps busy (the p99 goal is for {GOAL_CONCURRENCY})")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--database", choices=["auto", "sqlite"], default="auto",
                        help="auto: PostgreSQL when one answers at --database-url, else SQLite")
    parser.add_argument("--database-url", default=harness.POSTGRES_URL,
                        help="the PostgreSQL server to use (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of bare-then-ours; medians are reported (this machine's speed drifts)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: send --deliveries through the app in this process under cProfile, same "
                             "database and Redis set-up, and print where the time goes")
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-product", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(generate(args.generate, args.deliveries, args.concurrency, 0.2, args.first_product)))
        return

    from sqlalchemy import create_engine, func, select

    from support import free_port, start_redis

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis_port = free_port()
        redis = start_redis(redis_port, workdir)
        database_url, schema = harness.database_for_run(workdir, "bench", args.database, base_url=args.database_url,
                                                        application_name=True)
        admin = create_engine(args.database_url) if schema else None
        env = {
            **os.environ,
            "CATALOG_VAR_DIR": str(workdir / "var"),
            "CATALOG_DATABASE_URL": database_url,
            "CATALOG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CATALOG_SECRET_KEY": "bench-secret-key",
            "CATALOG_SHOPIFY_API_SECRET": SECRET,
            "CATALOG_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        servers: list[subprocess.Popen[bytes]] = [redis]
        try:
            harness.run_cli(env, "db", "upgrade")
            harness.run_cli(env, "shops", "add", "--platform", "shopify", "--domain", DOMAIN)
            if args.profile:
                profile_in_process(env, args.deliveries)
                return
            (workdir / "bare_app.py").write_text(BARE_APP)
            bare_port = free_port()
            servers.append(gunicorn("bare_app:app", bare_port, args.workers, {**env, "PYTHONPATH": tmp}, workdir))
            bare_workers = children(servers[-1].pid)
            app_port = free_port()
            servers.append(gunicorn("wsgi:app", app_port, args.workers, env, ROOT))
            app_workers = children(servers[-1].pid)

            # Rounds alternate bare and ours, so both see the same machine: its speed drifts over minutes.
            # Each round sends new products.
            bare_rounds: list[dict[str, Any]] = []
            our_rounds: list[dict[str, Any]] = []
            # Unmeasured first: every process fills its caches on its first requests (connections,
            # compiled and prepared statements, the queue's registration), and the rounds compare
            # steady states.
            run_generator(bare_port, args, count=WARMUP_DELIVERIES)
            warmup = run_generator(app_port, args, first_product=WARMUP_FIRST_PRODUCT, count=WARMUP_DELIVERIES)
            backend_cpu = cpu_seconds(postgres_backends(admin, schema)) if schema else 0.0
            for round_index in range(args.rounds):
                before = cpu_seconds(bare_workers)
                bare = run_generator(bare_port, args)
                bare["cpu_ms"] = {"web": 1000 * (cpu_seconds(bare_workers) - before) / args.deliveries}
                bare_rounds.append(bare)

                before, redis_before = cpu_seconds(app_workers), cpu_seconds([redis.pid])
                ours = run_generator(app_port, args, first_product=round_index * args.deliveries)
                ours["cpu_ms"] = {"web": 1000 * (cpu_seconds(app_workers) - before) / args.deliveries,
                                  "redis": 1000 * (cpu_seconds([redis.pid]) - redis_before) / args.deliveries}
                if schema:
                    # Our backends were opened by the app's first requests, so all their CPU time is ours.
                    total = cpu_seconds(postgres_backends(admin, schema))
                    ours["cpu_ms"]["postgres"] = 1000 * (total - backend_cpu) / args.deliveries
                    backend_cpu = total
                our_rounds.append(ours)
                print(f"round {round_index + 1}: bare {bare['per_second']:.0f}/s, ours {ours['per_second']:.0f}/s "
                      f"(p99 {ours['p99_ms']:.1f} ms)", file=sys.stderr)

            engine = create_engine(database_url)
            from catalog_service.models import Delivery, Render

            with engine.connect() as connection:
                delivery_rows = connection.scalar(select(func.count()).select_from(Delivery))
                render_rows = connection.scalar(select(func.count()).select_from(Render))
                most_renders = connection.scalar(
                    select(func.count()).select_from(Render).group_by(Render.product_id)
                    .order_by(func.count().desc()).limit(1)
                )
            engine.dispose()
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
            if schema:
                admin.dispose()
                harness.drop_schema(schema, args.database_url)

    bare, ours = summary(bare_rounds), summary(our_rounds)
    shares = sorted(o["per_second"] / b["per_second"] for b, o in zip(bare_rounds, our_rounds, strict=True))
    share = statistics.median(shares)
    unique = sum(int(result["unique"]) for result in our_rounds) + int(warmup["unique"])
    books_right = delivery_rows == unique and most_renders == 1
    print(f"database: {'PostgreSQL' if schema else 'SQLite'}; gunicorn sync workers: {args.workers}; "
          f"{args.rounds} rounds of {args.deliveries} deliveries each after {WARMUP_DELIVERIES} unmeasured, "
          f"concurrency {args.concurrency}, one delivery in five a duplicate")
    print("medians over the rounds (the range of deliveries/s in brackets)")
    print(f"{'endpoint':<24}{'deliveries/s':>14}{'p50 ms':>10}{'p99 ms':>10}  {'range':<14}statuses")
    for name, result, rounds in (("bare Flask", bare, bare_rounds), ("POST /webhooks/shopify", ours, our_rounds)):
        speeds = [r["per_second"] for r in rounds]
        print(f"{name:<24}{result['per_second']:>14.0f}{result['p50_ms']:>10.1f}{result['p99_ms']:>10.1f}  "
              f"{f'[{min(speeds):.0f}-{max(speeds):.0f}]':<14}{result['statuses']}")
    print(f"ours / bare: {share:.3f}x (median of the rounds' ratios; each round: "
          f"{', '.join(f'{x:.3f}x' for x in shares)})")
    for name, result in (("bare Flask", bare), ("ours", ours)):
        parts = result["cpu_ms"]
        print(f"CPU per delivery, {name}: " + ", ".join(f"{part} {ms:.2f} ms" for part, ms in parts.items())
              + f" (total {sum(parts.values()):.2f} ms, load generator not counted)")
    print(f"outcomes: {ours['outcomes']}")
    print(f"books: {unique} unique deliveries -> {delivery_rows} Delivery rows, {render_rows} Renders, "
          f"at most {most_renders} per product")

    at = "" if args.concurrency == GOAL_CONCURRENCY else f" (goal is set at concurrency {GOAL_CONCURRENCY})"
    goals = [
        (f"p99 < {GOAL_P99_MS:.0f} ms at concurrency {args.concurrency}{at}", ours["p99_ms"] < GOAL_P99_MS,
         f"{ours['p99_ms']:.1f} ms, median of the rounds"),
        (f"throughput >= {GOAL_SHARE:.2f}x bare Flask", share >= GOAL_SHARE,
         f"{share:.3f}x: {ours['per_second']:.0f} vs {bare['per_second']:.0f} deliveries/s"),
        ("books right", books_right, "one Delivery row per unique delivery, at most one Render per product"),
    ]
    print("goals:")
    for goal, met, measured in goals:
        print(f"  {harness.verdict(met)}  {goal} ({measured})")
    if not all(met for _goal, met, _measured in goals):
        sys.exit(1)


def profile_in_process(env: dict[str, str], count: int) -> None:
    """Send `count` deliveries (and a warm-up) through the app's test client under cProfile; print the top."""
    import cProfile
    import pstats

    os.environ.update(env)
    from catalog_service.app import create_app

    app = create_app()
    client = app.test_client()

    def send(work: list[tuple[bytes, dict[str, str]]]) -> None:
        for body, headers in work:
            response = client.post("/webhooks/shopify", data=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)}")

    try:
        send(deliveries(WARMUP_DELIVERIES, 0.2, WARMUP_FIRST_PRODUCT))
        work = deliveries(count, 0.2)
        profiler = cProfile.Profile()
        started, cpu = time.perf_counter(), time.process_time()
        profiler.runcall(send, work)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        app.extensions["catalog"].close()
    print(f"{count} deliveries in process, under the profiler: {1000 * wall / count:.2f} ms each, "
          f"{1000 * cpu / count:.2f} ms of this process's CPU each")
    stats = pstats.Stats(profiler).sort_stats("cumulative")
    stats.print_stats(r"catalog_service|webhooks|jobs|rq/queue|sqlalchemy/orm/session.py:\d+\(commit\)", 30)
    stats.sort_stats("tottime").print_stats(20)


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median speed, latency and CPU over the rounds; statuses and outcomes added up."""
    statuses: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for result in rounds:
        for key, count in result["statuses"].items():
            statuses[key] = statuses.get(key, 0) + count
        for key, count in result["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + count
    return {
        "per_second": statistics.median(r["per_second"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "cpu_ms": {part: statistics.median(r["cpu_ms"][part] for r in rounds) for part in rounds[0]["cpu_ms"]},
        "statuses": statuses,
        "outcomes": outcomes,
    }


if __name__ == "__main__":
    main()
