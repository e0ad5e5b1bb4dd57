"""Renders with GPT Image scenes, against the fake OpenAI server on loopback: concurrency, refusals,
budget, usage records, refinement."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog_service.models import Asset, AssetKind, PushStatus, Render, RenderStatus, Shop, UsageRecord
from catalog_service.scenes.pricing import PriceTable
from catalog_service.schemas import settings_with_defaults
from fakes.openai_server import FakeOpenAI
from jobs.queues import RENDERS
from support import requeue_due_retries, run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCENES = ["kitchen-counter", "outdoor", "flat-lay"]


@pytest.fixture
def fake_openai(monkeypatch):  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        # The openai library reads these itself, as it does in production.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
        yield fake


@pytest.fixture
def openai_shop(app, shop):  # type: ignore[no-untyped-def]
    """The test shop switched to GPT Image with three prompt presets."""
    def configure(**changes):  # type: ignore[no-untyped-def]
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                row = session.get(Shop, shop[0])
                row.settings = settings_with_defaults(
                    {**row.settings, "provider": "openai", "scene_presets": SCENES, **changes})
    configure()
    return configure




def send_product(webhooks, image_server) -> int:  # type: ignore[no-untyped-def]
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    body = webhooks.send("product.created", {"id": 5, "title": "Espresso cup", "images": [{"id": 1, "src": src}]})
    return body.get_json()["render_id"]


def load(app, render_id: int) -> Render:  # type: ignore[no-untyped-def]
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, render_id)
        assert render.assets is not None  # loaded while the session is open
        return render


@pytest.mark.slow
def test_three_scenes_with_one_second_latency_finish_together(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop) -> None:
    """Each GPT Image call takes a second; the three scenes of a render run at once, not one after another."""
    fake_openai.latency_s = 1.0
    render_id = send_product(webhooks, image_server)
    run_jobs(app, redis)
    render = load(app, render_id)
    assert render.status == RenderStatus.SUCCEEDED, render.last_error
    assert sorted(a.preset for a in render.assets if a.kind == AssetKind.SCENE) == sorted(SCENES)
    assert all(render.timings[f"scene:{name}"] >= 1000 for name in SCENES)
    edits = [r for r in fake_openai.requests if r.path.endswith("/images/edits")]
    assert len(edits) == 3
    # All three reached the server before the first could have answered: they ran at once. (Measured at the
    # server, so a slow cutout on a busy machine does not count against it.)
    starts = [r.started for r in edits]
    assert max(starts) - min(starts) < 0.9, f"calls started {max(starts) - min(starts):.2f} s apart: not concurrent"
    assert {r.fields["model"] for r in edits} == {"gpt-image-2"}
    assert all("Espresso cup" in r.fields["prompt"] for r in edits)


@pytest.mark.slow
def test_refused_scene_makes_a_partial_render_and_the_rest_ships(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop, client, shop) -> None:
    """One scene is refused by the safety system: the cutout and the other scenes ship; the reason is in the API."""
    fake_openai.refuse()
    render_id = send_product(webhooks, image_server)
    run_jobs(app, redis)
    render = load(app, render_id)
    assert render.status == RenderStatus.PARTIAL
    assert [e["reason"] for e in render.errors] == ["content_policy"]
    kinds = sorted(a.kind.value for a in render.assets)
    assert kinds == ["cutout", "scene", "scene", "white"]
    api = client.get(f"/api/v1/renders/{render_id}", headers={"Authorization": f"Bearer {shop[1]}"}).get_json()
    assert api["status"] == "partial" and api["scene_errors"][0]["reason"] == "content_policy"
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        records = session.scalars(select(UsageRecord)).all()
        assert len(records) == 2 and all(r.cost_usd > 0 and r.output_tokens > 0 for r in records)
        assert round(sum(r.cost_usd for r in records), 9) == round(sum(a.cost_usd for a in render.assets), 9)


@pytest.mark.slow
def test_budget_stops_calls_before_they_are_made(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop) -> None:
    """A shop whose monthly budget is spent gets its cutout, and no OpenAI call is made."""
    openai_shop(monthly_budget_usd=0.0001)
    render_id = send_product(webhooks, image_server)
    run_jobs(app, redis)
    render = load(app, render_id)
    assert fake_openai.calls == 0
    assert render.status == RenderStatus.PARTIAL
    assert {e["reason"] for e in render.errors} == {"budget"}
    assert sorted(a.kind.value for a in render.assets) == ["cutout", "white"]


@pytest.mark.slow
def test_refine_makes_a_linked_second_version_with_the_mask(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop, client, shop) -> None:
    """A merchant refines a scene inside a rectangle: version 2, linked to version 1, the mask sent to OpenAI."""
    render_id = send_product(webhooks, image_server)
    run_jobs(app, redis)
    scene = next(a for a in load(app, render_id).assets if a.kind == AssetKind.SCENE)
    before = len(fake_openai.requests)
    response = client.post(f"/api/v1/assets/{scene.id}/refine", headers={"Authorization": f"Bearer {shop[1]}"},
                           json={"instruction": "add a sprig of mint beside the cup", "rect": [0, 0, 200, 100]})
    assert response.status_code == 202
    run_jobs(app, redis)
    refined_render = load(app, response.get_json()["render_id"])
    assert refined_render.status == RenderStatus.SUCCEEDED, refined_render.last_error
    (refined,) = refined_render.assets
    assert (refined.parent_asset_id, refined.version, refined.preset) == (scene.id, 2, scene.preset)
    call = fake_openai.requests[before]
    assert call.mask is not None and "sprig of mint" in call.fields["prompt"]
    with app.app_context():
        count = app.extensions["catalog_db"].session().scalar(select(func.count()).select_from(Asset))
    assert count == len(load(app, render_id).assets) + 1


@pytest.mark.slow
def test_openai_failing_on_every_attempt_ends_partial_with_the_reason(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop) -> None:
    """5xx on every call: RQ retries the render, and its last attempt ships the cutout with the scenes' reason."""
    fake_openai.fail(status=500, times=1000)
    render_id = send_product(webhooks, image_server)
    for _attempt in range(5):  # each failed attempt waits its backoff: move the clock past it
        run_jobs(app, redis)
        requeue_due_retries(redis, RENDERS, now=time.time() + 3600)
    render = load(app, render_id)
    assert render.status == RenderStatus.PARTIAL and render.attempts == 4  # the first try and three retries
    assert {e["reason"] for e in render.errors} == {"upstream"} and len(render.errors) == 3
    assert sorted(a.kind.value for a in render.assets) == ["cutout", "white"]


@pytest.mark.slow
def test_openai_timing_out_is_retried_then_partial_with_the_reason(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop) -> None:
    """Every call outlasts the timeout: RQ retries the render, and the last attempt ends partial with the reason."""
    app.extensions["catalog"].config.openai_timeout_s = 0.25
    openai_shop(scene_presets=["studio"])
    fake_openai.latency_s = 2.0
    render_id = send_product(webhooks, image_server)
    for _attempt in range(5):
        run_jobs(app, redis)
        requeue_due_retries(redis, RENDERS, now=time.time() + 3600)
    render = load(app, render_id)
    assert render.status == RenderStatus.PARTIAL and render.attempts == 4
    assert [e["reason"] for e in render.errors] == ["timeout"]
    assert len(fake_openai.requests) == 4  # one call per attempt: the library's own retries are off in tests


@pytest.mark.both_databases
@pytest.mark.slow
def test_scene_failing_once_is_made_again_alone_and_each_paid_call_is_recorded_once(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop) -> None:
    """Scene B fails once (5xx) while A is made: A is kept and paid once, the retry makes only B, spend = calls."""
    app.extensions["catalog"].config.openai_max_retries = 0  # the library does not retry: RQ does
    openai_shop(scene_presets=["kitchen-counter", "outdoor"])
    fake_openai.succeed()
    fake_openai.fail(status=500)
    render_id = send_product(webhooks, image_server)
    run_jobs(app, redis)
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        kept = session.scalars(select(Asset).where(Asset.render_id == render_id, Asset.kind == AssetKind.SCENE)).all()
        assert len(kept) == 1, "the scene made before the failure is kept at once"
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 1, "and its cost recorded at once"
        app.extensions["catalog_db"].remove()
    assert requeue_due_retries(redis, RENDERS, now=time.time() + 3600) == 1
    run_jobs(app, redis)

    render = load(app, render_id)
    assert render.status == RenderStatus.SUCCEEDED and render.attempts == 2, render.last_error
    assert sorted(a.preset for a in render.assets if a.kind == AssetKind.SCENE) == ["kitchen-counter", "outdoor"]
    edits = [r for r in fake_openai.requests if r.path.endswith("/images/edits")]
    paid = [r for r in edits if r.status == 200]
    assert [r.status for r in edits].count(500) == 1 and len(paid) == 2, [r.status for r in edits]
    assert len({r.fields["prompt"] for r in paid}) == 2, "each scene was paid for exactly once"
    prices = PriceTable.from_json(app.extensions["catalog"].config.openai_prices or "{}")
    with app.app_context():
        records = app.extensions["catalog_db"].session().scalars(select(UsageRecord)).all()
    assert len(records) == len(paid)
    spent = sum(prices.cost(r.fields["model"], r.usage) for r in paid)
    assert round(sum(r.cost_usd for r in records), 9) == round(spent, 9) > 0


@pytest.mark.slow
def test_scene_kept_before_a_permanent_failure_still_ships(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop) -> None:
    """A scene made and paid for, then the photo is gone on the retry: the render is partial and the scene ships."""
    app.extensions["catalog"].config.openai_max_retries = 0
    openai_shop(scene_presets=["kitchen-counter", "outdoor"])
    fake_openai.succeed()
    fake_openai.fail(status=500)
    render_id = send_product(webhooks, image_server)
    run_jobs(app, redis)
    image_server.serve("/cup.png", b"gone", content_type="text/plain", status=404)
    assert requeue_due_retries(redis, RENDERS, now=time.time() + 3600) == 1
    run_jobs(app, redis)

    render = load(app, render_id)
    assert render.status == RenderStatus.PARTIAL, (render.status, render.last_error)
    assert "could not be downloaded" in (render.last_error or "")
    scenes = [a for a in render.assets if a.kind == AssetKind.SCENE]
    assert len(scenes) == 1 and scenes[0].push_status == PushStatus.PUSHED


def make_scene(app, redis, webhooks, image_server) -> Asset:  # type: ignore[no-untyped-def]
    """One rendered and pushed scene to refine."""
    render_id = send_product(webhooks, image_server)
    run_jobs(app, redis)
    return next(a for a in load(app, render_id).assets if a.kind == AssetKind.SCENE)


@pytest.mark.slow
def test_refined_scene_in_auto_mode_is_pushed(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop, client, shop) -> None:
    """Auto-publish: the refined version is queued for push and lands on the shop like any render's asset."""
    openai_shop(scene_presets=["kitchen-counter"])
    scene = make_scene(app, redis, webhooks, image_server)
    response = client.post(f"/api/v1/assets/{scene.id}/refine", headers={"Authorization": f"Bearer {shop[1]}"},
                           json={"instruction": "warmer light"})
    run_jobs(app, redis)
    (refined,) = load(app, response.get_json()["render_id"]).assets
    assert refined.push_status == PushStatus.PUSHED and refined.external_id, refined.push_error


@pytest.mark.slow
def test_refine_failing_on_every_attempt_fails_the_render_with_the_reason(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop, client, shop) -> None:
    """5xx on every refine attempt: the last attempt fails the render with the reason; it is never left running."""
    app.extensions["catalog"].config.openai_max_retries = 0
    openai_shop(scene_presets=["kitchen-counter"])
    scene = make_scene(app, redis, webhooks, image_server)
    fake_openai.fail(status=500, times=1000)
    response = client.post(f"/api/v1/assets/{scene.id}/refine", headers={"Authorization": f"Bearer {shop[1]}"},
                           json={"instruction": "warmer light"})
    for _attempt in range(5):
        run_jobs(app, redis)
        requeue_due_retries(redis, RENDERS, now=time.time() + 3600)
    refined = load(app, response.get_json()["render_id"])
    assert refined.status == RenderStatus.FAILED and refined.attempts == 4
    assert refined.last_error and "upstream" in refined.last_error and refined.assets == []


@pytest.mark.slow
def test_refined_scene_replaces_only_the_version_it_was_made_from(
        app, redis, webhooks, image_server, model_session, fake_openai, openai_shop, client, shop) -> None:
    """Replace on regenerate: the refined scene's push takes its parent off the product, and nothing else."""
    openai_shop(scene_presets=["kitchen-counter", "outdoor"], on_regenerate="replace")
    scene = make_scene(app, redis, webhooks, image_server)
    response = client.post(f"/api/v1/assets/{scene.id}/refine", headers={"Authorization": f"Bearer {shop[1]}"},
                           json={"instruction": "warmer light"})
    run_jobs(app, redis)
    (refined,) = load(app, response.get_json()["render_id"]).assets
    first = {(a.kind.value, a.preset): a.push_status for a in load(app, scene.render_id).assets}
    assert refined.push_status == PushStatus.PUSHED
    assert first == {("cutout", ""): PushStatus.PUSHED, ("white", ""): PushStatus.PUSHED,
                     ("scene", scene.preset): PushStatus.REMOVED,
                     ("scene", ({"kitchen-counter", "outdoor"} - {scene.preset}).pop()): PushStatus.PUSHED}
