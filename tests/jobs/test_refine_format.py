"""A refined scene is stored and pushed under the extension of the format it is in, whatever the provider answers."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image

from catalog_service.models import Asset, AssetKind, PushStatus, Render, RenderStatus, Shop
from catalog_service.scenes.base import GENERATED_SOURCE
from catalog_service.scenes.openai_images import OpenAIProvider
from catalog_service.schemas import settings_with_defaults
from fakes.openai_server import FakeOpenAI
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def webp_openai(app, shop, monkeypatch):  # type: ignore[no-untyped-def]
    """The shop on GPT Image, with the service's OpenAI provider set to answer WebP, against the fake on loopback."""
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
        services = app.extensions["catalog"]
        provider = OpenAIProvider(max_retries=0, timeout_s=20.0, output_format="webp")
        # The service's default provider: a shop that names "openai" is served by this one.
        monkeypatch.setattr(services, "scene_provider", provider)
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                row = session.get(Shop, shop[0])
                row.settings = settings_with_defaults(
                    {**row.settings, "provider": "openai", "scene_presets": ["kitchen-counter"]})
        yield fake
        provider.close()


def pushed_file(asset: Asset) -> Path:
    assert asset.external_url and asset.external_url.startswith("file://"), asset.external_url
    return Path(unquote(urlparse(asset.external_url).path))


@pytest.mark.slow
def test_a_webp_refinement_is_stored_and_pushed_as_webp(
        app, redis, webhooks, image_server, model_session, webp_openai, client, shop) -> None:
    """The service answers WebP: the refined version is kept and lands on the shop as a .webp file, not a .jpg."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", {"id": 5, "title": "Espresso cup",
                                                  "images": [{"id": 1, "src": src}]}).get_json()["render_id"]
    run_jobs(app, redis)
    with app.app_context():
        first = app.extensions["catalog_db"].session().get(Render, render_id)
        scene = next(a for a in first.assets if a.kind == AssetKind.SCENE)
        assert scene.storage_key.endswith(".webp"), "the first version is WebP too: the refine is given one"

    response = client.post(f"/api/v1/assets/{scene.id}/refine", headers={"Authorization": f"Bearer {shop[1]}"},
                           json={"instruction": "warmer light"})
    assert response.status_code == 202
    run_jobs(app, redis)

    with app.app_context():
        refined_render = app.extensions["catalog_db"].session().get(Render, response.get_json()["render_id"])
        assert refined_render.status == RenderStatus.SUCCEEDED, refined_render.last_error
        (refined,) = refined_render.assets
        stored = app.extensions["catalog"].storage.get(refined.storage_key)
    assert refined.content_type == "image/webp"
    assert refined.storage_key.endswith(".webp"), refined.storage_key
    assert stored[:4] == b"RIFF" and stored[8:12] == b"WEBP"
    # The file is marked as the model's work, and the row says so too (the API's digital_source_type).
    assert refined.source_type == GENERATED_SOURCE
    assert refined.push_status == PushStatus.PUSHED, refined.push_error
    on_shop = pushed_file(refined)
    assert on_shop.suffix == ".webp", on_shop.name
    with Image.open(on_shop) as image:
        assert image.format == "WEBP"
