"""`catalog-service backfill SHOP_ID`: the estimate first; without --dry-run, a worker does it while the command
shows progress and ends with the counts."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from catalog_service.cli import main
from catalog_service.models import Backfill, BackfillStatus, Render
from catalog_service.schemas import settings_with_defaults
from catalog_service.shops import create_shop
from fakes.shopify_server import FakeShopify

FIXTURES = Path(__file__).parent / "fixtures"
CATALOG_SERVICE = Path(sys.executable).parent / "catalog-service"


def small_photo() -> bytes:
    image = Image.open(FIXTURES / "rocket.jpg")
    image.thumbnail((320, 320))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


@pytest.fixture
def shopify(app, image_server) -> Iterator[tuple[FakeShopify, int]]:  # type: ignore[no-untyped-def]
    """A Shopify shop on the fake (cutout and white variant, no scenes) with three Acme products and one other."""
    with FakeShopify(ready_after_polls=0) as fake:
        photo = small_photo()
        gids = fake.add_catalog(3, images=1, vendor="Acme") + fake.add_catalog(1, images=1, first_number=20_001,
                                                                             vendor="Other")
        for gid in gids:
            for media in fake.products[gid].media_list:
                media.cdn_url = image_server.serve(f"/cdn/{media.filename}", photo, "image/jpeg")
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                shop, _key, _secret = create_shop(session, platform="shopify", domain=fake.shop_domain,
                                                  access_token=fake.access_token, api_base_url=fake.url)
                shop.settings = settings_with_defaults(
                    {**shop.settings, "scene_presets": [], "cutout": {"enabled": True, "white": True}})
                shop_id = shop.id
        yield fake, shop_id


def test_a_dry_run_prints_the_estimate_and_renders_nothing(app, shopify, worker_env) -> None:  # type: ignore[no-untyped-def]
    fake, shop_id = shopify

    result = CliRunner().invoke(main, ["backfill", str(shop_id), "--dry-run", "--vendor", "Acme"], env=worker_env,
                                catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "3 products to do (0 skipped), 3 photos, 0 scenes: about $0.00" in result.output
    assert re.search(r"Dry run: start it with POST /api/v1/shops/\d+/backfills/\d+/start", result.output)
    assert 'vendor:\\"Acme\\"' in fake.bulk_queries[0]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.scalars(select(Backfill.status)).all() == [BackfillStatus.READY]
        assert session.scalars(select(Render.id)).all() == []


def test_an_unknown_shop_is_an_error(app, worker_env) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["backfill", "999999", "--dry-run"], env=worker_env)
    assert result.exit_code != 0 and "No shop 999999" in result.output


@pytest.mark.slow
def test_with_a_worker_running_it_shows_progress_and_ends_with_the_counts(
        app, shopify, worker_env, model_session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake, shop_id = shopify
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker"], env=worker_env,
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        command = subprocess.run([str(CATALOG_SERVICE), "backfill", str(shop_id), "--vendor", "Acme"],
                                 env=worker_env, capture_output=True, text=True, timeout=240)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    assert command.returncode == 0, command.stderr + (tmp_path / "worker.log").read_text()[-3000:]
    lines = command.stdout.strip().splitlines()
    assert "3 products to do" in command.stdout
    assert "Rendering" in command.stdout  # the progress bar
    assert re.fullmatch(r"Backfill \d+ done: 3 done, 0 failed, 0 skipped, \$0\.00 spent\.", lines[-1]), lines
    for number in (10_001, 10_002, 10_003):
        assert len(fake.product_media(number)) >= 2  # ours are on the product (the last push may still be on its way)
