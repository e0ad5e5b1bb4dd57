"""Backfill scenes through OpenAI's Batch API, against the fake Files, Batch and images endpoints on loopback:
cutouts at once, scenes at half price when the batch comes back, direct calls when it does not, never twice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog_service import backfills
from catalog_service.models import (
    AssetKind,
    Backfill,
    BatchScene,
    BatchSceneState,
    PushStatus,
    Render,
    RenderStatus,
    SceneBatch,
    Shop,
    UsageRecord,
)
from catalog_service.scenes.pricing import PriceTable
from catalog_service.schemas import settings_with_defaults
from fakes.openai_batch_server import FakeOpenAIBatch
from jobs import batches
from jobs.batches import batch_edit, run_batches
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCENES = ["kitchen-counter", "outdoor"]


@pytest.fixture
def fake(monkeypatch):  # type: ignore[no-untyped-def]
    """OpenAI on loopback: Files and Batch, and direct image edits at the same address, as at OpenAI."""
    with FakeOpenAIBatch() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        yield server


@pytest.fixture
def openai_shop(app, shop):  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop[0])
            row.settings = settings_with_defaults({**row.settings, "provider": "openai", "scene_presets": SCENES})
    return shop


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def products(image_server, count: int, start: int = 1) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    return [{"id": str(n), "title": f"Espresso cup {n}", "images": [{"id": f"img-{n}", "src": src}]}
            for n in range(start, start + count)]


def start_backfill(client, shop, image_server, count: int, *, dry_run: bool = False) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    answer = client.post(f"/api/v1/shops/{shop[0]}/backfills", headers=bearer(shop[1]),
                         json={"dry_run": dry_run, "products": products(image_server, count)})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def sweep(app, redis, *, turns: int = 8) -> None:  # type: ignore[no-untyped-def]
    """The sweeper's turns: batches moved on, then the jobs they queued (pushes, direct renders, the next products)."""
    svc = app.extensions["catalog"]
    for _ in range(turns):
        run_batches(svc)
        svc.db.remove()
        run_jobs(app, redis)


def rows(app, model):  # type: ignore[no-untyped-def]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        found = session.scalars(select(model).order_by(model.id)).all()
        for row in found:
            if isinstance(row, Render):
                assert row.assets is not None  # loaded while the session is open
        app.extensions["catalog_db"].remove()
        return found


def direct_edits(fake: FakeOpenAIBatch) -> int:
    return fake.calls.count(("POST", "/v1/images/edits"))


def prices(app) -> PriceTable:  # type: ignore[no-untyped-def]
    return PriceTable.from_json(app.extensions["catalog"].config.openai_prices or "{}")


@pytest.mark.slow
def test_backfill_scenes_wait_for_a_batch_and_come_back_at_half_price(
        app, redis, client, webhooks, image_server, model_session, fake, openai_shop) -> None:
    """Cutouts at once, scenes from one batch at half price and pushed; a webhook render meanwhile never waits."""
    shown = start_backfill(client, openai_shop, image_server, 3)
    assert shown["estimate"]["batch_price"] is True
    photo = products(image_server, 1)[0]["images"]
    webhook_render = webhooks.send("product.created", {"id": 99, "title": "Espresso cup 99",
                                                      "images": photo}).get_json()["render_id"]
    run_jobs(app, redis)

    renders = {r.id: r for r in rows(app, Render)}
    made_now = renders.pop(webhook_render)
    assert made_now.status == RenderStatus.SUCCEEDED, made_now.last_error
    assert sorted(a.preset for a in made_now.assets if a.kind == AssetKind.SCENE) == sorted(SCENES)
    assert direct_edits(fake) == 2, "the webhook render's two scenes, made directly; no backfill scene"
    # Every product's cutout is made, though only two backfill renders are queued at a time: waiting ones hold
    # no worker, so the feeder goes on.
    assert len(renders) == 3 and {r.status for r in renders.values()} == {RenderStatus.WAITING}
    assert all(sorted(a.kind.value for a in r.assets) == ["cutout", "white"] for r in renders.values())
    assert {r.state for r in rows(app, BatchScene)} == {BatchSceneState.PENDING}

    sweep(app, redis)

    renders = {r.id: r for r in rows(app, Render) if r.id != webhook_render}
    assert {r.status for r in renders.values()} == {RenderStatus.SUCCEEDED}
    for render in renders.values():
        scenes = [a for a in render.assets if a.kind == AssetKind.SCENE]
        assert sorted(a.preset for a in scenes) == sorted(SCENES)
        assert all(a.push_status == PushStatus.PUSHED and a.fidelity and a.fidelity["passed"] for a in scenes)
    assert direct_edits(fake) == 2, "no backfill scene was made directly"
    assert len(fake.batches) == 1 and {b.status for b in rows(app, SceneBatch)} == {"cleaned"}
    batch = next(iter(fake.batches.values()))
    assert batch.input_file_id in fake.deleted and batch.output_file_id in fake.deleted

    # Paid once each, at the batch price: what the fake's usage costs at half price.
    table = prices(app)
    answered = [r for r in fake.images.requests if r.status == 200]
    assert len(answered) == 2 + 6
    records = [r for r in rows(app, UsageRecord) if r.render_id in renders]
    assert len(records) == 6
    in_batch = answered[2:]  # after the webhook render's two
    assert round(sum(r.cost_usd for r in records), 9) == round(
        sum(table.cost(r.fields["model"], r.usage, batch=True) for r in in_batch), 9) > 0
    assert round(sum(r.cost_usd for r in records) * 2, 9) == round(
        sum(table.cost(r.fields["model"], r.usage) for r in in_batch), 9)

    final = client.get(f"/api/v1/shops/{openai_shop[0]}/backfills/{shown['id']}",
                       headers=bearer(openai_shop[1])).get_json()
    assert (final["status"], final["done"], final["remaining"]) == ("done", 3, 0)
    assert final["cost_usd"] == pytest.approx(sum(r.cost_usd for r in records), abs=1e-4)


@pytest.mark.slow
def test_failed_and_expired_batches_fall_back_to_direct_calls_each_scene_made_once(
        app, redis, client, image_server, model_session, fake, openai_shop, monkeypatch) -> None:
    """One batch fails validation, the other expires after one scene: the rest are made directly, none twice."""
    monkeypatch.setattr(batches, "SCENES_PER_SUBMISSION", 2)  # one product's two scenes a batch: two batches
    fake.plan(outcome="failed")
    fake.plan(outcome="expired", done_before_end=1)
    start_backfill(client, openai_shop, image_server, 2)
    run_jobs(app, redis)
    assert direct_edits(fake) == 0

    sweep(app, redis)

    assert sorted(b.status for b in fake.batches.values()) == ["expired", "failed"]
    renders = rows(app, Render)
    assert {r.status for r in renders} == {RenderStatus.SUCCEEDED}, [r.last_error for r in renders]
    assert all(sorted(a.preset for a in r.assets if a.kind == AssetKind.SCENE) == sorted(SCENES) for r in renders)
    answered = [r for r in fake.images.requests if r.status == 200]
    assert len(answered) == 4 and direct_edits(fake) == 3, "each scene made exactly once: one in a batch"
    assert len({r.fields["prompt"] for r in answered}) == 4, "each product's each scene"
    records = rows(app, UsageRecord)
    assert len(records) == 4
    table = prices(app)
    full = [table.cost(r.fields["model"], r.usage) for r in answered]
    # Three paid at the direct price, the one the expired batch made at half of its own.
    paid = sum(r.cost_usd for r in records)
    assert any(paid == pytest.approx(sum(full) - cost / 2, abs=1e-9) for cost in full), (paid, full)
    assert {r.state for r in rows(app, BatchScene)} == {BatchSceneState.DONE}


@pytest.mark.slow
def test_a_batch_created_just_before_a_crash_is_found_and_read_not_sent_again(
        app, redis, client, image_server, model_session, fake, openai_shop) -> None:
    """The process died after OpenAI created the batch and before we stored it: the next turn finds it by its
    submission key and reads it; nothing is submitted or paid twice."""
    start_backfill(client, openai_shop, image_server, 1)
    run_jobs(app, redis)
    svc = app.extensions["catalog"]
    key = f"scenes-{uuid.uuid4().hex}"
    # What the crash leaves: the rows marked with the key, the batch at OpenAI, nothing stored.
    with svc.db.transaction() as session:
        pending = session.scalars(select(BatchScene)).all()
        for row in pending:
            row.submission = key
        edits = [batch_edit(svc, row.custom_id, row.edit) for row in pending]
    svc.db.remove()
    client_ = svc.provider("openai").batch_client()  # type: ignore[attr-defined]
    client_.submit(edits, submission=key)
    assert len(fake.batches) == 1

    sweep(app, redis)

    assert len(fake.batches) == 1, "the lost batch was adopted, not submitted again"
    (render,) = rows(app, Render)
    assert render.status == RenderStatus.SUCCEEDED, render.last_error
    assert sorted(a.preset for a in render.assets if a.kind == AssetKind.SCENE) == sorted(SCENES)
    assert len(rows(app, UsageRecord)) == 2 and direct_edits(fake) == 0
    assert [b.submission for b in rows(app, SceneBatch)] == [key]


def test_the_backfill_estimate_is_at_the_batch_price(app, client, image_server, fake, openai_shop) -> None:
    """A dry run on OpenAI shows the batch price: about half of what the same scenes cost as direct calls."""
    shown = start_backfill(client, openai_shop, image_server, 4, dry_run=True)
    estimate = shown["estimate"]
    assert estimate["batch_price"] is True and estimate["scenes"] == 8
    svc = app.extensions["catalog"]
    svc.config.openai_batch = False
    with svc.db.transaction() as session:
        direct = backfills.costing_for(session, session.get(Backfill, shown["id"]), svc)
    assert direct.batch is False
    assert estimate["usd_per_product"] == pytest.approx(direct.usd_per_product / 2, rel=1e-3)
    assert estimate["cost_usd"] == pytest.approx(4 * direct.usd_per_product / 2, rel=1e-3)
