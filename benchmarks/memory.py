"""Worker memory under a mix of photos: the resident size of one `catalog-service worker` over N renders.

The bench makes its photos itself (JPEGs from 1 to 24 MP, PNGs with alpha, a 16-bit RGBA PNG, a big WebP,
a large RGB PNG), serves them on loopback, sends one signed generic webhook per product and lets a single
long-running worker render them with the offline compositor and push them to the folder store. It reads
the worker's resident size from /proc every 0.1 s and prints it every 20 finished renders, the highest
size seen, the median render time, and PASS when the worker stayed under the limit and flat (no more than
50 MB above its size after the first 40 renders). Linux only (/proc); no network.

    .venv/bin/python benchmarks/memory.py [--renders 200] [--limit-mb 800]
"""

from __future__ import annotations

import argparse
import io
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import harness
import numpy as np
from PIL import Image

from support import free_port, start_redis, stop_redis

SAMPLE = harness.SAMPLES / "coffee.png"
EVERY = 20
FLAT_MB = 50


def photos() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type): the sample product photo at several sizes, formats and modes."""
    sample = Image.open(SAMPLE).convert("RGB")
    rng = np.random.default_rng(3)

    def scaled(size: tuple[int, int]) -> Image.Image:
        im = sample.resize(size, Image.Resampling.BICUBIC)
        grain = rng.normal(0, 3, (size[1], size[0], 1)).astype(np.float32)  # sensor grain: not a flat fill
        return Image.fromarray(np.clip(np.asarray(im, np.float32) + grain, 0, 255).astype(np.uint8))

    def with_alpha(im: Image.Image) -> Image.Image:
        alpha = Image.new("L", im.size, 0)
        margin = (im.width // 20, im.height // 20)
        alpha.paste(255, (margin[0], margin[1], im.width - margin[0], im.height - margin[1]))
        out = im.convert("RGBA")
        out.putalpha(alpha)
        return out

    def save(im: Image.Image, fmt: str, **params: object) -> bytes:
        out = io.BytesIO()
        im.save(out, fmt, **params)
        return out.getvalue()

    def png16(im: Image.Image) -> bytes:
        rgba = np.asarray(with_alpha(im), np.uint16) * 257
        samples = rgba.astype(">u2").reshape(im.height, -1).view(np.uint8)
        rows = np.concatenate([np.zeros((im.height, 1), np.uint8), samples], axis=1)  # filter byte 0 per row
        ihdr = struct.pack(">IIBBBBB", im.width, im.height, 16, 6, 0, 0, 0)

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
                + chunk(b"IEND", b""))

    return {
        "jpeg-1mp.jpg": (save(scaled((1200, 800)), "JPEG", quality=88), "image/jpeg"),
        "jpeg-6mp.jpg": (save(scaled((3000, 2000)), "JPEG", quality=88), "image/jpeg"),
        "jpeg-24mp.jpg": (save(scaled((6000, 4000)), "JPEG", quality=88), "image/jpeg"),
        "png-alpha-4mp.png": (save(with_alpha(scaled((2400, 1600))), "PNG"), "image/png"),
        "png-alpha-6mp.png": (save(with_alpha(scaled((3000, 2000))), "PNG"), "image/png"),
        "png-16-bit-rgba-6mp.png": (png16(scaled((3000, 2000))), "image/png"),
        "webp-9mp.webp": (save(scaled((3600, 2400)), "WEBP", quality=85), "image/webp"),
        "png-11mp.png": (save(scaled((4000, 2667)), "PNG"), "image/png"),
    }


def resident_mb(pid: int) -> float:
    """The process's resident size (VmRSS) in MB, 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


def run(renders: int, limit_mb: float) -> bool:
    from redis import Redis
    from rq import Worker as RQWorker
    from sqlalchemy import create_engine, func, select

    from catalog_service.models import Render, RenderStatus
    from catalog_service.shops import create_shop

    files = photos()
    print("photos: " + ", ".join(f"{name} ({len(data) / 1e6:.1f} MB)" for name, (data, _) in files.items()))
    names = list(files)
    # /<n>/<name> answers files[name]: a distinct URL per product, the same bytes.
    server = harness.FileServer(lambda path: files.get(path.rsplit("/", 1)[-1])).start()
    base = server.url
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        redis_server = start_redis(port, workdir)
        env = harness.service_env(workdir, f"sqlite:///{workdir / 'catalog.db'}", f"redis://127.0.0.1:{port}/0",
                                  "memory-bench", {"CATALOG_LOG_FORMAT": "text"})
        worker: subprocess.Popen[bytes] | None = None
        try:
            app = harness.app_from_env(env)
            with app.app_context(), app.extensions["catalog_db"].transaction() as session:
                shop, _key, secret = create_shop(session, platform="generic", domain="memory.example.com")
                shop_id = shop.id

            log_path = workdir / "worker.log"
            with log_path.open("wb") as log:
                worker = harness.start_service(env, "worker", stderr=log)
            redis = Redis(port=port)
            deadline = time.monotonic() + 120
            while not RQWorker.all(connection=redis):
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"the worker did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            idle_mb = resident_mb(worker.pid)
            print(f"worker pid {worker.pid}: {idle_mb:.0f} MB idle, model loaded")

            client = app.test_client()
            for n in range(renders):
                src = f"{base}/{n}/{names[n % len(names)]}"
                harness.post_new_product(client, shop_id, secret, {
                    "id": n + 1, "title": f"Cup {n}", "images": [{"id": 1, "src": src}]}, str(n))
            app.extensions["catalog_db"].dispose()

            engine = create_engine(env["CATALOG_DATABASE_URL"])
            curve: list[tuple[int, float]] = []
            highest, done, next_mark = idle_mb, 0, EVERY
            started = time.monotonic()
            while done < renders and time.monotonic() - started < 3600:
                rss = resident_mb(worker.pid)
                highest = max(highest, rss)
                with engine.connect() as connection:
                    done = connection.scalar(select(func.count()).select_from(Render).where(
                        Render.status.in_([s for s in RenderStatus if s.is_finished]))) or 0
                while done >= next_mark:
                    curve.append((next_mark, rss))
                    next_mark += EVERY
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited:\n{log_path.read_text()}")
                time.sleep(0.1)
            with engine.connect() as connection:
                rows = connection.execute(select(Render.status, Render.started_at, Render.finished_at)).all()
            engine.dispose()
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=120)
            stop_redis(redis_server)
            server.stop()
        recycles = log_path.read_text().count("starting afresh")

    succeeded = sum(1 for status, _, _ in rows if status == RenderStatus.SUCCEEDED)
    seconds = [(end - start).total_seconds() for status, start, end in rows
               if status == RenderStatus.SUCCEEDED and start and end]
    print(f"\n{'renders':>8} {'RSS MB':>7}")
    for count, rss in curve:
        print(f"{count:>8} {rss:>7.0f}")
    settled = next((rss for count, rss in curve if count >= 2 * EVERY), curve[0][1] if curve else idle_mb)
    final = curve[-1][1] if curve else idle_mb
    flat = final - settled <= FLAT_MB
    under = highest < limit_mb
    print(f"\n{succeeded}/{len(rows)} renders succeeded; median render {statistics.median(seconds):.2f} s"
          if seconds else "\nno render succeeded")
    print(f"idle {idle_mb:.0f} MB, highest seen {highest:.0f} MB (limit {limit_mb:.0f}), "
          f"after {2 * EVERY} renders {settled:.0f} MB, at the end {final:.0f} MB "
          f"({'flat' if flat else 'growing'}: within {FLAT_MB} MB); worker restarts itself: {recycles}")
    passed = under and flat and succeeded == renders
    print(harness.verdict(passed))
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--limit-mb", type=float, default=800)
    args = parser.parse_args()
    sys.exit(0 if run(args.renders, args.limit_mb) else 1)


if __name__ == "__main__":
    main()
