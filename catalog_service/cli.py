"""The `catalog-service` command."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select

from .config import Config, ConfigError

if TYPE_CHECKING:
    from flask import Flask

    from .services import Services


def _app(overrides: dict[str, Any] | None = None) -> Flask:
    from .app import create_app

    try:
        return create_app(Config.load(overrides))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _services(overrides: dict[str, Any] | None = None) -> Services:
    """The process's services, for commands that need no web app (worker, sweeper, shops, renders)."""
    from . import services

    try:
        return services.build(Config.load(overrides))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(help="E-commerce catalog plugin: cutouts and lifestyle scenes for shop products.")
def main() -> None:
    pass


@main.command()
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="product photo to use")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"),
              show_default=True, help="where the folder store writes the results")
def demo(image: Path | None, out_dir: Path) -> None:
    """The whole path on one machine, no keys: a signed webhook in, cutout and scenes out in OUT."""
    from .demo import run_demo

    sys.exit(run_demo(image=image, out_dir=out_dir, echo=click.echo))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Run the web app under gunicorn (an unset CATALOG_PUBLIC_URL follows --port)."""
    from gunicorn.app.base import BaseApplication

    from .app import freeze_for_workers

    app = _app({"serve_port": port})
    config: Config = app.config["CATALOG"]
    freeze_for_workers()
    # gunicorn (25.1 and later) opens one control socket per user by default; two serves on one machine
    # would take it from each other, so each gets its own under var/, named by its port.
    control_socket = (Path(config.var_dir) / f"gunicorn-{port}.ctl").resolve()

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("timeout", 30)
            if "control_socket" in self.cfg.settings:
                control_socket.parent.mkdir(parents=True, exist_ok=True)
                self.cfg.set("control_socket", str(control_socket))

        def load(self) -> Any:  # the Flask app; gunicorn's stubs want a WSGI callable Flask does not spell out
            return app

    _Gunicorn().run()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def up(host: str, port: int) -> None:
    """For a local trial: migrate the database, then run the web app, one worker and the sweeper together.

    Ctrl-C (or SIGTERM) stops all three; so does any of them ending. In production, run `serve`, `worker`
    and `sweeper` under a supervisor instead.
    """
    import os

    from .local_trial import child_commands, run_together

    svc = _services({"serve_port": port})
    config = svc.config
    try:
        svc.db.upgrade()
        click.echo(f"database at head: {svc.db.engine.url.render_as_string(hide_password=True)}")
    finally:
        svc.close()
    # The worker writes links into what it pushes: it must use the same public URL as the web app.
    env = {**os.environ, "CATALOG_PUBLIC_URL": config.public_url}
    click.echo(f"web app on http://{host}:{port} (public URL {config.public_url}), one worker, the sweeper; "
               "Ctrl-C stops all three")
    sys.exit(run_together(child_commands(host, port), env, echo=click.echo))


@main.command()
@click.option("--burst", is_flag=True, help="stop when the queues are empty")
@click.option("--queues", default="renders,pushes,backfill", show_default=True,
              help="comma-separated queue names, taken in this order")
def worker(burst: bool, queues: str) -> None:
    """An RQ worker on the render, push and backfill queues, with the cutout model loaded once."""
    from jobs.queues import ALL_QUEUES
    from jobs.worker import run_worker

    names = tuple(name.strip() for name in queues.split(",") if name.strip())
    unknown = set(names) - set(ALL_QUEUES)
    if unknown:
        raise click.BadParameter(f"unknown queue(s): {', '.join(sorted(unknown))}", param_hint="--queues")
    run_worker(_services(), names, burst=burst)


@main.command()
@click.option("--once", is_flag=True, help="sweep once and exit, 1 when the sweep could not run (for cron)")
@click.option("--interval", default=60.0, show_default=True, type=click.FloatRange(1, 3600),
              help="seconds between sweeps")
def sweeper(once: bool, interval: float) -> None:
    """Queue again the renders and pushes whose RQ job was lost (Redis down or flushed, a worker killed)."""
    from jobs.sweeper import run_sweeper

    if not run_sweeper(_services(), interval_s=interval, once=once):
        sys.exit(1)  # --once under cron: a sweep that could not run is a failed run


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "output", type=click.Path(dir_okay=False, path_type=Path), help="output file (one input only)")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), help="directory for the outputs")
@click.option("--white", is_flag=True, help="also write a white-background JPEG")
@click.option("--max-side", default=None, type=click.IntRange(16, 8192), help="longest side of the output")
@click.option("--format", "fmt", default="png", show_default=True, type=click.Choice(["png", "webp"]))
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="snap the model's mask to the photo's edges and clean the old background out of them")
@click.option("--keep-shadow", is_flag=True, help="keep the product's own contact shadow in the transparent cutout")
def cutout(inputs: tuple[Path, ...], output: Path | None, out_dir: Path | None, white: bool,
           max_side: int | None, fmt: str, refine: bool, keep_shadow: bool) -> None:
    """Cut out local photos, loading the model once for the whole batch."""
    from .imaging.cutout import CutoutOptions, encode_cutout, get_session, remove_background, white_variant
    from .imaging.encode import encode
    from .imaging.errors import ImageRejected

    if output is not None and (len(inputs) > 1 or out_dir is not None):
        raise click.UsageError("-o takes one input and no --out-dir; use --out-dir for several inputs")
    config = Config.load()
    options = CutoutOptions(max_side=max_side or config.cutout_max_side, refine=refine, keep_shadow=keep_shadow)
    session = get_session(config.cutout_model, config.model_dir)
    failed = 0
    for path in inputs:
        target = output or (out_dir or path.parent) / f"{path.stem}.cutout.{fmt}"
        try:
            result = remove_background(path.read_bytes(), session, options, max_pixels=config.max_pixels)
        except ImageRejected as exc:
            failed += 1
            click.echo(f"{path}: {exc}", err=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_cutout(result, fmt))
        click.echo(f"{path} -> {target} ({result.image.width}x{result.image.height})")
        if white:
            white_path = target.with_name(f"{path.stem}.white.jpg")
            white_path.write_bytes(encode(white_variant(result.product, options), "jpeg", quality=92))
            click.echo(f"{path} -> {white_path}")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("shop_id", type=int)
@click.option("--dry-run", is_flag=True, help="estimate only: the backfill waits to be started")
@click.option("--scenes", default="", help="comma-separated preset names (default: the shop's scene_presets)")
@click.option("--product-type", default="", help="only products of this type")
@click.option("--vendor", default="", help="only products of this vendor")
@click.option("--tag", default="", help="only products with this tag")
@click.option("--collection", default="", help="Shopify: only products in this collection (id or handle)")
@click.option("--status", default="active", show_default=True,
              type=click.Choice(["active", "draft", "archived", "any"]))
@click.option("--created-since", default=None, type=click.DateTime(), help="only products created since (UTC)")
@click.option("--without-our-images", is_flag=True, help="only products that carry none of our images yet")
@click.option("--wait/--no-wait", default=True, show_default=True, help="show progress until the backfill ends")
def backfill(shop_id: int, dry_run: bool, scenes: str, product_type: str, vendor: str, tag: str, collection: str,
             status: str, created_since: dt.datetime | None, without_our_images: bool, wait: bool) -> None:
    """Render a shop's existing catalog: collected and estimated first, then done by the workers."""
    from jobs.backfill import collect_backfill, progress_of

    from . import backfills, services
    from .models import Shop

    svc = _services()
    services.install(svc)
    from .stores.catalog import CatalogFilters

    try:
        filters = CatalogFilters(
            product_type=product_type, vendor=vendor, tag=tag, collection=collection, status=status,
            without_our_images=without_our_images,
            created_since=created_since.replace(tzinfo=dt.UTC) if created_since else None).to_dict()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        with svc.db.transaction() as session:
            shop = session.get(Shop, shop_id)
            if shop is None:
                raise click.ClickException(f"No shop {shop_id}.")
            created = backfills.create(session, shop, filters=filters, dry_run=dry_run,
                                       scenes=[name.strip() for name in scenes.split(",") if name.strip()])
            backfill_id = created.id
    except backfills.BackfillError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Backfill {backfill_id}: reading the catalog of shop {shop_id}...")
    collect_backfill(backfill_id)
    shown = progress_of(backfill_id)
    estimate = shown["estimate"] or {}
    if shown["status"] == "failed":
        raise click.ClickException(f"Backfill {backfill_id} failed: {shown['error']}")
    click.echo(f"{estimate.get('products', 0)} products to do ({shown['skipped']} skipped), "
               f"{estimate.get('images', 0)} photos, {estimate.get('scenes', 0)} scenes: "
               f"about ${estimate.get('cost_usd', 0):.2f} and {_duration(estimate.get('time_s', 0))} on one worker.")
    if dry_run:
        click.echo(f"Dry run: start it with POST /api/v1/shops/{shop_id}/backfills/{backfill_id}/start.")
        return
    if not wait or shown["status"] != "running":
        click.echo(f"Backfill {backfill_id} is {shown['status']}.")
        return
    with click.progressbar(length=shown["total"] - shown["skipped"], label="Rendering", show_pos=True) as bar:
        finished = 0
        while shown["status"] == "running":
            time.sleep(1.0)
            shown = progress_of(backfill_id)
            bar.update(shown["done"] + shown["failed"] - finished)
            finished = shown["done"] + shown["failed"]
    click.echo(f"Backfill {backfill_id} {shown['status']}: {shown['done']} done, {shown['failed']} failed, "
               f"{shown['skipped']} skipped, ${shown['cost_usd']:.2f} spent."
               + (f" {shown['pause_reason']}" if shown["pause_reason"] else ""))


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{seconds:.0f} s" if seconds < 120 else f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


@main.group()
def renders() -> None:
    """Renders: one run of the pipeline for one product."""


@renders.command("list")
@click.option("--shop", "shop_id", type=int, help="only this shop")
@click.option("--product", "product_id", help="only this product (the shop's product id)")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def renders_list(shop_id: int | None, product_id: str | None, limit: int, as_json: bool) -> None:
    """Renders with status, errors and assets, newest first."""
    from .models import Product, Render

    svc = _services()
    with svc.db.transaction() as session:
        query = select(Render).join(Product).order_by(Render.id.desc()).limit(limit)
        if shop_id is not None:
            query = query.where(Render.shop_id == shop_id)
        if product_id is not None:
            query = query.where(Product.external_id == product_id)
        from .presenters import render_json

        rows = [render_json(render, svc.config) for render in session.scalars(query)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no renders")
        return
    click.echo(f"{'id':>5}  {'shop':>4}  {'product':<16} {'status':<10} {'assets':<40} error")
    for row in rows:
        assets = ", ".join(f"{a['kind']}{'/' + a['preset'] if a['preset'] else ''}" for a in row["assets"])
        click.echo(f"{row['id']:>5}  {row['shop_id']:>4}  {row['product_id']:<16} {row['status']:<10} "
                   f"{assets[:40]:<40} {row['error'] or ''}")


@main.group()
def models() -> None:
    """The cutout model."""


@models.command("install")
def models_install() -> None:
    """Put the offline cutout model (u2netp) where rembg finds it, without internet."""
    from .model_install import ModelInstallError, install_offline_model

    config = Config.load()
    try:
        path, installed = install_offline_model(config.model_dir)
    except ModelInstallError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'installed' if installed else 'already installed'}: {path}")


@main.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Run the migrations up to the newest revision."""
    svc = _services()
    svc.db.upgrade()
    click.echo(f"database at head: {svc.db.engine.url.render_as_string(hide_password=True)}")


@main.group()
def shops() -> None:
    """Shops (tenants)."""


@shops.command("add")
@click.option("--platform", required=True, type=click.Choice(["shopify", "woocommerce", "generic", "folder"]))
@click.option("--domain", required=True, help="the shop's domain, e.g. example.myshopify.com")
@click.option("--name", default="", help="a display name")
@click.option("--access-token", default=None, help="the shop's API token (stored encrypted)")
@click.option("--webhook-secret", default=None, help="the secret the shop signs webhooks with (default: a new one)")
@click.option("--api-base-url", default=None, help="the shop's API at another address (tests, staging)")
@click.option("--callback-url", default=None, help="generic shops: where to announce ready assets")
@click.option("--consumer-key", default=None, help="WooCommerce REST consumer key (stored encrypted)")
@click.option("--consumer-secret", default=None, help="WooCommerce REST consumer secret (stored encrypted)")
@click.option("--wp-user", default=None, help="WordPress user for media uploads")
@click.option("--wp-app-password", default=None, help="that user's WordPress application password (stored encrypted)")
@click.option("--register-webhooks", is_flag=True,
              help="woocommerce: create the product webhooks in the store, pointing at CATALOG_PUBLIC_URL")
@click.option("--json", "as_json", is_flag=True,
              help='print {"id": ..., "api_key": ..., "webhook_secret": ...} (no webhook_secret for Shopify)')
def shops_add(platform: str, domain: str, name: str, access_token: str | None, webhook_secret: str | None,
              api_base_url: str | None, callback_url: str | None, consumer_key: str | None,
              consumer_secret: str | None, wp_user: str | None, wp_app_password: str | None,
              register_webhooks: bool, as_json: bool) -> None:
    """Add a shop; prints its API key (stored hashed) and webhook secret (but Shopify's: see below) once.

    Shopify signs its webhooks with the app's secret (CATALOG_SHOPIFY_API_SECRET), never a shop's own.
    """
    from .shops import ShopExists, create_shop

    shopify = platform == "shopify"
    if shopify and webhook_secret is not None:
        raise click.BadParameter("Shopify signs webhooks with the app's secret (CATALOG_SHOPIFY_API_SECRET), "
                                 "not a shop's own", param_hint="--webhook-secret")
    svc = _services()
    try:
        with svc.db.transaction() as session:
            shop, api_key, secret = create_shop(
                session, platform=platform, domain=domain, name=name, webhook_secret=webhook_secret,
                access_token=access_token, api_base_url=api_base_url, callback_url=callback_url,
                credentials={name: value for name, value in (
                    ("consumer_key", consumer_key), ("consumer_secret", consumer_secret),
                    ("wp_user", wp_user), ("wp_app_password", wp_app_password)) if value},
            )
    except (ShopExists, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    webhook_ids: list[int] = []
    if register_webhooks:
        webhook_ids = _register_woocommerce_webhooks(svc, shop.id, secret)
    if as_json:
        click.echo(json.dumps({"id": shop.id, "api_key": api_key, **({} if shopify else {"webhook_secret": secret}),
                               **({"webhook_ids": webhook_ids} if register_webhooks else {})}))
    elif shopify:
        app_secret = "is set" if svc.config.shopify_api_secret else "is NOT set: set it, or its webhooks are refused"
        click.echo(f"shop {shop.id} ({platform} {domain})\napi key: {api_key}\nkeep it: it is not shown again\n"
                   f"webhooks: Shopify signs them with the app's secret; CATALOG_SHOPIFY_API_SECRET {app_secret}")
    else:
        click.echo(f"shop {shop.id} ({platform} {domain})\napi key: {api_key}\nwebhook secret: {secret}\n"
                   "keep both: they are not shown again")


def _register_woocommerce_webhooks(svc: Services, shop_id: int, secret: str) -> list[int]:
    from .connectors import connector_for
    from .models import Platform, Shop
    from .stores.base import StoreError
    from .stores.woocommerce import WooCommerceStore

    config = svc.config
    with svc.db.transaction() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.platform != Platform.WOOCOMMERCE:
            raise click.UsageError("--register-webhooks is for WooCommerce shops")
        try:
            store = connector_for(shop, config)
            if not isinstance(store, WooCommerceStore):
                raise click.UsageError("--register-webhooks is for WooCommerce shops")
            return store.register_webhooks(
                lambda topic: f"{config.public_url.rstrip('/')}/webhooks/woocommerce/{shop_id}", secret)
        except StoreError as exc:
            raise click.ClickException(f"the shop was added (id {shop_id}) but its webhooks were not: {exc}") from None


@shops.command("list")
def shops_list() -> None:
    """All shops; `needs-reauth` marks a Shopify shop whose merchant must open the app again."""
    from sqlalchemy.orm import undefer

    from .models import Shop
    from .shop_tokens import needs_reauth

    svc = _services()
    try:
        with svc.db.transaction() as session:
            for shop in session.scalars(select(Shop).options(undefer(Shop.credentials)).order_by(Shop.id)):
                line = (f"{shop.id:>4}  {shop.platform.value:<12} {shop.domain:<40} "
                        f"{'active' if shop.active else 'inactive':<8}  {'needs-reauth' if needs_reauth(shop) else ''}")
                click.echo(line.rstrip())
    finally:
        svc.close()


@shops.command("login-link")
@click.argument("shop_id", type=int)
def shops_login_link(shop_id: int) -> None:
    """Print a one-time sign-in link to the shop's settings page (expires after CATALOG_LOGIN_LINK_TTL_S)."""
    from .login_links import make_link
    from .models import Shop

    svc = _services()
    config = svc.config
    try:
        with svc.db.transaction() as session:
            shop = session.get(Shop, shop_id)
    finally:
        svc.close()
    if shop is None or not shop.active:
        raise click.ClickException(f"no active shop {shop_id} (see `catalog-service shops list`)")
    click.echo(make_link(config, shop).url)


@main.group("secrets")
def secrets_group() -> None:
    """Stored secrets (shop tokens, webhook secrets, credentials), encrypted with CATALOG_SECRET_KEY."""


@secrets_group.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with CATALOG_SECRET_KEY, in one transaction.

    Run it after moving the old key to CATALOG_SECRET_KEY_FALLBACKS; once it has run, the old key can go.
    """
    from .models import Base
    from .security import UnreadableSecret, rotate_stored

    svc = _services()
    try:
        with svc.db.transaction() as session:
            rewritten = rotate_stored(session, Base.metadata)
    except UnreadableSecret as exc:
        raise click.ClickException(f"{exc}. Nothing was changed.") from None
    finally:
        svc.close()
    click.echo(f"re-encrypted {rewritten} stored secret(s) with the current key")


if __name__ == "__main__":
    main()
