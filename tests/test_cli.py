"""The `catalog-service` command, run the way an operator runs it."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
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
    # The default scenes that read as product photography: studio, brand gradient, and the reference backdrop.
    assert kinds == ["cutout", "scene", "scene", "scene", "white"]
    for entry in manifest["assets"]:
        assert (product_dir / entry["filename"]).stat().st_size == entry["bytes"]
        assert entry["filename"] in result.output

    listed = json.loads(run("renders", "list", "--json").output)
    assert listed[0]["status"] == "succeeded" and len(listed[0]["assets"]) == 5


def test_demo_without_redis_runs_in_process_and_says_so(env, monkeypatch, model_session) -> None:
    """No Redis: the same path, with the jobs run in this process."""
    monkeypatch.setenv("CATALOG_REDIS_URL", "redis://127.0.0.1:1/0")
    result = run("demo", "--out", str(env / "demo-out"), "--image", str(FIXTURES / "rocket.jpg"))
    assert result.exit_code == 0, result.output
    assert "running the jobs in-process" in result.output
    assert list((env / "demo-out" / "shop-1" / "demo-rocket").glob("demo-rocket-cutout-cs*.png"))


def test_shops_add_woocommerce_registers_the_product_webhooks(env) -> None:
    """--register-webhooks creates product.created/updated/deleted in the store, pointing at us, with our secret."""
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


def test_shops_add_shopify_prints_no_webhook_secret(env) -> None:
    """Shopify signs webhooks with the app's secret: `shops add` shows none of its own, and says which one counts."""
    assert run("db", "upgrade").exit_code == 0
    text = run("shops", "add", "--platform", "shopify", "--domain", "mine.myshopify.com")
    assert text.exit_code == 0, text.output
    assert "webhook secret" not in text.output and "api key: cs_" in text.output
    assert "CATALOG_SHOPIFY_API_SECRET" in text.output
    created = json.loads(run("shops", "add", "--platform", "shopify", "--domain", "other.myshopify.com",
                             "--json").output)
    assert "webhook_secret" not in created and created["api_key"].startswith("cs_")
    given = CliRunner().invoke(main, ["shops", "add", "--platform", "shopify", "--domain", "third.myshopify.com",
                                      "--webhook-secret", "s3cret"])
    assert given.exit_code == 2 and "--webhook-secret" in given.output


def test_demo_queues_into_a_redis_database_of_its_own_and_says_which(env, redis, redis_url, model_session) -> None:
    """`demo` uses database 15 of CATALOG_REDIS_URL's server (CATALOG_DEMO_REDIS_DB), never the service's 0."""
    from redis import Redis

    service = Redis.from_url(redis_url)
    service.rpush("rq:queue:renders", "another program's job")  # what the demo must never touch
    result = run("demo", "--out", str(env / "demo-out"))
    assert result.exit_code == 0, result.output
    assert "Redis database 15 (CATALOG_DEMO_REDIS_DB)" in result.output and "/15" in result.output
    assert service.lrange("rq:queue:renders", 0, -1) == [b"another program's job"]
    assert not any(key.startswith(b"rq:job:render-") for key in service.keys())
    assert any(key.startswith(b"rq:") for key in Redis.from_url(redis_url.rsplit("/", 1)[0] + "/15").keys())


def test_demo_refuses_the_services_own_redis_database(env, monkeypatch) -> None:
    """CATALOG_DEMO_REDIS_DB equal to CATALOG_REDIS_URL's database: the demo refuses and says why."""
    monkeypatch.setenv("CATALOG_DEMO_REDIS_DB", "0")
    result = run("demo", "--out", str(env / "demo-out"))
    assert result.exit_code == 2 and "CATALOG_DEMO_REDIS_DB=0" in result.output


def _trial_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """A process environment as a newcomer's shell has it: nothing of ours but the var dir, Redis and the model."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("CATALOG_") and key not in ("OPENAI_API_KEY", "XDG_RUNTIME_DIR")}
    environ.update(CATALOG_VAR_DIR=str(tmp_path / "var"), CATALOG_MODEL_DIR=str(MODEL_DIR),
                   CATALOG_REDIS_URL=redis_url, CATALOG_ALLOW_PRIVATE_URLS="true", CATALOG_LOG_LEVEL="WARNING",
                   HOME=str(tmp_path / "home"))
    return environ


def _wait_for(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the command ended with {process.returncode}"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "catalog_service.cli", *args]


@pytest.mark.slow
def test_up_runs_web_worker_and_sweeper_until_sigterm_stops_all_three(
        tmp_path, redis, redis_url, image_server, model_session) -> None:
    """`up --port P`: a webhook becomes a render pushed with links on port P; SIGTERM ends every child."""
    from support import free_port

    port, environ = free_port(), _trial_env(tmp_path, redis_url)
    messages: list[dict] = []

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            messages.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    callback = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=callback.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(_cli("up", "--port", str(port)), env=environ, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", up)
        added = subprocess.run(_cli("shops", "add", "--platform", "generic", "--domain", "trial.example.com",
                                    "--callback-url", f"http://127.0.0.1:{callback.server_address[1]}/hook",
                                    "--json"), env=environ, capture_output=True, check=True, timeout=60)
        shop = json.loads(added.stdout)
        assert shop["id"] == 1  # what the README tells a newcomer they will get
        body = json.dumps({"event": "product.created", "product": {"id": 42, "title": "Cup", "images": [
            {"id": 1, "src": image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())}]}}).encode()
        signature = "sha256=" + hmac.new(shop["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
        answer = requests.post(f"http://127.0.0.1:{port}/webhooks/generic/1", data=body, timeout=10, headers={
            "Content-Type": "application/json", "X-Catalog-Signature": signature, "X-Catalog-Delivery-Id": "d1"})
        render_id = answer.json()["render_id"]
        deadline = time.monotonic() + 120
        while not messages and time.monotonic() < deadline:
            time.sleep(0.2)
        status = requests.get(f"http://127.0.0.1:{port}/api/v1/renders/{render_id}", timeout=10,
                              headers={"Authorization": f"Bearer {shop['api_key']}"}).json()
        assert status["status"] == "succeeded" and status["push"]["status"] == "pushed"
        (message,) = messages
        # The worker's links follow --port as the web app's do, CATALOG_PUBLIC_URL being unset.
        assert all(asset["url"].startswith(f"http://localhost:{port}/") for asset in message["assets"])
        assert (tmp_path / "var" / f"gunicorn-{port}.ctl").is_socket()
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
        callback.shutdown()
        callback.server_close()
        log.close()
    output = (tmp_path / "up.log").read_text()
    pids = [int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", output)]
    assert len(pids) == 3 and "stopped web, worker, sweeper" in output
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_two_serves_on_one_machine_have_a_control_socket_each(tmp_path, redis_url) -> None:
    """Each `serve` keeps gunicorn's control socket under var/, named by its port; stopping one leaves the other's."""
    environ = _trial_env(tmp_path, redis_url)
    subprocess.run(_cli("db", "upgrade"), env=environ, capture_output=True, check=True, timeout=60)
    from support import free_port

    ports = [free_port(), free_port()]
    serves = [subprocess.Popen(_cli("serve", "--port", str(port), "--workers", "1"), env=environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    try:
        for port, serve in zip(ports, serves, strict=True):
            _wait_for(f"http://127.0.0.1:{port}/healthz", serve)
        sockets = [tmp_path / "var" / f"gunicorn-{port}.ctl" for port in ports]
        deadline = time.monotonic() + 10
        while not all(path.is_socket() for path in sockets) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(path.is_socket() for path in sockets)
        assert not (tmp_path / "home" / ".gunicorn" / "gunicorn.ctl").exists()
        serves[0].terminate()
        serves[0].wait(timeout=30)
        assert not sockets[0].exists() and sockets[1].is_socket()
    finally:
        for serve in serves:
            if serve.poll() is None:
                serve.terminate()
                serve.wait(timeout=30)
