"""Load and faults together: mixed webhooks, regenerates and pushes while a chaos loop breaks things.

The real app runs under gunicorn (`catalog-service serve`), with two `catalog-service worker` processes
and one `catalog-service sweeper --interval 5`, on PostgreSQL (SQLite when none answers, or with
`--database sqlite`) and a Redis of its own on a free port (never the shared one). The shops are a generic
one (assets go to the folder store), a Shopify and a WooCommerce one, the last two the loopback fakes of
tests/fakes/. For `--minutes` a load loop sends signed webhooks of every platform (new products, new
photos, edits that change no photo, exact resends of earlier deliveries) and calls the regenerate API,
while a chaos loop SIGKILLs workers, restarts Redis with and without its data, and throttles the fake
stores (HTTP 429/503 and Shopify's THROTTLED) for a few seconds at a time. Like a process manager, the
benchmark starts again any of its processes that exits, a killed one included, and counts why it exited.

Then the load and the chaos stop and the system gets up to `--drain` seconds to settle. The checks:
every accepted delivery was recorded once and every render it or the API started finished; every asset
of every render is on its shop's product exactly once (asked of the fake stores and the folder store: no
duplicate on the product or in the media library, nothing missing); nothing is stuck (no render queued
or running, no asset pending); an edit that changes no photo started no render; no answer was a 500.
It prints the counts and PASS or FAIL, and exits 1 on FAIL (keeping its work directory with every
process's log).

    .venv/bin/python benchmarks/soak.py [--minutes 2] [--drain 240] [--rate 30] [--seed N] [--database sqlite]

Not part of `make test`.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import redis
import requests
from PIL import Image, ImageOps

from fakes.shopify_server import FakeShopify
from fakes.woocommerce_server import UPLOADS, FakeWooCommerce
from support import free_port

PHOTO = harness.SAMPLES / "coffee.png"
SHOPIFY_SECRET = "soak-shopify-client-secret"
WORKERS = 2
RESTART_DELAY_S = 1.0
"""How long the process manager waits before starting an exited process again."""
REQUEST_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 120
"""How long a `catalog-service` command of the set-up (db upgrade, shops add) may take."""
SEND_ATTEMPTS = 6
"""A delivery the app could not take (503, no connection) is sent again, like a shop's retry, this often."""
CHAOS_PAUSE_S = (6.0, 12.0)
"""Seconds between two chaos actions (uniformly drawn)."""
THROTTLE_S = 6.0
"""How long the fake stores refuse work in one throttle episode."""
REDIS_DOWN_S = (1.0, 4.0)
PRESETS = ["studio", "marble-counter", "wooden-table", "brand-gradient"]
WEIGHTS = {"create": 45, "new_photo": 15, "edit": 15, "resend": 15, "regenerate": 10}
KEY8 = re.compile(r"-cs([0-9a-f]{8})(?![0-9a-f])")


def log(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)


# --- the photos the shops' products show --------------------------------------------------------------------


def photo_variants() -> list[bytes]:
    """A few different photos of the sample product, so a new photo makes new bytes (and new assets)."""
    base = Image.open(PHOTO).convert("RGB")
    variants = []
    for mirror in (False, True):
        for scale in (1.0, 0.9, 0.8):
            image = ImageOps.mirror(base) if mirror else base
            if scale != 1.0:
                image = image.resize((round(image.width * scale), round(image.height * scale)))
            out = io.BytesIO()
            image.save(out, "PNG")
            variants.append(out.getvalue())
    return variants


class PhotoServer(harness.FileServer):
    """`GET /v<n>/<anything>.png` answers variant n."""

    def __init__(self, variants: list[bytes]) -> None:
        super().__init__(self._variant)
        self.variants = variants
        self.count = len(variants)
        self.start()

    def _variant(self, path: str) -> tuple[bytes, str] | None:
        match = re.match(r"^/v(\d+)/", path)
        if not match or int(match[1]) >= self.count:
            return None
        return self.variants[int(match[1])], "image/png"

    def src(self, variant: int, name: str) -> str:
        return f"{self.url}/v{variant % self.count}/{name}.png"


# --- the processes: Redis, and what a process manager keeps running ------------------------------------------


class RedisServer:
    """The benchmark's own redis-server; restarted keeping its data (SHUTDOWN SAVE) or losing it (SIGKILL)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = open(workdir / "redis.log", "ab")  # noqa: SIM115 - closed in stop()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir), "--dbfilename", "dump.rdb"],
            stdout=self.log, stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # also while it loads its dump
        client.close()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def keys(self) -> int:
        client = self.client()
        try:
            return int(client.dbsize())
        finally:
            client.close()

    def restart(self, *, keep: bool, down_s: float) -> tuple[int, int]:
        """Stop and start again; the number of keys before and after."""
        assert self.process is not None
        before = self.keys()
        if keep:
            client = self.client()
            client.shutdown(save=True)  # redis-py takes the dropped connection as the expected answer
            client.close()
        else:
            self.process.kill()
        self.process.wait(timeout=30)
        if not keep:
            (self.dir / "dump.rdb").unlink(missing_ok=True)  # a dump from an earlier kept restart
        time.sleep(down_s)
        self.start()
        return before, self.keys()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


@dataclass
class Supervised:
    """One long-running process of ours; started again by the manager whenever it exits."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    chaos_kill: bool = False  # the chaos loop killed it: its exit is not the process's own doing
    groups: list[int] = field(default_factory=list)  # every process group started, for the final clean-up
    kills: int = 0
    own_exits: list[int] = field(default_factory=list)  # exit codes when it stopped by itself
    starts: int = 0


class ProcessManager:
    """Starts the service's processes, restarts any that exits (like compose's restart policy), and kills
    workers on the chaos loop's demand: SIGKILL to the worker process only, as the kernel's OOM killer does."""

    def __init__(self, env: dict[str, str], workdir: Path, started: float) -> None:
        self.env, self.workdir, self.started = env, workdir, started
        self.procs: dict[str, Supervised] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.orphans_seen = 0
        self._thread = threading.Thread(target=self._watch, name="process-manager", daemon=True)

    def add(self, name: str, *args: str) -> Supervised:
        proc = Supervised(name, [*harness.CLI, *args], self.workdir / f"{name}.log")
        self.procs[name] = proc
        self._start(proc)
        return proc

    def _start(self, proc: Supervised) -> None:
        with open(proc.log_path, "ab") as out:
            # A session of its own: what the process forks (RQ's scheduler) can be found and cleaned up after.
            proc.process = subprocess.Popen(proc.argv, env=self.env, cwd=harness.ROOT, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        proc.groups.append(proc.process.pid)
        proc.starts += 1
        proc.chaos_kill = False

    def run(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(0.25):
            for proc in list(self.procs.values()):
                with self.lock:
                    code = proc.process.poll() if proc.process is not None else None
                    if code is None:
                        continue
                    if not proc.chaos_kill:
                        proc.own_exits.append(code)
                        log(self.started, f"{proc.name} exited by itself with code {code}; starting it again")
                    self._count_orphans(proc.process.pid if proc.process else 0)
                if self.stopping.wait(RESTART_DELAY_S):
                    return
                with self.lock:
                    self._start(proc)

    def _count_orphans(self, group: int) -> None:
        """Processes left behind in a dead process's group (RQ's scheduler child of a killed worker)."""
        left = [pid for pid in _group_members(group)]
        if left:
            self.orphans_seen += len(left)
            log(self.started, f"process group {group} still has {len(left)} process(es) after its leader died: "
                              f"{left} (left running, as they would be outside a container)")

    def kill(self, name: str) -> bool:
        with self.lock:
            proc = self.procs[name]
            if proc.process is None or proc.process.poll() is not None:
                return False
            proc.chaos_kill = True
            proc.kills += 1
            proc.process.send_signal(signal.SIGKILL)
            return True

    def all_running(self) -> bool:
        return all(p.process is not None and p.process.poll() is None for p in self.procs.values())

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        harness.stop_processes([p.process for p in self.procs.values() if p.process is not None], 20, kill_wait_s=10)
        for proc in self.procs.values():
            for group in proc.groups:  # the orphans we started, and only those
                try:
                    os.killpg(group, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = harness.proc_stat(entry.name)
        if fields is None:
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # pgrp; zombies are not running
            members.append(int(entry.name))
    return members


# --- the shops and what the load loop sends ------------------------------------------------------------------


@dataclass
class ShopInfo:
    platform: str
    id: int
    api_key: str
    secret: str


@dataclass
class ProductModel:
    """What the merchant's shop says about one product: its photos (id, src) and last change."""

    platform: str
    external_id: str
    title: str
    photos: list[tuple[int, str]]
    updated: dt.datetime
    number: int  # the Shopify product number or the WooCommerce product id


@dataclass
class Sent:
    kind: str  # create | new_photo | edit | resend | regenerate
    platform: str
    product: str
    status: int
    answer: dict[str, Any]
    attempts: int
    delivery: tuple[bytes, dict[str, str], str] | None = None  # body, headers, url: what a resend repeats


class Load:
    """The load loop: signed webhooks of every platform and regenerate calls, at `rate` a minute."""

    def __init__(self, base_url: str, shops: dict[str, ShopInfo], shopify: FakeShopify, woo: FakeWooCommerce,
                 photos: PhotoServer, rng: random.Random) -> None:
        self.base_url, self.shops, self.shopify, self.woo, self.photos = base_url, shops, shopify, woo, photos
        self.rng = rng
        self.products: list[ProductModel] = []
        self.sent: list[Sent] = []
        self.http = requests.Session()
        self.serial = 0

    # sending

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], int]:
        """POST until the app takes it (or SEND_ATTEMPTS): a 503 or a failed connection is delivered again."""
        status, answer = 0, {}
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                response = self.http.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
                status = response.status_code
                try:
                    answer = response.json()
                except ValueError:
                    answer = {"not_json": response.text[:200]}
            except requests.RequestException as exc:
                status, answer = 0, {"exception": type(exc).__name__}
            if status not in (0, 502, 503, 504):
                return status, answer, attempt
            time.sleep(1.0)
        return status, answer, SEND_ATTEMPTS

    def deliver(self, kind: str, product: ProductModel, body: bytes, headers: dict[str, str], url: str) -> None:
        status, answer, attempts = self.post(url, body, headers)
        self.sent.append(Sent(kind, product.platform, product.external_id, status, answer, attempts,
                              (body, headers, url)))

    # one step

    def step(self) -> None:
        kinds = list(WEIGHTS)
        kind = self.rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        if kind != "create" and not self.products:
            kind = "create"
        if kind == "resend":
            earlier = [s for s in self.sent if s.delivery is not None]
            if earlier:
                original = self.rng.choice(earlier)
                assert original.delivery is not None
                body, headers, url = original.delivery
                status, answer, attempts = self.post(url, body, headers)
                self.sent.append(Sent("resend", original.platform, original.product, status, answer, attempts))
                return
            kind = "create"
        if kind == "create":
            platform = self.rng.choice(["generic", "shopify", "woocommerce"])
            product = self.new_product(platform)
            self.send_product(product, "create")
            return
        product = self.rng.choice(self.products)
        if kind == "regenerate":
            self.regenerate(product)
            return
        if kind == "new_photo":
            self.serial += 1
            photo_id = self.new_photo_id(product)
            product.photos.insert(0, (photo_id, self.photos.src(self.rng.randrange(self.photos.count),
                                                                  f"new-{self.serial}")))
        else:
            product.title = f"{product.title.split(' #')[0]} #{self.rng.randrange(1000)}"
        self.send_product(product, kind)

    def new_product(self, platform: str) -> ProductModel:
        self.serial += 1
        n = self.serial
        title = f"Soak cup {n}"
        src = self.photos.src(n, f"p{n}")
        if platform == "shopify":
            number = 8_000_000 + n
            self.shopify.add_product(number, title)
            photo_id = 70_000_000 + n
            self.shopify.add_merchant_media(number, filename=f"IMG_{n}.png")
            product = ProductModel(platform, str(number), title, [(photo_id, src)], now(), number)
        elif platform == "woocommerce":
            front = self.woo.add_media(f"soak-{n}.png", b"merchant photo", alt="Front")
            number = self.woo.add_product(title, images=[front])
            product = ProductModel(platform, str(number), title, [(front, src)], now(), number)
        else:
            product = ProductModel(platform, str(500_000 + n), title, [(1, src)], now(), 0)
        self.products.append(product)
        return product

    def new_photo_id(self, product: ProductModel) -> int:
        if product.platform == "woocommerce":
            media = self.woo.add_media(f"soak-new-{self.serial}.png", b"new merchant photo")
            with self.woo._lock:  # the merchant adds the photo in front of the product's images
                self.woo.products[product.number].image_ids.insert(0, media)
            return media
        if product.platform == "shopify":
            self.shopify.add_merchant_media(product.number, filename=f"IMG_new_{self.serial}.png")
            return 71_000_000 + self.serial
        return 1000 + self.serial

    def send_product(self, product: ProductModel, kind: str) -> None:
        # The signed change time only moves forward, as the shop's own clock does.
        product.updated = max(now(), product.updated + dt.timedelta(seconds=1))
        shop = self.shops[product.platform]
        delivery = str(uuid.uuid4())
        merchant = [{"id": image_id, "src": src, "alt": ""} for image_id, src in product.photos]
        if product.platform == "generic":
            body = json.dumps({"event": "product.created" if kind == "create" else "product.updated", "product": {
                "id": product.external_id, "title": product.title, "images": merchant,
                "updated_at": product.updated.isoformat()}}).encode()
            headers = {"Content-Type": "application/json",
                       "X-Catalog-Signature": harness.generic_signature(shop.secret, body),
                       "X-Catalog-Delivery-Id": delivery}
            url = f"{self.base_url}/webhooks/generic/{shop.id}"
        elif product.platform == "shopify":
            # Shopify's product payload lists every image, ours included (with the CDN address of our file).
            ours = [{"id": int(m.id.rsplit("/", 1)[-1]), "src": m.cdn_url, "alt": m.alt or ""}
                    for m in self.shopify.product_media(product.number)
                    if KEY8.search(m.filename) and m.current_status == "READY"]
            body = json.dumps({"id": product.number, "title": product.title, "images": merchant + ours,
                               "updated_at": product.updated.isoformat()}).encode()
            digest = hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()
            headers = {"Content-Type": "application/json",
                       "X-Shopify-Topic": "products/create" if kind == "create" else "products/update",
                       "X-Shopify-Shop-Domain": self.shopify.shop_domain, "X-Shopify-Event-Id": delivery,
                       "X-Shopify-Webhook-Id": str(uuid.uuid4()), "X-Shopify-API-Version": "2026-10",
                       "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()}
            url = f"{self.base_url}/webhooks/shopify"
        else:
            # WooCommerce's payload lists the product's images as the store holds them, ours included.
            merchant_ids = {image_id for image_id, _src in product.photos}
            with self.woo._lock:
                held = list(self.woo.products[product.number].image_ids)
                ours = [{"id": m.id, "src": self.woo.url + UPLOADS + m.file_name, "name": m.title, "alt": m.alt_text}
                        for m in (self.woo.media[i] for i in held if i not in merchant_ids)]
            body = json.dumps({"id": product.number, "name": product.title, "images": merchant + ours,
                               "date_modified_gmt": product.updated.strftime("%Y-%m-%dT%H:%M:%S")}).encode()
            signature = base64.b64encode(hmac.new(shop.secret.encode(), body, hashlib.sha256).digest()).decode()
            headers = {"Content-Type": "application/json", "X-WC-Webhook-Signature": signature,
                       "X-WC-Webhook-Topic": "product.created" if kind == "create" else "product.updated",
                       "X-WC-Webhook-Delivery-ID": delivery, "X-WC-Webhook-Source": "http://soak-woo.example.com/"}
            url = f"{self.base_url}/webhooks/woocommerce/{shop.id}"
        self.deliver(kind, product, body, headers, url)

    def regenerate(self, product: ProductModel) -> None:
        shop = self.shops[product.platform]
        choice = self.rng.random()
        payload: dict[str, Any] = {} if choice < 0.5 else {"scenes": self.rng.sample(PRESETS, 2)}
        status, answer, attempts = self.post(
            f"{self.base_url}/api/v1/shops/{shop.id}/products/{product.external_id}/regenerate",
            json.dumps(payload).encode(),
            {"Authorization": f"Bearer {shop.api_key}", "Content-Type": "application/json"})
        self.sent.append(Sent("regenerate", product.platform, product.external_id, status, answer, attempts))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- chaos ---------------------------------------------------------------------------------------------------


class Chaos:
    """Every few seconds one of: SIGKILL a worker, restart Redis keeping or losing its data, throttle the stores."""

    ACTIONS = ["kill_worker", "redis_keep", "redis_lose", "throttle"]

    def __init__(self, manager: ProcessManager, redis_server: RedisServer, shopify: FakeShopify,
                 woo: FakeWooCommerce, rng: random.Random, started: float) -> None:
        self.manager, self.redis, self.shopify, self.woo, self.rng = manager, redis_server, shopify, woo, rng
        self.started = started
        self.done: collections.Counter[str] = collections.Counter()
        self.redis_keys: list[tuple[str, int, int]] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join()

    def _run(self) -> None:
        plan: list[str] = []
        while not self.stop.wait(self.rng.uniform(*CHAOS_PAUSE_S)):
            if not plan:  # every kind in every round, in a random order; kills twice as often
                plan = self.ACTIONS + ["kill_worker"]
                self.rng.shuffle(plan)
            action = plan.pop()
            try:
                getattr(self, action)()
                self.done[action] += 1
            except Exception as exc:  # the benchmark's own failure: say it, keep going
                log(self.started, f"chaos {action} failed: {exc!r}")

    def kill_worker(self) -> None:
        names = [f"worker-{n + 1}" for n in range(WORKERS)]
        self.rng.shuffle(names)
        for name in names:  # one that is running (the other may be between a kill and its restart)
            if self.manager.kill(name):
                log(self.started, f"chaos: SIGKILL {name}")
                return
        raise RuntimeError("no worker was running to kill")

    def redis_keep(self) -> None:
        down = self.rng.uniform(*REDIS_DOWN_S)
        before, after = self.redis.restart(keep=True, down_s=down)
        self.redis_keys.append(("kept", before, after))
        log(self.started, f"chaos: Redis restarted keeping its data ({down:.1f} s down; keys {before} -> {after})")

    def redis_lose(self) -> None:
        down = self.rng.uniform(*REDIS_DOWN_S)
        before, after = self.redis.restart(keep=False, down_s=down)
        self.redis_keys.append(("lost", before, after))
        log(self.started, f"chaos: Redis killed and restarted empty ({down:.1f} s down; keys {before} -> {after})")

    def throttle(self) -> None:
        """For THROTTLE_S, keep a few refusals queued at each store (the fakes script failures by count)."""
        log(self.started, f"chaos: the stores answer 429/503/THROTTLED for {THROTTLE_S:.0f} s")
        deadline = time.monotonic() + THROTTLE_S
        while time.monotonic() < deadline and not self.stop.is_set():
            with self.shopify._lock:
                shopify_backlog = len(self.shopify._http_script) + self.shopify._throttles
            if shopify_backlog < 2:
                self.shopify.http_error(self.rng.choice([429, 503]), 1, retry_after=1)
                self.shopify.throttle(1)
            with self.woo._lock:
                woo_backlog = len(self.woo._failures)
            if woo_backlog < 2:
                self.woo.fail_next(1, status=self.rng.choice([429, 503]), retry_after="1")
            time.sleep(0.2)


# --- set-up and checks ---------------------------------------------------------------------------------------


def add_shops(env: dict[str, str], shopify: FakeShopify, woo: FakeWooCommerce) -> dict[str, ShopInfo]:
    shops = {}
    for platform, extra in (
        ("generic", ["--domain", "soak-generic.example.com"]),
        ("shopify", ["--domain", shopify.shop_domain, "--access-token", shopify.access_token,
                     "--api-base-url", shopify.url]),
        ("woocommerce", ["--domain", "soak-woo.example.com", "--api-base-url", woo.url,
                         "--consumer-key", woo.consumer_key, "--consumer-secret", woo.consumer_secret,
                         "--wp-user", woo.wp_user, "--wp-app-password", woo.wp_app_password]),
    ):
        answer = json.loads(harness.run_cli(env, "shops", "add", "--platform", platform, *extra, "--json",
                                            timeout_s=CLI_TIMEOUT_S))
        # A Shopify shop has no webhook secret of its own: Shopify signs with the app's secret.
        shops[platform] = ShopInfo(platform, int(answer["id"]), answer["api_key"], answer.get("webhook_secret", ""))
    return shops


@dataclass
class State:
    """What the database holds, read in one go."""

    renders: dict[int, tuple[int, str, str, str | None]]  # id -> (product row id, status, trigger, last_error)
    assets: list[tuple[int, int, str, str, str | None]]  # (asset id, render id, key, push status, push error)
    products: dict[int, tuple[str, str]]  # row id -> (platform, external id)
    deliveries: list[tuple[str, str, int | None]]  # (platform, outcome, render id)
    queues: dict[str, int]
    details: dict[int, str] = field(default_factory=dict)  # render id -> what is known of a waiting render


def read_state(url: str, redis_server: RedisServer) -> State:
    from sqlalchemy import create_engine, select

    from catalog_service.models import Asset, Delivery, Product, Render, RenderStatus, Shop

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            renders = {row.id: (row.product_id, row.status.value, row.trigger, row.last_error)
                       for row in connection.execute(
                           select(Render.id, Render.product_id, Render.status, Render.trigger, Render.last_error))}
            assets = [(row.id, row.render_id, row.storage_key.rsplit("/", 1)[-1].split(".")[0],
                       row.push_status.value, row.push_error)
                      for row in connection.execute(select(Asset.id, Asset.render_id, Asset.storage_key,
                                                           Asset.push_status, Asset.push_error))]
            waiting = connection.execute(
                select(Render.id, Render.attempts, Render.updated_at, Render.heartbeat_at)
                .where(Render.status.in_([RenderStatus.QUEUED, RenderStatus.RUNNING]))).all()
            products = {row.id: (row.platform.value, row.external_id) for row in connection.execute(
                select(Product.id, Product.external_id, Shop.platform).join(Shop, Shop.id == Product.shop_id))}
            deliveries = [(row.platform.value, row.outcome, row.render_id) for row in connection.execute(
                select(Delivery.platform, Delivery.outcome, Delivery.render_id))]
    finally:
        engine.dispose()
    from rq import Queue
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry

    queues: dict[str, int] = {}
    details: dict[int, str] = {}
    try:
        client = redis_server.client()
        for name in ("renders", "pushes"):
            # Sizes read straight from the registries' keys: their count() would clean them up, which is
            # the sweeper's work and not the benchmark's.
            queues[name] = int(Queue(name, connection=client).count)
            queues[f"{name} started"] = int(client.zcard(StartedJobRegistry(name, connection=client).key))
            queues[f"{name} scheduled"] = int(client.zcard(ScheduledJobRegistry(name, connection=client).key))
        for row in waiting:
            details[row.id] = (f"attempts {row.attempts}, updated {row.updated_at:%H:%M:%S}, heartbeat "
                               f"{row.heartbeat_at and f'{row.heartbeat_at:%H:%M:%S}'}, RQ job "
                               f"{job_status(client, f'render-{row.id}')}")
        client.close()
    except redis.RedisError as exc:
        queues["error"] = 1
        print(f"Redis could not be read: {exc!r}")
    return State(renders, assets, products, deliveries, queues, details)


def job_status(client: redis.Redis, job_id: str) -> str:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq.serializers import JSONSerializer

    try:
        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    except NoSuchJobError:
        return "gone"
    return f"{job.get_status(refresh=False)}, worker {job.worker_name or '-'}"


def settled(state: State) -> bool:
    return (not any(status in ("queued", "running") for _p, status, _t, _e in state.renders.values())
            and not any(status in ("pending", "removing") for _a, _r, _k, status, _e in state.assets))


def shop_holdings(shopify: FakeShopify, woo: FakeWooCommerce, folder: Path,
                  shops: dict[str, ShopInfo]) -> tuple[dict[tuple[str, str], collections.Counter[str]], list[str]]:
    """What each store holds of ours, per (platform, product): key (8 hex for WooCommerce) -> copies; problems."""
    held: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    problems = []
    with shopify._lock:
        products = dict(shopify.products)
    for gid, record in products.items():
        for media in record.media_list:
            match = KEY8.search(media.filename)
            if match:
                held[("shopify", gid.rsplit("/", 1)[-1])][match[1]] += 1
                # The fake moves a media to READY only when someone reads its status; PROCESSING is a push
                # that has not looked yet (stuck, if anything: the checks on assets say so), FAILED a real loss.
                if media.current_status == "FAILED":
                    problems.append(f"Shopify media {media.id} of {gid} is FAILED")
    with woo._lock:
        for product_id, product in woo.products.items():
            for image_id in product.image_ids:
                match = KEY8.search(woo.media[image_id].file_name)
                if match:
                    held[("woocommerce", str(product_id))][match[1]] += 1
        # The media library: an upload that never reached a product is a copy on the shop all the same.
        library: collections.Counter[tuple[str, str]] = collections.Counter()
        for media in woo.media.values():
            match = KEY8.search(media.file_name)
            if match:
                library[(media.file_name.split("-", 1)[0], match[1])] += 1
    for (product_id, key8), copies in library.items():
        if copies > 1:
            problems.append(f"WooCommerce media library holds {copies} uploads of {key8} for product {product_id}")
    for manifest in (folder / f"shop-{shops['generic'].id}").glob("*/manifest.json"):
        entries = json.loads(manifest.read_text())["assets"]
        for entry in entries:
            held[("generic", manifest.parent.name)][entry["key"]] += 1
            if not (manifest.parent / entry["filename"]).is_file():
                problems.append(f"folder store: {manifest.parent.name}/{entry['filename']} is listed but missing")
    for fake in (shopify, woo):
        if fake.errors:
            problems.append(f"{fake.name} recorded {len(fake.errors)} protocol error(s): {fake.errors[0][:300]}")
    return held, problems


def check(state: State, load: Load, held: dict[tuple[str, str], collections.Counter[str]],
          store_problems: list[str]) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []
    answered = [s for s in load.sent if s.kind != "regenerate"]
    # 1. deliveries: every one answered 200, recorded once, its render there and finished
    bad_answers = [s for s in answered if s.status != 200]
    accepted = [s for s in answered if s.status == 200 and s.answer.get("outcome") != "duplicate"]
    results.append(("every delivery answered 200 (after a shop's retries of 503s)", not bad_answers,
                    f"{len(answered) - len(bad_answers)} of {len(answered)}"
                    + (f"; e.g. {bad_answers[0].status} {bad_answers[0].answer}" if bad_answers else "")))
    results.append(("one Delivery row per accepted delivery", len(state.deliveries) == len(accepted),
                    f"{len(state.deliveries)} rows, {len(accepted)} accepted deliveries"))
    expected = {int(s.answer["render_id"]) for s in load.sent if s.status in (200, 202) and s.answer.get("render_id")}
    expected |= {render_id for _p, _o, render_id in state.deliveries if render_id}
    missing = sorted(r for r in expected if r not in state.renders)
    unfinished = sorted(r for r in expected if r in state.renders and state.renders[r][1] != "succeeded")
    results.append(("every delivery's and regenerate's render exists and succeeded", not missing and not unfinished,
                    f"{len(expected)} renders; missing {missing[:10]}; not succeeded "
                    + ", ".join(f"{r}={state.renders[r][1]} ({state.renders[r][3]})" for r in unfinished[:5])))
    loops = [s for s in load.sent if s.kind == "edit" and s.answer.get("outcome") == "render"]
    results.append(("an edit that changes no photo starts no render (our own images are recognised)", not loops,
                    f"{len(loops)} of {sum(1 for s in load.sent if s.kind == 'edit')} edits rendered"
                    + (f"; e.g. {loops[0].platform} product {loops[0].product}" if loops else "")))
    errors_500 = [s for s in load.sent if s.status >= 500 and s.status not in (502, 503, 504)]
    example = f"; e.g. {errors_500[0].kind}: {errors_500[0].answer}" if errors_500 else ""
    results.append(("no answer was a 500", not errors_500, f"{len(errors_500)}{example}"))
    # 2. assets: pushed, and on the shop exactly once
    by_render: dict[int, list[tuple[int, str, str, str | None]]] = collections.defaultdict(list)
    for asset_id, render_id, key, status, error in state.assets:
        by_render[render_id].append((asset_id, key, status, error))
    not_pushed = [(a, status, error) for render_id, items in by_render.items()
                  if state.renders[render_id][1] == "succeeded"
                  for a, _key, status, error in items if status != "pushed"]
    results.append(("every asset of every succeeded render is pushed", not not_pushed,
                    f"{sum(len(v) for v in by_render.values())} assets; not pushed: "
                    + ", ".join(f"{a}={s} ({e})" for a, s, e in not_pushed[:5])))
    wanted: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for _asset_id, render_id, key, status, _error in state.assets:
        if status == "pushed":
            platform, external_id = state.products[state.renders[render_id][0]]
            wanted[(platform, external_id)].add(key[:8] if platform in ("woocommerce", "shopify") else key)
    duplicates = [f"{p}/{prod}: {k} x{n}" for (p, prod), keys in held.items() for k, n in keys.items() if n > 1]
    absent = [f"{p}/{prod}: {k}" for (p, prod), keys in wanted.items() for k in keys if not held[(p, prod)][k]]
    extra = [f"{p}/{prod}: {k}" for (p, prod), keys in held.items() for k in keys if k not in wanted[(p, prod)]]
    total = sum(sum(keys.values()) for keys in held.values())
    results.append(("every pushed asset is on its shop's product exactly once", not (duplicates or absent or extra),
                    f"{total} of our images on {len(held)} products; duplicates {duplicates[:5]}, missing "
                    f"{absent[:5]}, unknown to the database {extra[:5]}"))
    results.append(("the stores hold nothing broken (no FAILED media, no duplicate upload in the media library)",
                    not store_problems, "; ".join(store_problems[:5]) or "ok"))
    # 3. nothing stuck
    stuck_renders = sorted(r for r, (_p, status, _t, _e) in state.renders.items() if status in ("queued", "running"))
    stuck_assets = sorted(a for a, _r, _k, status, _e in state.assets if status in ("pending", "removing"))
    busy = {name: n for name, n in state.queues.items() if n}
    results.append(("nothing stuck: no render queued or running, no asset pending, RQ queues empty",
                    not (stuck_renders or stuck_assets or busy),
                    f"renders {stuck_renders[:10]}, assets {stuck_assets[:10]}, Redis {busy or 'empty'}"))

    return results


# --- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="how long the load and the chaos run")
    parser.add_argument("--drain", type=float, default=240.0,
                        help="seconds the system gets afterwards to settle (it stops as soon as it has)")
    parser.add_argument("--rate", type=float, default=30.0, help="webhooks and API calls a minute")
    parser.add_argument("--seed", type=int, default=None, help="the random choices' seed (printed)")
    parser.add_argument("--database", choices=["auto", "postgresql", "sqlite"], default="auto",
                        help=f"auto: PostgreSQL when one answers at {harness.POSTGRES_URL}, else SQLite")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (it is kept on FAIL anyway)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    started = time.monotonic()

    workdir = Path(tempfile.mkdtemp(prefix="catalog-soak-"))
    url, schema = harness.database_for_run(workdir, "soak", args.database)
    redis_server = RedisServer(workdir)
    redis_server.start()
    web_port = free_port()
    env = harness.service_env(workdir, url, redis_server.url, "soak-secret-key", {
        "CATALOG_SHOPIFY_API_SECRET": SHOPIFY_SECRET, "CATALOG_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        "CATALOG_LOG_LEVEL": "INFO", "CATALOG_LOG_FORMAT": "text", "PYTHONPATH": str(harness.ROOT)})
    env.pop("OPENAI_API_KEY", None)
    shopify, woo = FakeShopify(ready_after_polls=1).start(), FakeWooCommerce().start()
    photos = PhotoServer(photo_variants())
    manager = ProcessManager(env, workdir, started)
    print(f"soak: seed {seed}, {args.minutes:g} min of load at {args.rate:g}/min, database "
          f"{'PostgreSQL' if schema else 'SQLite'}, work directory {workdir}", flush=True)
    passed = False
    try:
        harness.run_cli(env, "db", "upgrade", timeout_s=CLI_TIMEOUT_S)
        shops = add_shops(env, shopify, woo)
        manager.add("web", "serve", "--host", "127.0.0.1", "--port", str(web_port), "--workers", "2")
        for n in range(WORKERS):
            manager.add(f"worker-{n + 1}", "worker")
        manager.add("sweeper", "sweeper", "--interval", "5")
        harness.wait_for_port(web_port, 60)
        manager.run()
        load = Load(f"http://127.0.0.1:{web_port}", shops, shopify, woo, photos, rng)
        chaos = Chaos(manager, redis_server, shopify, woo, random.Random(seed + 1), started)
        log(started, "load and chaos start")
        chaos.start()
        load_end = time.monotonic() + 60 * args.minutes
        next_at = time.monotonic()
        while time.monotonic() < load_end:
            load.step()
            next_at += rng.expovariate(args.rate / 60)
            time.sleep(max(0.0, next_at - time.monotonic()))
        chaos.join()
        log(started, f"load and chaos stop: {len(load.sent)} requests sent, chaos {dict(chaos.done)}; draining")

        drain_end = time.monotonic() + args.drain
        drain_started = time.monotonic()
        while True:
            state = read_state(url, redis_server)
            if settled(state) and not any(state.queues.values()) and manager.all_running():
                break
            if time.monotonic() > drain_end:
                log(started, "drain time is up")
                break
            time.sleep(2)
        settle_s = time.monotonic() - drain_started
        log(started, f"settled after {settle_s:.0f} s of drain" if settled(state) else "not settled")
        with open(workdir / "sent.jsonl", "w") as out:  # what was sent and answered, for the post-mortem
            for item in load.sent:
                out.write(json.dumps({"kind": item.kind, "platform": item.platform, "product": item.product,
                                      "status": item.status, "answer": item.answer,
                                      "attempts": item.attempts}) + "\n")
        held, store_problems = shop_holdings(shopify, woo, workdir / "store", shops)
        results = check(state, load, held, store_problems)
        report(load, state, chaos, manager, redis_server, held, workdir, settle_s)
        print("checks:")
        for name, ok, detail in results:
            print(f"  {harness.verdict(ok)}  {name}: {detail}")
        passed = all(ok for _name, ok, _detail in results)
        print(harness.verdict(passed), flush=True)
    finally:
        manager.stop()
        redis_server.stop()
        photos.stop()
        shopify.stop()
        woo.stop()
        if schema:
            harness.drop_schema(schema)
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir} (logs: web.log, worker-*.log, sweeper.log, redis.log; "
                  "sent.jsonl: every request and its answer)")
    if not passed:
        sys.exit(1)


def report(load: Load, state: State, chaos: Chaos, manager: ProcessManager, redis_server: RedisServer,
           held: dict[tuple[str, str], collections.Counter[str]], workdir: Path, settle_s: float) -> None:
    sent = collections.Counter((s.kind, s.platform) for s in load.sent)
    print("sent (kind x platform):")
    for kind in WEIGHTS:
        row = {p: sent[(kind, p)] for p in ("generic", "shopify", "woocommerce")}
        print(f"  {kind:<11} " + "  ".join(f"{p} {n:>3}" for p, n in row.items()))
    answers = collections.Counter(f"{s.status} {s.answer.get('outcome', '')}".strip() for s in load.sent)
    print(f"answers: {dict(sorted(answers.items()))}")
    retried = [s.attempts for s in load.sent if s.attempts > 1]
    print(f"sent again after a 503 or no connection: {len(retried)} requests ({sum(retried) - len(retried)} resends)")
    unqueued = sum(1 for s in load.sent if s.answer.get("queued") is False)
    print(f"answered with the job not queued (Redis away): {unqueued}")
    print(f"Delivery rows: {len(state.deliveries)}; by outcome "
          f"{dict(collections.Counter(o for _p, o, _r in state.deliveries))}")
    print(f"renders: {len(state.renders)}; by status "
          f"{dict(collections.Counter(s for _p, s, _t, _e in state.renders.values()))}; by trigger "
          f"{dict(collections.Counter(t for _p, _s, t, _e in state.renders.values()))}")
    print(f"assets: {len(state.assets)}; by push status "
          f"{dict(collections.Counter(s for _a, _r, _k, s, _e in state.assets))}")
    per_platform: collections.Counter[str] = collections.Counter()
    for (platform, _product), keys in held.items():
        per_platform[platform] += sum(keys.values())
    print(f"our images on the shops: {dict(per_platform)} on {len(held)} products")
    print(f"chaos: {dict(chaos.done)}; Redis restarts (kept/lost, keys before -> after): {chaos.redis_keys}")
    for proc in manager.procs.values():
        print(f"  {proc.name:<9} started {proc.starts}x, killed by chaos {proc.kills}x, "
              f"exited by itself {len(proc.own_exits)}x {proc.own_exits or ''}")
    print(f"processes left behind in a dead process's group (RQ scheduler children): {manager.orphans_seen}")
    sweeps = re.findall(r"sweep renders=(\d+) pushes=(\d+) given_up=(\d+)", _read(workdir / "sweeper.log"))
    print(f"sweeper: {len(sweeps)} sweeps, re-queued {sum(int(r) for r, _p, _g in sweeps)} renders and "
          f"{sum(int(p) for _r, p, _g in sweeps)} pushes, gave up on {sum(int(g) for _r, _p, g in sweeps)}")
    for render_id, detail in sorted(state.details.items())[:10]:
        print(f"waiting render {render_id}: {detail}")
    print(f"drain: {'settled after' if settled(state) else 'not settled after'} {settle_s:.0f} s")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    main()
