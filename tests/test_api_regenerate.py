"""Manual regenerate, render history, review actions and page-session auth on the JSON API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from catalog_service.models import (
    Asset,
    AssetKind,
    Product,
    PushStatus,
    ReferenceImage,
    Render,
    RenderStatus,
    Shop,
    SourceImage,
)
from catalog_service.schemas import settings_with_defaults
from catalog_service.shops import create_shop
from merchant import sign_in as sign_in_by_link
from support import run_jobs

FIXTURES = Path(__file__).parent / "fixtures"


def png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (20, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def configure(app, shop_id: int, **changes) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop_id)
            row.settings = settings_with_defaults({**row.settings, **changes})


def add_product(app, shop_id: int, external_id: str = "101", *, images: int = 1, title: str = "Mug") -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=shop_id, external_id=external_id, title=title)
            session.add(product)
            session.flush()
            for position in range(images):
                session.add(SourceImage(shop_id=shop_id, product_id=product.id, external_id=str(position),
                                        src=f"https://cdn.example.com/{external_id}-{position}.jpg",
                                        position=position))
            return product.id


def another_shop(app) -> int:  # type: ignore[no-untyped-def]
    """A second shop, whose objects the first shop's key and session must not reach."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            return create_shop(session, platform="generic", domain="other.example.com")[0].id


def add_reference(app, shop_id: int) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        key = app.extensions["catalog"].storage.put(png(), ext="png")
        with app.extensions["catalog_db"].transaction() as session:
            row = ReferenceImage(shop_id=shop_id, name="kitchen", storage_key=key, content_type="image/png",
                                 width=64, height=48)
            session.add(row)
            session.flush()
            return row.id


def load_render(app, render_id: int) -> Render:  # type: ignore[no-untyped-def]
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, render_id)
        assert render.assets is not None  # loaded while the session is open
        return render


def queued_job_ids(redis) -> list[str]:  # type: ignore[no-untyped-def]
    from jobs.queues import ALL_QUEUES, get_queue

    return [job_id for name in ALL_QUEUES for job_id in get_queue(name, redis).job_ids]


# --- regenerate -------------------------------------------------------------------------------------------


def test_regenerate_with_an_empty_body_queues_a_manual_render(app, client, shop, redis) -> None:
    """An empty body: the shop's defaults; 202 with the render id and where to poll it."""
    shop_id, key, _ = shop
    add_product(app, shop_id, "101")
    response = client.post(f"/api/v1/shops/{shop_id}/products/101/regenerate", headers=bearer(key))
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status_url"].endswith(f"/api/v1/renders/{body['render_id']}") and body["queued"] is True
    assert queued_job_ids(redis) == [f"render-{body['render_id']}"]
    render = load_render(app, body["render_id"])
    assert (render.trigger, render.status, render.options) == ("manual", RenderStatus.QUEUED, {})
    status = client.get(body["status_url"], headers=bearer(key)).get_json()
    assert status["product_id"] == "101" and status["trigger"] == "manual"


def test_regenerate_keeps_the_options_it_was_given(app, client, shop) -> None:
    """Named scenes, the one-off prompt, the chosen references and cutout=false are stored on the render."""
    shop_id, key, _ = shop
    add_product(app, shop_id, "101")
    ref = add_reference(app, shop_id)
    configure(app, shop_id, presets=[{"name": "beach", "prompt": "on warm sand"}])
    response = client.post(f"/api/v1/shops/{shop_id}/products/101/regenerate", headers=bearer(key), json={
        "scenes": ["beach", "studio"], "prompt": "  with autumn leaves ", "reference_image_ids": [ref],
        "cutout": False})
    assert response.status_code == 202, response.get_json()
    render = load_render(app, response.get_json()["render_id"])
    assert render.options == {"scenes": ["beach", "studio"], "prompt": "with autumn leaves",
                              "reference_image_ids": [ref], "cutout": False}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scenes": ["no-such-scene"]}, "scenes"),
        ({"scenes": []}, "scenes"),
        ({"scenes": ["Bad Name"]}, "scenes"),
        ({"reference_image_ids": [999]}, "reference_image_ids"),
        ({"prompt": "x" * 1001}, "prompt"),
        ({"cutout": "maybe"}, "cutout"),
        ({"colour": "red"}, "colour"),
        ({"cutout": False, "scenes": None}, "cutout"),
        (["studio"], "_schema"),
    ],
)
def test_regenerate_refuses_a_bad_body_and_writes_nothing(app, client, shop, redis, body, field: str) -> None:
    """Each bad field is named in a 400, in the API's error shape; no render is made, nothing is queued."""
    shop_id, key, _ = shop
    add_product(app, shop_id, "101")
    if isinstance(body, dict) and body.get("cutout") is False:
        configure(app, shop_id, scene_presets=[])  # no scenes by default and no cutout: nothing to make
    response = client.post(f"/api/v1/shops/{shop_id}/products/101/regenerate", headers=bearer(key), json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == 400 and field in error["fields"], error
    with app.app_context():
        assert app.extensions["catalog_db"].session().query(Render).count() == 0
    assert queued_job_ids(redis) == []


def test_another_shops_reference_image_is_refused(app, client, shop) -> None:
    """A reference image id of another shop is as unknown as a missing one."""
    shop_id, key, _ = shop
    add_product(app, shop_id, "101")
    other_id = another_shop(app)
    theirs = add_reference(app, other_id)
    response = client.post(f"/api/v1/shops/{shop_id}/products/101/regenerate", headers=bearer(key),
                           json={"reference_image_ids": [theirs]})
    assert response.status_code == 400 and "reference_image_ids" in response.get_json()["error"]["fields"]


def test_regenerate_auth_and_lookup_errors(app, client, shop) -> None:
    """401 without a key or with a wrong one, 403 on another shop, 404 for an unknown or deleted product,
    409 for a product without a photo."""
    shop_id, key, _ = shop
    add_product(app, shop_id, "101")
    add_product(app, shop_id, "no-photo", images=0)
    gone = add_product(app, shop_id, "gone")
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Product, gone).deleted = True
            other_id = create_shop(session, platform="generic", domain="other.example.com")[0].id
    url = f"/api/v1/shops/{shop_id}/products/101/regenerate"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=bearer("cs_wrong")).status_code == 401
    other = client.post(f"/api/v1/shops/{other_id}/products/101/regenerate", headers=bearer(key))
    assert other.status_code == 403 and "another shop" in other.get_json()["error"]["message"]
    missing = client.post(f"/api/v1/shops/{shop_id}/products/999/regenerate", headers=bearer(key))
    assert missing.status_code == 404 and "No product 999" in missing.get_json()["error"]["message"]
    deleted = client.post(f"/api/v1/shops/{shop_id}/products/gone/regenerate", headers=bearer(key))
    assert deleted.status_code == 404 and "deleted" in deleted.get_json()["error"]["message"]
    no_photo = client.post(f"/api/v1/shops/{shop_id}/products/no-photo/regenerate", headers=bearer(key))
    assert no_photo.status_code == 409 and "no photo" in no_photo.get_json()["error"]["message"]


def test_regenerate_is_rate_limited_per_shop(app, client, shop, redis) -> None:
    """The shop's regenerate_per_minute is enforced in Redis: the next request is 429 with Retry-After;
    another shop is not affected, and invalid requests do not use up the allowance."""
    shop_id, key, _ = shop
    configure(app, shop_id, regenerate_per_minute=3)
    add_product(app, shop_id, "101")
    url = f"/api/v1/shops/{shop_id}/products/101/regenerate"
    assert client.post(url, headers=bearer(key), json={"scenes": ["nope"]}).status_code == 400
    assert [client.post(url, headers=bearer(key)).status_code for _ in range(3)] == [202, 202, 202]
    refused = client.post(url, headers=bearer(key))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = refused.get_json()["error"]
    assert error["code"] == 429 and "3 times a minute" in error["message"]
    assert error["retry_after_s"] == int(refused.headers["Retry-After"])
    with app.app_context():
        assert app.extensions["catalog_db"].session().query(Render).count() == 3
        with app.extensions["catalog_db"].transaction() as session:
            other, other_key, _ = create_shop(session, platform="generic", domain="other.example.com")
            other_id = other.id
    add_product(app, other_id, "101")
    assert client.post(f"/api/v1/shops/{other_id}/products/101/regenerate",
                       headers=bearer(other_key)).status_code == 202


def test_rate_limit_windows_turn(redis) -> None:
    """A fixed one-minute window: full at the limit, open again when the next minute starts."""
    from catalog_service.ratelimit import hit

    start = 1_800_000_000.0  # a minute boundary
    assert [hit(redis, "t", limit=2, now=start + 10).allowed for _ in range(3)] == [True, True, False]
    refused = hit(redis, "t", limit=2, now=start + 45.5)
    assert not refused.allowed and refused.retry_after_s == 15
    assert hit(redis, "t", limit=2, now=start + 60).allowed
    assert 0 < redis.ttl(f"ratelimit:t:{int(start // 60)}") <= 65


@pytest.mark.slow
def test_regenerate_end_to_end_makes_only_the_named_scene(app, client, shop, redis, webhooks, image_server,
                                                          model_session, tmp_path) -> None:
    """A product arrives with auto-generate off; a regenerate for one scene without cutout makes exactly that
    scene, and the push puts exactly that on the shop."""
    shop_id, key, _ = shop
    configure(app, shop_id, auto_generate=False)
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    intake = webhooks.send("product.created", {"id": 7, "title": "Espresso cup", "images": [{"id": 1, "src": src}]})
    assert intake.get_json()["outcome"] == "ignored"
    response = client.post(f"/api/v1/shops/{shop_id}/products/7/regenerate", headers=bearer(key),
                           json={"scenes": ["marble-counter"], "cutout": False})
    assert response.status_code == 202, response.get_json()
    run_jobs(app, redis)
    body = client.get(response.get_json()["status_url"], headers=bearer(key)).get_json()
    assert body["status"] == "succeeded", body
    assert [(a["kind"], a["preset"], a["push_status"]) for a in body["assets"]] == [
        ("scene", "marble-counter", "pushed")]
    manifest = json.loads((next((tmp_path / "store").iterdir()) / "7" / "manifest.json").read_text())
    assert [entry["kind"] for entry in manifest["assets"]] == ["scene"]
    with client.get(body["assets"][0]["url"].removeprefix("http://localhost:8000")) as image:
        assert image.status_code == 200 and image.mimetype.startswith("image/")


@pytest.mark.slow
def test_the_shops_cutout_setting_is_the_default_and_a_body_overrides_it(app, client, shop, redis, webhooks,
                                                                         image_server, model_session) -> None:
    """With cutout.enabled off, renders keep only their scenes; a regenerate with cutout=true gets them back."""
    shop_id, key, _ = shop
    configure(app, shop_id, cutout={"enabled": False}, scene_presets=["studio"])
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    first = webhooks.send("product.created", {"id": 9, "title": "Cup", "images": [{"id": 1, "src": src}]})
    again = client.post(f"/api/v1/shops/{shop_id}/products/9/regenerate", headers=bearer(key), json={"cutout": True})
    assert again.status_code == 202
    run_jobs(app, redis)
    assert [a.kind.value for a in load_render(app, first.get_json()["render_id"]).assets] == ["scene"]
    assert sorted(a.kind.value for a in load_render(app, again.get_json()["render_id"]).assets) == [
        "cutout", "scene", "white"]


@pytest.mark.slow
def test_regenerate_prompt_and_references_reach_gpt_image(app, client, shop, redis, webhooks, image_server,
                                                         model_session, monkeypatch) -> None:
    """With GPT Image, the one-off prompt is in the scene's prompt and only the chosen reference is sent."""
    from fakes.openai_server import FakeOpenAI

    shop_id, key, _ = shop
    configure(app, shop_id, auto_generate=False, provider="openai", scene_presets=["kitchen-counter"])
    refs = [add_reference(app, shop_id) for _ in range(3)]
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    webhooks.send("product.created", {"id": 8, "title": "Espresso cup", "images": [{"id": 1, "src": src}]})
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
        response = client.post(f"/api/v1/shops/{shop_id}/products/8/regenerate", headers=bearer(key),
                               json={"prompt": "dusted with snow on a windowsill", "reference_image_ids": [refs[1]]})
        assert response.status_code == 202, response.get_json()
        run_jobs(app, redis)
        (call,) = [r for r in fake.requests if r.path.endswith("/images/edits")]
    render = load_render(app, response.get_json()["render_id"])
    assert render.status == RenderStatus.SUCCEEDED, render.last_error
    assert "dusted with snow on a windowsill" in call.fields["prompt"] and "Espresso cup" in call.fields["prompt"]
    assert len(call.images) == 2  # the cutout and the one chosen reference
    assert sorted(a.kind.value for a in render.assets) == ["cutout", "scene", "white"]


# --- render history ---------------------------------------------------------------------------------------


def make_renders(app, shop_id: int, count: int, *, product: str = "101") -> list[int]:  # type: ignore[no-untyped-def]
    """`count` finished renders of one product, each with a stored scene."""
    product_id = add_product(app, shop_id, product, title=f"Product {product}")
    ids = []
    with app.app_context():
        storage = app.extensions["catalog"].storage
        with app.extensions["catalog_db"].transaction() as session:
            for number in range(count):
                render = Render(shop_id=shop_id, product_id=product_id,
                                status=RenderStatus.FAILED if number % 2 else RenderStatus.SUCCEEDED)
                session.add(render)
                session.flush()
                session.add(Asset(shop_id=shop_id, render_id=render.id, kind=AssetKind.SCENE, preset="studio",
                                  storage_key=storage.put(png(color=(number, 0, 0)), ext="png"),
                                  content_type="image/png", width=64, height=48, bytes=100, cost_usd=0.04))
                ids.append(render.id)
    return ids


@pytest.mark.both_databases
def test_render_history_pages_newest_first_to_the_end(app, client, shop) -> None:
    """Seven renders in pages of three: 3, 3, 1, newest first, no repeats, next_cursor null at the end; each
    with its product, source image and a signed thumbnail link that works."""
    shop_id, key, _ = shop
    ids = make_renders(app, shop_id, 7)
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get(f"/api/v1/shops/{shop_id}/renders", query_string=query, headers=bearer(key)).get_json()
        pages += 1
        seen += [render["id"] for render in body["renders"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == sorted(ids, reverse=True)
    first = client.get(f"/api/v1/shops/{shop_id}/renders", headers=bearer(key)).get_json()["renders"][0]
    assert first["product"] == {"title": "Product 101", "source_images": ["https://cdn.example.com/101-0.jpg"]}
    with client.get(first["assets"][0]["url"].removeprefix("http://localhost:8000")) as thumb:
        assert thumb.status_code == 200 and thumb.mimetype == "image/png"


@pytest.mark.both_databases
def test_render_history_filters_by_product_and_status(app, client, shop) -> None:
    """product_id and status narrow the list; another shop's renders never show."""
    shop_id, key, _ = shop
    mine = make_renders(app, shop_id, 4, product="101")
    make_renders(app, shop_id, 2, product="202")
    other_id = another_shop(app)
    make_renders(app, other_id, 3, product="101")
    url = f"/api/v1/shops/{shop_id}/renders"
    by_product = client.get(url, query_string={"product_id": "101"}, headers=bearer(key)).get_json()["renders"]
    assert [r["id"] for r in by_product] == sorted(mine, reverse=True)
    failed = client.get(url, query_string={"product_id": "101", "status": "failed"}, headers=bearer(key)).get_json()
    assert [r["id"] for r in failed["renders"]] == [mine[3], mine[1]] and failed["next_cursor"] is None
    assert len(client.get(url, headers=bearer(key)).get_json()["renders"]) == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "cjE6eA"}, "cursor"), ({"status": "done"}, "status"),
     ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "many"}, "limit")],
)
def test_render_history_refuses_a_bad_query(app, client, shop, query: dict, field: str) -> None:
    """A cursor we did not hand out, an unknown status or a limit out of 1..100: 400 naming the parameter."""
    shop_id, key, _ = shop
    response = client.get(f"/api/v1/shops/{shop_id}/renders", query_string=query, headers=bearer(key))
    assert response.status_code == 400 and field in response.get_json()["error"]["fields"]


# --- review -----------------------------------------------------------------------------------------------


def held_render(app, shop_id: int, product: str = "55") -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    """A finished render in review mode: cutout and scene stored, both held."""
    product_id = add_product(app, shop_id, product)
    with app.app_context():
        storage = app.extensions["catalog"].storage
        with app.extensions["catalog_db"].transaction() as session:
            render = Render(shop_id=shop_id, product_id=product_id, status=RenderStatus.SUCCEEDED, trigger="manual")
            session.add(render)
            session.flush()
            assets = [Asset(shop_id=shop_id, render_id=render.id, kind=kind, preset=preset,
                            storage_key=storage.put(png(color=color), ext="png"), content_type="image/png",
                            width=64, height=48, bytes=100, push_status=PushStatus.HELD)
                      for kind, preset, color in ((AssetKind.CUTOUT, "", (1, 2, 3)),
                                                  (AssetKind.SCENE, "studio", (4, 5, 6)))]
            session.add_all(assets)
            session.flush()
            return render.id, [asset.id for asset in assets]


def manifest_kinds(tmp_path: Path, product: str) -> list[str]:
    path = tmp_path / "store"
    if not path.exists():
        return []
    manifest = next(path.iterdir()) / product / "manifest.json"
    return sorted(entry["kind"] for entry in json.loads(manifest.read_text())["assets"]) if manifest.exists() else []


def test_review_approve_pushes_one_asset_and_reject_keeps_the_other_off(app, client, shop, redis, tmp_path) -> None:
    """In review mode a merchant approves the scene and rejects the cutout: only the scene reaches the shop,
    and pushing the render again never sends the rejected one."""
    shop_id, key, _ = shop
    configure(app, shop_id, publish_mode="review")
    render_id, (cutout_id, scene_id) = held_render(app, shop_id)
    rejected = client.post(f"/api/v1/assets/{cutout_id}/reject", headers=bearer(key))
    assert rejected.status_code == 200 and rejected.get_json()["push_status"] == "rejected"
    approved = client.post(f"/api/v1/assets/{scene_id}/approve", headers=bearer(key))
    assert approved.status_code == 202 and approved.get_json()["queued"] is True
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["scene"]
    assert client.post(f"/api/v1/renders/{render_id}/push", headers=bearer(key)).get_json()["assets"] == 0
    status = client.get(f"/api/v1/renders/{render_id}", headers=bearer(key)).get_json()
    assert {a["id"]: a["push_status"] for a in status["assets"]} == {cutout_id: "rejected", scene_id: "pushed"}
    assert status["push"]["status"] == "pushed"
    again = client.post(f"/api/v1/assets/{scene_id}/approve", headers=bearer(key))
    assert again.status_code == 409 and "already on the shop" in again.get_json()["error"]["message"]


def test_rejecting_a_pushed_asset_takes_it_off_the_shop(app, client, shop, redis, tmp_path) -> None:
    """Rejecting what is already on the product queues a job that removes it there (202), then it is rejected."""
    shop_id, key, _ = shop
    render_id, asset_ids = held_render(app, shop_id)
    for asset_id in asset_ids:
        assert client.post(f"/api/v1/assets/{asset_id}/approve", headers=bearer(key)).status_code == 202
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["cutout", "scene"]
    response = client.post(f"/api/v1/assets/{asset_ids[1]}/reject", headers=bearer(key))
    assert response.status_code == 202 and response.get_json()["push_status"] == "removing"
    assert queued_job_ids(redis) == [f"takedown-{asset_ids[1]}"]
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["cutout"]
    assets = {a["id"]: a["push_status"] for a in
              client.get(f"/api/v1/renders/{render_id}", headers=bearer(key)).get_json()["assets"]}
    assert assets == {asset_ids[0]: "pushed", asset_ids[1]: "rejected"}


def test_review_actions_are_scoped_to_the_shop_and_wait_for_the_render(app, client, shop) -> None:
    """Another shop's asset is 404; a running render's asset cannot be approved yet (409)."""
    shop_id, key, _ = shop
    other_id = another_shop(app)
    _, (theirs, _) = held_render(app, other_id)
    render_id, (mine, _) = held_render(app, shop_id, product="56")
    for action in ("approve", "reject"):
        assert client.post(f"/api/v1/assets/{theirs}/{action}", headers=bearer(key)).status_code == 404
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Render, render_id).status = RenderStatus.RUNNING
    running = client.post(f"/api/v1/assets/{mine}/approve", headers=bearer(key))
    assert running.status_code == 409 and "still running" in running.get_json()["error"]["message"]


# --- the page's session -----------------------------------------------------------------------------------


def sign_in(client, shop_id: int, csrf: str = "csrf-token-for-tests") -> None:  # type: ignore[no-untyped-def]
    """Signed in by a real sign-in link (the server records the session), with a CSRF token the test knows."""
    sign_in_by_link(client.application, client, shop_id)
    with client.session_transaction() as session:
        session["csrf_token"] = csrf


def test_a_signed_in_page_reads_and_writes_with_its_csrf_token(app, client, shop) -> None:
    """The page's session reads without a token; its writes need X-CSRF-Token equal to the session's."""
    shop_id, _, _ = shop
    add_product(app, shop_id, "101")
    sign_in(client, shop_id)
    assert client.get(f"/api/v1/shops/{shop_id}/renders").status_code == 200
    url = f"/api/v1/shops/{shop_id}/products/101/regenerate"
    missing = client.post(url, json={})
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.get_json()["error"]["message"]
    assert client.post(url, json={}, headers={"X-CSRF-Token": "csrf-token-for-test"}).status_code == 403
    assert client.post(url, json={}, headers={"X-CSRF-Token": "csrf-token-for-tests"}).status_code == 202


def test_a_session_cannot_reach_another_shop(app, client, shop) -> None:
    """Signed in as one shop, another shop's URLs are 403 and its objects 404, with or without the token."""
    shop_id, _, _ = shop
    other_id = another_shop(app)
    _, (their_asset, _) = held_render(app, other_id)
    sign_in(client, shop_id)
    headers = {"X-CSRF-Token": "csrf-token-for-tests"}
    assert client.get(f"/api/v1/shops/{other_id}/renders").status_code == 403
    assert client.post(f"/api/v1/shops/{other_id}/products/55/regenerate", json={}, headers=headers).status_code == 403
    assert client.post(f"/api/v1/assets/{their_asset}/approve", headers=headers).status_code == 404


def test_a_bearer_header_wins_over_the_session_and_inactive_shops_are_refused(app, client, shop) -> None:
    """With a session for shop A, a bearer key decides (a wrong key is 401); an inactive shop's session is 401;
    a session without a CSRF token in it can never write."""
    shop_id, key, _ = shop
    sign_in(client, shop_id)
    assert client.get(f"/api/v1/shops/{shop_id}/usage", headers=bearer("cs_wrong")).status_code == 401
    with client.session_transaction() as session:
        del session["csrf_token"]
    no_token = client.put(f"/api/v1/shops/{shop_id}/settings", json={}, headers={"X-CSRF-Token": ""})
    assert no_token.status_code == 403
    assert client.put(f"/api/v1/shops/{shop_id}/settings", json={}, headers=bearer(key)).status_code == 200
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Shop, shop_id).active = False
    response = client.get(f"/api/v1/shops/{shop_id}/usage")
    assert response.status_code == 401 and "sign in again" in response.get_json()["error"]["message"]


def test_a_lost_takedown_is_queued_again_by_the_sweeper(app, client, shop, redis, tmp_path) -> None:
    """Redis lost the takedown job: the sweeper finds the asset still removing and queues it; it is then taken off."""
    import datetime as dt

    from jobs.sweeper import sweep

    shop_id, key, _ = shop
    _, asset_ids = held_render(app, shop_id)
    client.post(f"/api/v1/assets/{asset_ids[1]}/approve", headers=bearer(key))
    run_jobs(app, redis)
    assert client.post(f"/api/v1/assets/{asset_ids[1]}/reject", headers=bearer(key)).status_code == 202
    redis.flushall()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            assert sweep(session, redis, now=later)["takedowns"] == 1
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == []
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Asset, asset_ids[1]).push_status == PushStatus.REJECTED
