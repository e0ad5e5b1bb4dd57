"""The `catalog-service` command, run the way an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from catalog_service.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_DIR = Path(__file__).resolve().parents[1] / "var" / "models"


@pytest.fixture
def env(monkeypatch, tmp_path, redis_url):  # type: ignore[no-untyped-def]
    """A clean var/ directory for the command, with the installed model and the suite's Redis."""
    monkeypatch.setenv("CATALOG_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CATALOG_MODEL_DIR", str(MODEL_DIR))
    monkeypatch.setenv("CATALOG_REDIS_URL", redis_url)
    monkeypatch.setenv("CATALOG_LOG_LEVEL", "WARNING")
    return tmp_path


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cutout_batch_writes_png_and_white_for_each_input(env, model_session) -> None:
    """Two photos in, two transparent PNGs and two white JPEGs out, capped at --max-side."""
    result = run("cutout", str(FIXTURES / "coffee.png"), str(FIXTURES / "rocket.jpg"),
                 "--out-dir", str(env / "out"), "--white", "--max-side", "300")
    assert result.exit_code == 0, result.output
    for stem in ("coffee", "rocket"):
        with Image.open(env / "out" / f"{stem}.cutout.png") as cutout:
            assert cutout.mode == "RGBA" and max(cutout.size) <= 300
        with Image.open(env / "out" / f"{stem}.white.jpg") as white:
            assert white.getpixel((0, 0)) == (255, 255, 255)


def test_cutout_no_refine_gives_the_models_plain_mask(env, model_session) -> None:
    """--no-refine writes exactly what remove_background(refine=False) makes; the default refines it."""
    from catalog_service.imaging.cutout import CutoutOptions, remove_background

    source = FIXTURES / "rocket.jpg"
    for flag in ("--refine", "--no-refine"):
        result = run("cutout", str(source), "-o", str(env / f"{flag}.png"), "--max-side", "400", flag)
        assert result.exit_code == 0, result.output
    plain = remove_background(source.read_bytes(), model_session, CutoutOptions(max_side=400, refine=False))
    with Image.open(env / "--no-refine.png") as written, Image.open(env / "--refine.png") as refined:
        assert written.tobytes() == plain.image.tobytes()
        assert refined.tobytes() != plain.image.tobytes()


def test_cutout_reports_a_bad_file_and_carries_on(env, model_session) -> None:
    """A broken file is named with its reason; the good one is still written; exit code 1."""
    broken = env / "broken.jpg"
    broken.write_bytes((FIXTURES / "rocket.jpg").read_bytes()[:2000])
    result = run("cutout", str(broken), str(FIXTURES / "coffee.png"), "--out-dir", str(env / "out"))
    assert result.exit_code == 1
    assert "broken.jpg" in result.output
    assert (env / "out" / "coffee.cutout.png").exists()
    assert not (env / "out" / "broken.cutout.png").exists()


def test_cutout_refuses_o_with_several_inputs(env) -> None:
    """-o names one file, so it takes one input."""
    result = CliRunner().invoke(main, ["cutout", str(FIXTURES / "coffee.png"), str(FIXTURES / "rocket.jpg"),
                                       "-o", str(env / "x.png")])
    assert result.exit_code == 2 and "-o takes one input" in result.output


def test_db_upgrade_then_shops_add_and_list(env) -> None:
    """An operator creates the schema, adds a shop and sees it listed; the key is printed once."""
    assert run("db", "upgrade").exit_code == 0
    added = run("shops", "add", "--platform", "generic", "--domain", "Shop.Example.com", "--json")
    created = json.loads(added.output)
    assert created["id"] == 1 and created["api_key"].startswith("cs_") and created["webhook_secret"]
    assert "shop.example.com" in run("shops", "list").output
    again = CliRunner().invoke(main, ["shops", "add", "--platform", "generic", "--domain", "shop.example.com"])
    assert again.exit_code == 1 and "already exists" in again.output


def test_models_install_is_idempotent(env) -> None:
    """A second install finds the verified model and downloads nothing."""
    result = run("models", "install")
    assert result.exit_code == 0 and "already installed" in result.output


def test_demo_runs_the_whole_path_on_rq(env, redis, model_session) -> None:
    """The demo sends one product through webhook, RQ, cutout, scenes and the folder store."""
    out = env / "demo-out"
    result = run("demo", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "burst worker" in result.output
    # Every step says what it is doing: model, start, webhook, cutout, scenes, push.
    assert [f"[{step}/6]" in result.output for step in range(1, 7)] == [True] * 6
    product_dir = out / "shop-1" / "demo-espresso-cup"
    manifest = json.loads((product_dir / "manifest.json").read_text())
    kinds = sorted(entry["kind"] for entry in manifest["assets"])
    assert kinds == ["cutout", "scene", "scene", "scene", "scene", "white"]
    for entry in manifest["assets"]:
        assert (product_dir / entry["filename"]).stat().st_size == entry["bytes"]
        assert entry["filename"] in result.output

    listed = json.loads(run("renders", "list", "--json").output)
    assert listed[0]["status"] == "succeeded" and len(listed[0]["assets"]) == 6


def test_demo_without_redis_runs_in_process_and_says_so(env, monkeypatch, model_session) -> None:
    """No Redis: the same path, with the jobs run in this process."""
    monkeypatch.setenv("CATALOG_REDIS_URL", "redis://127.0.0.1:1/0")
    result = run("demo", "--out", str(env / "demo-out"), "--image", str(FIXTURES / "rocket.jpg"))
    assert result.exit_code == 0, result.output
    assert "running the jobs in-process" in result.output
    assert list((env / "demo-out" / "shop-1" / "demo-rocket").glob("demo-rocket-cutout-cs*.png"))


def test_shops_add_woocommerce_registers_the_product_webhooks(env) -> None:
    """--register-webhooks creates product.created/updated/deleted in the store, pointing at us, with our secret."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fakes.woocommerce_server import FakeWooCommerce

    assert run("db", "upgrade").exit_code == 0
    with FakeWooCommerce() as fake:
        result = run("shops", "add", "--platform", "woocommerce", "--domain", "shop.example.com",
                     "--api-base-url", fake.url, "--consumer-key", fake.consumer_key,
                     "--consumer-secret", fake.consumer_secret, "--register-webhooks", "--json")
        assert result.exit_code == 0, result.output
        created = json.loads(result.output)
        assert len(created["webhook_ids"]) == 3
        hooks = [r.json() for r in fake.requests_to("POST", "/wp-json/wc/v3/webhooks")]
        assert sorted(h["topic"] for h in hooks) == ["product.created", "product.deleted", "product.updated"]
        assert {h["delivery_url"] for h in hooks} == {f"http://localhost:8000/webhooks/woocommerce/{created['id']}"}
        assert {h["secret"] for h in hooks} == {created["webhook_secret"]}
