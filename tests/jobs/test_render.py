"""The render and push jobs, end to end through real Redis and an RQ worker in burst mode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from catalog_service.models import Asset, AssetKind, PushStatus, Render, RenderStatus
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"




def product(src: str, product_id: int = 7) -> dict:
    return {"id": product_id, "title": "Espresso cup", "images": [{"id": 1, "src": src}]}


def load_render(app, render_id: int) -> Render:  # type: ignore[no-untyped-def]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        render = session.get(Render, render_id)
        assert render.assets is not None  # loaded while the session is open
        return render


@pytest.mark.both_databases
@pytest.mark.slow
def test_webhook_to_pushed_assets(app, redis, webhooks, image_server, model_session, tmp_path) -> None:
    """A product photo goes in by webhook; cutout, white and scenes come out on the shop's product."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", product(src)).get_json()["render_id"]

    run_jobs(app, redis)

    render = load_render(app, render_id)
    assert render.status == RenderStatus.SUCCEEDED, render.last_error
    kinds = sorted((a.kind.value, a.preset) for a in render.assets)
    assert ("cutout", "") in kinds and ("white", "") in kinds
    # The defaults that read as product photography; "reference" needs a reference photo, and the shop has none.
    assert {preset for kind, preset in kinds if kind == "scene"} == {"studio", "brand-gradient"}
    assert all(a.push_status == PushStatus.PUSHED for a in render.assets)
    assert set(render.timings) >= {"cutout", "white", "scene:studio"}

    shop_dir = next((tmp_path / "store").iterdir())
    manifest = json.loads((shop_dir / "7" / "manifest.json").read_text())
    assert len(manifest["assets"]) == len(render.assets)
    cutout_file = shop_dir / "7" / next(e["filename"] for e in manifest["assets"] if e["kind"] == "cutout")
    with Image.open(cutout_file) as image:
        assert image.mode == "RGBA" and image.getchannel("A").getextrema() == (0, 255)
    assert all(entry["alt"].startswith("Espresso cup") for entry in manifest["assets"])


@pytest.mark.both_databases
@pytest.mark.slow
def test_running_the_same_render_twice_adds_nothing(app, redis, webhooks, image_server, model_session,
                                                    tmp_path) -> None:
    """A re-run of a render (a retry, the sweeper) overwrites its assets instead of duplicating them."""
    from jobs.push import push_render
    from jobs.render import render_product

    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", product(src)).get_json()["render_id"]
    run_jobs(app, redis)
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        session.get(Render, render_id).status = RenderStatus.QUEUED
        session.commit()
        render_product(render_id)
        push_render(render_id)
        # The jobs closed the thread's session when they finished; ask for the current one.
        session = app.extensions["catalog_db"].session()
        count = len(session.scalars(select(Asset).where(Asset.render_id == render_id)).all())
    # The cutout, the white variant, and the default studio and brand-gradient scenes.
    assert count == len(load_render(app, render_id).assets) == 4
    manifest = json.loads((next((tmp_path / "store").iterdir()) / "7" / "manifest.json").read_text())
    assert len(manifest["assets"]) == 4


def test_missing_photo_fails_the_render_with_a_reason(app, redis, webhooks, image_server) -> None:
    """A 404 photo URL is permanent: the render fails and says the photo could not be downloaded."""
    render_id = webhooks.send("product.created", product(image_server.base + "/gone.jpg")).get_json()["render_id"]
    run_jobs(app, redis)
    render = load_render(app, render_id)
    assert render.status == RenderStatus.FAILED
    assert "could not be downloaded" in render.last_error
    assert render.assets == []


def test_not_an_image_fails_the_render_with_a_reason(app, redis, webhooks, image_server, model_session) -> None:
    """Bytes that are not a photo fail the render with the decoder's message, and nothing is stored."""
    src = image_server.serve("/fake.png", b"%PDF-1.4 not an image", content_type="image/png")
    render_id = webhooks.send("product.created", product(src)).get_json()["render_id"]
    run_jobs(app, redis)
    render = load_render(app, render_id)
    assert render.status == RenderStatus.FAILED and render.last_error
    assert render.assets == []


@pytest.mark.slow
def test_shop_preset_with_exact_text_gets_a_drawn_badge(app, redis, webhooks, image_server, model_session,
                                                        shop) -> None:
    """A shop's own preset carrying "NEW" comes out with the badge drawn in its corner."""
    from catalog_service.imaging.overlay import BADGE_FILL
    from catalog_service.models import Shop
    from catalog_service.schemas import settings_with_defaults

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop[0])
            row.settings = settings_with_defaults({**row.settings, "scene_presets": ["launch"], "presets": [
                {"name": "launch", "style": "studio", "size": "1024x1024", "text": "NEW"}]})
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", product(src)).get_json()["render_id"]
    run_jobs(app, redis)
    render = load_render(app, render_id)
    (scene,) = [a for a in render.assets if a.kind == AssetKind.SCENE]
    assert (scene.preset, scene.width, scene.height) == ("launch", 1024, 1024)
    with Image.open(io.BytesIO(app.extensions["catalog"].storage.get(scene.storage_key))) as image:
        corner = image.convert("RGB").crop((0, 0, 200, 120))
        pixels = np.asarray(corner).astype(int)
        assert (abs(pixels - BADGE_FILL) < 25).all(axis=2).any()


@pytest.mark.slow
def test_replace_on_regenerate_takes_our_earlier_images_off(app, redis, webhooks, image_server, model_session, shop,
                                                             tmp_path) -> None:
    """With on_regenerate=replace, a new photo's render replaces our earlier images; keep leaves them."""
    from catalog_service.models import Shop
    from catalog_service.schemas import settings_with_defaults

    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop[0])
            row.settings = settings_with_defaults({**row.settings, "on_regenerate": "replace",
                                                   "scene_presets": ["studio"]})
    first = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    first_id = webhooks.send("product.created", product(first)).get_json()["render_id"]
    run_jobs(app, redis)
    second = image_server.serve("/rocket.jpg", (FIXTURES / "rocket.jpg").read_bytes(), content_type="image/jpeg")
    second_id = webhooks.send("product.updated", {**product(second), "images": [{"id": 2, "src": second}]}
                              ).get_json()["render_id"]
    run_jobs(app, redis)
    assert {a.push_status for a in load_render(app, first_id).assets} == {PushStatus.REMOVED}
    assert {a.push_status for a in load_render(app, second_id).assets} == {PushStatus.PUSHED}
    product_dir = next((tmp_path / "store").iterdir()) / "7"
    manifest = json.loads((product_dir / "manifest.json").read_text())
    assert len(manifest["assets"]) == 3  # cutout, white, studio of the second render only
    assert sorted(p.name for p in product_dir.iterdir() if p.name not in ("manifest.json", ".lock")) == sorted(
        e["filename"] for e in manifest["assets"])


def _set_settings(app, shop_id: int, **changes) -> None:  # type: ignore[no-untyped-def]
    from catalog_service.models import Shop
    from catalog_service.schemas import settings_with_defaults

    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        row = session.get(Shop, shop_id)
        row.settings = settings_with_defaults({**row.settings, **changes})


@pytest.mark.slow
def test_a_reference_scene_without_reference_photos_fails_with_the_reason(app, redis, webhooks, image_server,
                                                                          model_session, shop) -> None:
    """Cutout off, only the reference scene, no reference photo: nothing is made, so it fails, saying why."""
    _set_settings(app, shop[0], cutout={"enabled": False}, scene_presets=["reference"])
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", product(src)).get_json()["render_id"]
    run_jobs(app, redis)
    render = load_render(app, render_id)
    assert render.status == RenderStatus.FAILED and render.assets == []
    assert "reference" in render.last_error and "Add a reference image in Settings" in render.last_error


@pytest.mark.slow
def test_the_openai_provider_without_a_key_fails_with_the_reason(app, redis, webhooks, image_server, model_session,
                                                                 shop) -> None:
    """Cutout off and the OpenAI provider on a service with no key: failed, with the provider's reason, not done."""
    _set_settings(app, shop[0], cutout={"enabled": False}, provider="openai", scene_presets=["studio"])
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", product(src)).get_json()["render_id"]
    run_jobs(app, redis)
    render = load_render(app, render_id)
    assert render.status == RenderStatus.FAILED and render.assets == []
    assert render.last_error.startswith("No image was made")
    assert render.errors and render.errors[0]["message"] in render.last_error
