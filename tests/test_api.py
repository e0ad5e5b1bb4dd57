"""The JSON API: bearer keys, shop scoping, reference images, usage, render status, refinement requests."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from catalog_service.models import Asset, AssetKind, Product, ReferenceImage, Render, RenderStatus, Shop, UsageRecord
from catalog_service.shops import create_shop

FIXTURES = Path(__file__).parent / "fixtures"


def png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (20, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def api(app, client, shop):  # type: ignore[no-untyped-def]
    """A client that sends the shop's bearer key."""
    shop_id, api_key, _secret = shop

    class Api:
        id = shop_id

        def __getattr__(self, method):  # type: ignore[no-untyped-def]
            def call(path, **kwargs):  # type: ignore[no-untyped-def]
                headers = {"Authorization": f"Bearer {api_key}", **kwargs.pop("headers", {})}
                return getattr(client, method)(path, headers=headers, **kwargs)
            return call

    return Api()


def test_no_key_is_401_and_a_wrong_key_is_401(client, shop) -> None:
    """Every API route wants the shop's bearer key."""
    shop_id = shop[0]
    assert client.get(f"/api/v1/shops/{shop_id}/usage").status_code == 401
    response = client.get(f"/api/v1/shops/{shop_id}/usage", headers={"Authorization": "Bearer cs_wrong"})
    assert response.status_code == 401 and "API key" in response.get_json()["error"]["message"]


def test_one_shops_key_cannot_read_another_shop(app, api) -> None:
    """Shop A's key on shop B's URLs: 403; on B's render: 404 (it does not exist for A)."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            other, _, _ = create_shop(session, platform="generic", domain="other.example.com")
            product = Product(shop_id=other.id, external_id="9")
            session.add(product)
            session.flush()
            render = Render(shop_id=other.id, product_id=product.id)
            session.add(render)
            session.flush()
            other_id, render_id = other.id, render.id
    assert api.get(f"/api/v1/shops/{other_id}/reference-images").status_code == 403
    assert api.get(f"/api/v1/renders/{render_id}").status_code == 404


def test_reference_images_upload_list_delete(app, api) -> None:
    """A merchant uploads a photo, sees it listed with its size, and deletes it; the file goes too."""
    response = api.post(f"/api/v1/shops/{api.id}/reference-images",
                        data={"file": (io.BytesIO((FIXTURES / "rocket.jpg").read_bytes()), "launch.jpg")},
                        content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert (created["width"], created["height"], created["name"]) == (640, 427, "launch.jpg")
    listed = api.get(f"/api/v1/shops/{api.id}/reference-images").get_json()["reference_images"]
    assert [row["id"] for row in listed] == [created["id"]]
    with app.app_context():
        key = app.extensions["catalog_db"].session().get(ReferenceImage, created["id"]).storage_key
    assert api.delete(f"/api/v1/shops/{api.id}/reference-images/{created['id']}").status_code == 204
    assert not app.extensions["catalog"].storage.exists(key)
    assert api.delete(f"/api/v1/shops/{api.id}/reference-images/{created['id']}").status_code == 404


def test_reference_image_by_url(api, image_server) -> None:
    """JSON {"url"} downloads through the guarded fetcher."""
    url = image_server.serve("/ref.png", png((300, 200)))
    response = api.post(f"/api/v1/shops/{api.id}/reference-images", json={"url": url, "name": "kitchen"})
    assert response.status_code == 201 and response.get_json()["width"] == 300


@pytest.mark.parametrize(
    ("make_kwargs", "status", "message"),
    [
        (lambda: {"data": {"file": (io.BytesIO(b"<html>no</html>"), "x.jpg")}, "content_type": "multipart/form-data"},
         400, "web page"),
        (lambda: {"data": {"file": (io.BytesIO(png()[:40]), "x.png")}, "content_type": "multipart/form-data"},
         400, "damaged"),
        (lambda: {"data": {}, "content_type": "multipart/form-data"}, 400, "`file`"),
        (lambda: {"json": {"nope": 1}}, 400, "url"),
        (lambda: {"data": b"raw", "content_type": "image/png"}, 415, "multipart"),
    ],
)
def test_bad_reference_images_are_refused_with_a_reason(app, api, make_kwargs, status: int, message: str) -> None:
    """Not an image, a truncated one, a missing field, a wrong body: a clear 4xx and nothing stored."""
    response = api.post(f"/api/v1/shops/{api.id}/reference-images", **make_kwargs())
    assert response.status_code == status
    assert message in response.get_json()["error"]["message"]
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalars(select(ReferenceImage)).all() == []


def test_reference_url_to_a_missing_image_is_400(api, image_server) -> None:
    """A URL that 404s is the merchant's to fix."""
    response = api.post(f"/api/v1/shops/{api.id}/reference-images", json={"url": image_server.base + "/gone.png"})
    assert response.status_code == 400 and "could not be downloaded" in response.get_json()["error"]["message"]


@pytest.mark.both_databases
def test_usage_is_grouped_by_month_model_and_quality(app, api) -> None:
    """Spend adds up per month, model and quality, with this month's budget beside it."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            for model, quality, cost, when in [
                ("gpt-image-2", "medium", 0.05, now), ("gpt-image-2", "medium", 0.07, now),
                ("gpt-image-2", "high", 0.20, now), ("gpt-image-1-mini", "low", 0.01, now - dt.timedelta(days=62)),
            ]:
                session.add(UsageRecord(shop_id=api.id, provider="openai", model=model, quality=quality,
                                        cost_usd=cost, output_tokens=100, created_at=when))
    body = api.get(f"/api/v1/shops/{api.id}/usage").get_json()
    this_month = [g for g in body["usage"] if g["month"] == now.strftime("%Y-%m")]
    assert {(g["model"], g["quality"], g["calls"], round(g["cost_usd"], 2)) for g in this_month} == {
        ("gpt-image-2", "medium", 2, 0.12), ("gpt-image-2", "high", 1, 0.20)}
    assert len(body["usage"]) == 3
    assert round(body["this_month"]["spent_usd"], 2) == 0.32 and body["this_month"]["budget_usd"] == 20.0


def make_scene(app, shop_id: int) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        storage = app.extensions["catalog"].storage
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=shop_id, external_id="1")
            session.add(product)
            session.flush()
            render = Render(shop_id=shop_id, product_id=product.id, status=RenderStatus.SUCCEEDED)
            session.add(render)
            session.flush()
            asset = Asset(shop_id=shop_id, render_id=render.id, kind=AssetKind.SCENE, preset="studio",
                          storage_key=storage.put(png((64, 48)), ext="png"), content_type="image/png",
                          width=64, height=48, bytes=10)
            session.add(asset)
            session.flush()
            return asset.id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "instruction"),
        ({"instruction": "x"}, "instruction"),
        ({"instruction": "make it warmer", "rect": [10, 10, 5, 20]}, "rect"),
        ({"instruction": "make it warmer", "rect": [1, 2, 3]}, "rect"),
        ({"instruction": "make it warmer", "extra": True}, "extra"),
    ],
)
def test_refine_validates_its_body(app, api, body: dict, field: str) -> None:
    """Bad refinement requests get 400 with the field named."""
    asset_id = make_scene(app, api.id)
    response = api.post(f"/api/v1/assets/{asset_id}/refine", json=body)
    assert response.status_code == 400 and field in response.get_json()["error"]["fields"]


def test_refine_with_the_compositor_is_refused_at_once(app, api, redis) -> None:
    """The compositor cannot refine: 409 with the reason and what to choose, and no render made or queued."""
    asset_id = make_scene(app, api.id)
    response = api.post(f"/api/v1/assets/{asset_id}/refine", json={"instruction": "add a sprig of mint",
                                                                   "rect": [8, 8, 32, 32]})
    assert response.status_code == 409, response.get_json()
    error = response.get_json()["error"]
    assert error["reason"] == "not_supported" and "OpenAI" in error["message"]
    with app.app_context():
        refines = app.extensions["catalog_db"].session().scalars(select(Render).where(Render.trigger == "refine"))
        assert refines.all() == []
    assert redis.keys("rq:job:*") == []


def test_refine_with_openai_but_no_key_is_refused_at_once(app, api, redis, monkeypatch) -> None:
    """A shop on OpenAI (saved while the service had a key) refining on a service without one: 409 not_configured."""
    asset_id = make_scene(app, api.id)
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        row = session.get(Shop, api.id)
        row.settings = {**row.settings, "provider": "openai"}
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    response = api.post(f"/api/v1/assets/{asset_id}/refine", json={"instruction": "add a sprig of mint"})
    assert response.status_code == 409 and response.get_json()["error"]["reason"] == "not_configured"
    assert "OPENAI_API_KEY" in response.get_json()["error"]["message"]


def test_render_status_shows_scene_errors(app, api) -> None:
    """A partial render tells which scene failed and why."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=api.id, external_id="3")
            session.add(product)
            session.flush()
            render = Render(shop_id=api.id, product_id=product.id, status=RenderStatus.PARTIAL,
                            errors=[{"preset": "outdoor", "reason": "content_policy", "message": "refused"}])
            session.add(render)
            session.flush()
            render_id = render.id
    body = api.get(f"/api/v1/renders/{render_id}").get_json()
    assert body["status"] == "partial" and body["scene_errors"][0]["reason"] == "content_policy"


def test_settings_round_trip_with_defaults(api, monkeypatch) -> None:
    """GET shows every default; PUT saves a valid change, including a shop preset."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")  # built, never called
    settings = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    assert settings["auto_generate"] is True and settings["monthly_budget_usd"] == 20.0
    settings.update(monthly_budget_usd=5, provider="openai", model="gpt-image-2.6-flare",
                    presets=[{"name": "beach", "prompt": "on warm sand at golden hour", "quality": "low",
                              "text": "SALE"}],
                    scene_presets=["beach", "studio"])
    saved = api.put(f"/api/v1/shops/{api.id}/settings", json=settings)
    assert saved.status_code == 200
    again = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    assert again["presets"][0]["text"] == "SALE" and again["image_ratio"] == "1:1"
    assert {key: again["presets"][0][key] for key in ("aspect", "long_side", "size", "product_lock")} == {
        "aspect": "", "long_side": 2048, "size": "", "product_lock": "exact"}  # sized by the shop's ratio
    assert again["monthly_budget_usd"] == 5 and again["model"] == "gpt-image-2.6-flare"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"presets": [{"name": "Bad Name!"}]}, "presets"),
        ({"presets": [{"name": "a", "size": "999x999"}]}, "presets"),
        ({"presets": [{"name": "a", "reference_image_ids": [999]}]}, "presets"),
        ({"presets": [{"name": "a", "style": "studio"}, {"name": "a", "style": "studio"}]}, "presets"),
        ({"publish_mode": "sometimes"}, "publish_mode"),
        ({"model": "gpt-image-1"}, "model"),
    ],
)
def test_invalid_settings_are_refused_and_nothing_saved(api, change: dict, field: str) -> None:
    """Every field is validated; an error names the field and the stored settings stay as they were."""
    before = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    response = api.put(f"/api/v1/shops/{api.id}/settings", json={**before, **change})
    assert response.status_code == 400 and field in response.get_json()["error"]["fields"]
    assert api.get(f"/api/v1/shops/{api.id}/settings").get_json() == before


def test_settings_that_make_nothing_are_refused_with_the_field_named(app, api) -> None:
    """PUT with the cutout off and no scenes: 400 naming scene_presets; an unusable alt template is named too."""
    response = api.put(f"/api/v1/shops/{api.id}/settings",
                       json={"cutout": {"enabled": False}, "scene_presets": [], "alt_template": "{title"})
    assert response.status_code == 400
    fields = response.get_json()["error"]["fields"]
    assert "Nothing would be made" in fields["scene_presets"][0] and "alt_template" in fields
    assert api.put(f"/api/v1/shops/{api.id}/settings",
                   json={"cutout": {"enabled": False}, "scene_presets": ["studio"]}).status_code == 200


# --- settings: PATCH is a merge patch; values that could only fail later are refused when saved ----------------


@pytest.mark.both_databases
def test_patch_changes_only_the_keys_it_names(api, monkeypatch) -> None:
    """A PATCH of `provider` keeps the shop's own presets and `publish_mode: review`; PUT replaces everything."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")  # built, never called
    mine = {"name": "window", "style": "surface", "surface": "wood"}
    saved = api.put(f"/api/v1/shops/{api.id}/settings", json={
        "publish_mode": "review", "presets": [mine], "scene_presets": ["window"], "cutout": {"padding": 0.2}})
    assert saved.status_code == 200, saved.get_json()
    patched = api.patch(f"/api/v1/shops/{api.id}/settings", json={"provider": "openai", "cutout": {"square": True}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.get_json()
    stored = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    assert stored["provider"] == "openai" and stored["publish_mode"] == "review"
    assert [p["name"] for p in stored["presets"]] == ["window"] and stored["scene_presets"] == ["window"]
    assert stored["cutout"]["square"] is True and stored["cutout"]["padding"] == 0.2  # nested objects merge
    assert patched.get_json() == stored
    reset = api.patch(f"/api/v1/shops/{api.id}/settings", json={"publish_mode": None, "cutout": {"padding": None}})
    assert reset.status_code == 200
    assert reset.get_json()["publish_mode"] == "auto" and reset.get_json()["cutout"]["padding"] == 0.05
    assert reset.get_json()["presets"][0]["name"] == "window"
    replaced = api.put(f"/api/v1/shops/{api.id}/settings", json={"provider": "openai"}).get_json()
    assert replaced["presets"] == [] and replaced["publish_mode"] == "auto"


def test_an_invalid_patch_saves_nothing_and_names_the_field(api) -> None:
    """A patch whose result is invalid is 400 with the field named; nothing of it is saved. A body that is not an
    object is refused."""
    before = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    response = api.patch(f"/api/v1/shops/{api.id}/settings", json={"publish_mode": "review", "cutout": {"padding": 9}})
    assert response.status_code == 400 and "cutout" in response.get_json()["error"]["fields"]
    assert api.patch(f"/api/v1/shops/{api.id}/settings", json=["publish_mode"]).status_code == 400
    assert api.get(f"/api/v1/shops/{api.id}/settings").get_json() == before


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize(("change", "path", "words"), [
    ({"image_ratio": "3:2"}, ("image_ratio",), "Must be one of"),
    ({"presets": [{"name": "tall", "style": "studio", "aspect": "2:3"}]}, ("presets", "0", "aspect"), "4:5"),
    ({"presets": [{"name": "tall", "style": "studio", "long_side": 8192}]}, ("presets", "0", "long_side"), "4096"),
    ({"presets": [{"name": "tall", "style": "studio", "product_lock": "never"}]}, ("presets", "0", "product_lock"),
     "exact, model"),
])
def test_a_scene_size_or_product_lock_that_cannot_be_used_is_refused_naming_the_field(api, method, change, path,
                                                                                     words) -> None:
    """PUT and PATCH refuse an unknown shop ratio, a preset aspect we do not make, a long side out of range and an
    unknown product lock, each with its field named; nothing is saved."""
    before = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    response = getattr(api, method)(f"/api/v1/shops/{api.id}/settings", json=change)
    assert response.status_code == 400, response.get_json()
    message = response.get_json()["error"]["fields"]
    for key in path:
        message = message[key]
    assert words in " ".join(message), message
    assert api.get(f"/api/v1/shops/{api.id}/settings").get_json() == before


def test_a_preset_saved_with_the_old_size_keeps_it_through_a_patch(app, api) -> None:
    """Settings stored before aspects existed (a preset with `size` 1536x1024 and no aspect) are served as they were,
    a PATCH of the shop ratio keeps that preset's size, and a new preset saved with an aspect has no size."""
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        row = session.get(Shop, api.id)
        row.settings = {"presets": [{"name": "kitchen", "style": "surface", "prompt": "", "surface": "wood",
                                     "size": "1536x1024", "quality": "medium", "reference_image_ids": [],
                                     "text": "", "text_mode": "overlay"}],
                        "scene_presets": ["studio", "marble-counter", "kitchen"]}
    served = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    assert served["presets"][0]["size"] == "1536x1024" and served["scene_presets"][1] == "marble-counter"
    patched = api.patch(f"/api/v1/shops/{api.id}/settings", json={"image_ratio": "4:5"})
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["presets"][0]["size"] == "1536x1024" and patched.get_json()["image_ratio"] == "4:5"
    mine = {"name": "story", "style": "studio", "aspect": "9:16", "long_side": 1920, "product_lock": "model"}
    added = api.patch(f"/api/v1/shops/{api.id}/settings", json={"presets": [served["presets"][0], mine]})
    assert added.status_code == 200, added.get_json()
    assert {key: added.get_json()["presets"][1][key] for key in mine} == mine
    assert added.get_json()["presets"][1]["size"] == ""


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize(("change", "path", "words"), [
    ({"presets": [{"name": "beach", "style": "prompt", "prompt": "on sand"}]}, ("presets", "0", "style"),
     "cannot draw the style 'prompt'"),
    ({"provider": "openai"}, ("provider",), "OPENAI_API_KEY"),
    ({"alt_template": "{title} by {brand}"}, ("alt_template",), "No placeholder {brand}"),
    ({"scene_presets": ["kitchen-counter"]}, ("scene_presets",), "no scene 'kitchen-counter'"),
])
def test_settings_that_could_only_fail_later_are_refused(api, monkeypatch, method, change, path, words) -> None:
    """On the compositor, with no OpenAI key: a style it cannot draw, the OpenAI provider, an alt-text placeholder we
    never fill and a scene it does not offer are each refused with the field named; nothing is saved."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    before = api.get(f"/api/v1/shops/{api.id}/settings").get_json()
    response = getattr(api, method)(f"/api/v1/shops/{api.id}/settings", json=change)
    assert response.status_code == 400, response.get_json()
    message = response.get_json()["error"]["fields"]
    for key in path:
        message = message[key]
    assert words in " ".join(message), message
    assert api.get(f"/api/v1/shops/{api.id}/settings").get_json() == before


def test_openai_presets_and_scenes_are_accepted_where_openai_is_configured(api, monkeypatch) -> None:
    """With a key, the same prompt preset, the OpenAI provider and an OpenAI scene are saved."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")  # built, never called
    response = api.put(f"/api/v1/shops/{api.id}/settings", json={
        "provider": "openai", "scene_presets": ["kitchen-counter", "beach"],
        "presets": [{"name": "beach", "style": "prompt", "prompt": "on sand"}]})
    assert response.status_code == 200, response.get_json()
