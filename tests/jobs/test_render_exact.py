"""Product-exact scenes through a real worker, against a fake OpenAI that recolours, moves and warps the product.

With `product_lock: exact` (the default) our own pixels are laid back over whatever the model drew, so the file that
reaches the shop shows the product as it is in the cutout, and says in its XMP that it is a composite with AI
media. With `product_lock: model` the model's product stays; when it changed, the scene waits for review even in
auto-publish mode, with the reason on the asset, in the API and on the renders page.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image
from sqlalchemy import select

from catalog_service.imaging.fidelity import measure
from catalog_service.imaging.placement import ALPHA_VISIBLE, SCENE_LAYOUT, place
from catalog_service.models import Asset, AssetKind, PushStatus, Render, Shop, UsageRecord
from catalog_service.scenes.base import COMPOSITE_SOURCE, GENERATED_SOURCE
from catalog_service.schemas import settings_with_defaults
from fakes.openai_server import TAMPERS, FakeOpenAI
from merchant import sign_in
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SIDE = 1024
"""The scenes' long side: square, so the request size is the output size and the placement is the canvas's."""

EXACT = {"name": "counter-exact", "prompt": "on a sunlit kitchen counter", "aspect": "1:1", "long_side": SIDE}
STYLISED = {**EXACT, "name": "counter-stylised", "product_lock": "model"}


@pytest.fixture
def fake_openai(monkeypatch):  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        # The openai library reads these itself, as it does in production.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
        yield fake


def use_preset(app, shop_id: int, preset: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """The shop on GPT Image, auto-publishing, with this one preset of its own as its only scene."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop_id)
            row.settings = settings_with_defaults({
                **row.settings, "provider": "openai", "publish_mode": "auto",
                "presets": [preset], "scene_presets": [preset["name"]]})


def render_cup(app, redis, webhooks, image_server) -> Render:  # type: ignore[no-untyped-def]
    """A product arrives by webhook; the worker renders it and pushes what publishes to the folder store."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    body = webhooks.send("product.created", {"id": 5, "title": "Espresso cup", "images": [{"id": 1, "src": src}]})
    render_id = body.get_json()["render_id"]
    run_jobs(app, redis)
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, render_id)
        assert render.assets is not None  # loaded while the session is open
        return render


def asset_of(render: Render, kind: AssetKind) -> Asset:
    (asset,) = [a for a in render.assets if a.kind == kind]
    return asset


def pushed_bytes(asset: Asset) -> bytes:
    """The file as the shop has it (the folder store's copy), not our stored one."""
    assert asset.push_status == PushStatus.PUSHED, asset.push_error
    assert asset.external_url and asset.external_url.startswith("file://"), asset.external_url
    return Path(unquote(urlparse(asset.external_url).path)).read_bytes()


def digital_source_type(data: bytes, tmp_path: Path) -> str:
    """The IPTC Digital Source Type as exiftool, an independent reader, finds it in the file's XMP."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed (Debian: libimage-exiftool-perl)")
    path = tmp_path / "pushed-scene"
    path.write_bytes(data)
    out = subprocess.run([exiftool, "-j", "-XMP-iptcExt:DigitalSourceType", str(path)], capture_output=True,
                         check=True, timeout=30).stdout
    (tags,) = json.loads(out)
    return str(tags.get("DigitalSourceType", ""))


def placement(cutout: Image.Image, fake: FakeOpenAI) -> tuple[int, int, int, int]:
    """Where the product stands in the scene: the layout's box for the output frame, checked against where the
    product really was on the canvas the fake received (its visible pixels, within the soft edge)."""
    _, box = place(cutout, (SIDE, SIDE), SCENE_LAYOUT)
    (edit,) = [r for r in fake.requests if r.path.endswith("/images/edits")]
    assert edit.fields["size"] == f"{SIDE}x{SIDE}", "the request frame is the output frame"
    with Image.open(io.BytesIO(edit.images[0].data)) as canvas:
        sent = canvas.getchannel("A").point(lambda a: 255 if a >= ALPHA_VISIBLE else 0).getbbox()
    assert sent is not None and all(abs(a - b) <= 2 for a, b in zip(sent, box, strict=True)), (sent, box)
    return box


def usage_rows(app, render_id: int) -> list[UsageRecord]:  # type: ignore[no-untyped-def]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        return list(session.scalars(select(UsageRecord).where(UsageRecord.render_id == render_id)))


@pytest.mark.slow
@pytest.mark.parametrize("tamper", TAMPERS)
def test_exact_scene_reaches_the_shop_with_the_product_as_it_is(
        app, redis, webhooks, image_server, model_session, fake_openai, shop, tmp_path, tamper) -> None:
    """The model alters the product; the scene the shop gets shows the cutout's own pixels, marked as a composite."""
    use_preset(app, shop[0], EXACT)
    fake_openai.tamper(tamper)
    render = render_cup(app, redis, webhooks, image_server)
    scene = asset_of(render, AssetKind.SCENE)

    # What the pipeline measured and recorded on the asset.
    assert scene.fidelity is not None and scene.fidelity["passed"] is True, scene.fidelity
    assert scene.fidelity["delta_e"] < 2, scene.fidelity
    assert scene.hold_reason is None
    assert scene.source_type == COMPOSITE_SOURCE
    (edit,) = [r for r in fake_openai.requests if r.path.endswith("/images/edits")]
    assert edit.mask is not None, "exact: the model was asked to leave the product's region alone"

    # What the shop has: read back from the folder store and measured again, by the same figures, independently of
    # the pipeline's run, at the placement the layout and the fake's recorded canvas agree on.
    data = pushed_bytes(scene)
    with app.app_context():
        cutout_png = app.extensions["catalog"].storage.get(asset_of(render, AssetKind.CUTOUT).storage_key)
    with Image.open(io.BytesIO(cutout_png)) as decoded:
        cutout = decoded.convert("RGBA")
    with Image.open(io.BytesIO(data)) as pushed:
        pushed.load()
        assert pushed.size == (SIDE, SIDE)
        fidelity = measure(pushed, cutout, placement(cutout, fake_openai))
    assert fidelity.delta_e < 2 and fidelity.passed(), fidelity
    assert digital_source_type(data, tmp_path).endswith(COMPOSITE_SOURCE)

    # The paid call's record says what was asked of the model and what it was expected to cost.
    (record,) = usage_rows(app, render.id)
    assert record.size == f"{SIDE}x{SIDE}"
    assert record.estimate_usd is not None and record.estimate_usd > 0
    assert record.estimate_usd == pytest.approx(scene.estimate_usd)
    assert record.cost_usd == pytest.approx(scene.cost_usd) and record.cost_usd > 0


@pytest.mark.slow
@pytest.mark.parametrize("tamper", TAMPERS)
def test_a_scene_whose_product_the_model_changed_waits_for_review(
        app, redis, webhooks, image_server, model_session, fake_openai, shop, client, tamper) -> None:
    """`product_lock: model` and a model that alters the product: held even in auto mode, with the reason shown."""
    use_preset(app, shop[0], STYLISED)
    fake_openai.tamper(tamper)
    render = render_cup(app, redis, webhooks, image_server)
    scene = asset_of(render, AssetKind.SCENE)

    assert scene.push_status == PushStatus.HELD and scene.external_id is None
    assert scene.hold_reason and scene.hold_reason.startswith("the product changed"), scene.hold_reason
    assert scene.fidelity is not None and scene.fidelity["passed"] is False, scene.fidelity
    assert scene.source_type == GENERATED_SOURCE
    # The free assets publish as usual; only the altered scene is kept back.
    assert asset_of(render, AssetKind.CUTOUT).push_status == PushStatus.PUSHED
    store_dir = Path(app.extensions["catalog"].config.folder_store_dir) / f"shop-{shop[0]}" / "5"
    manifest = json.loads((store_dir / "manifest.json").read_text())
    assert "scene" not in {entry["kind"] for entry in manifest["assets"]}

    api = client.get(f"/api/v1/renders/{render.id}", headers={"Authorization": f"Bearer {shop[1]}"})
    assert api.status_code == 200
    (shown,) = [a for a in api.get_json()["assets"] if a["kind"] == "scene"]
    assert shown["push_status"] == "held" and shown["hold_reason"] == scene.hold_reason
    assert shown["fidelity"] == scene.fidelity
    assert shown["estimate_usd"] > 0 and shown["cost_usd"] > 0
    assert shown["digital_source_type"] == GENERATED_SOURCE

    sign_in(app, client, shop[0])
    html = client.get(f"/shops/{shop[0]}/renders").get_data(as_text=True)
    card = html[html.index(f'id="render-{render.id}"'):]
    assert "data-hold-reason" in card and f"Waits for your review: {scene.hold_reason}" in card

    # Held, not free: its call was paid and recorded like any other.
    (record,) = usage_rows(app, render.id)
    assert record.size == f"{SIDE}x{SIDE}" and record.estimate_usd is not None and record.estimate_usd > 0
