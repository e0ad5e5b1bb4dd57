"""A worker SIGKILLed between uploading to Shopify and recording it: the restarted push adds no second copy."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from catalog_service.models import PushStatus, Render
from catalog_service.shops import create_shop
from fakes.shopify_server import FakeShopify
from jobs.queues import PUSHES, RENDERS
from support import requeue_due_retries, run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PRODUCT = 31337


@pytest.mark.slow
def test_sigkill_between_upload_and_record_then_restart_leaves_one_copy(
        app, client, redis, image_server, model_session, app_config, worker_env, tmp_path) -> None:
    """Kill -9 the push worker mid-push; after the restart every asset is on the product exactly once."""
    with FakeShopify(ready_after_polls=3) as fake:  # each media takes a few seconds to turn READY
        fake.add_product(PRODUCT, "Cup")
        with app.app_context():
            with app.extensions["catalog_db"].transaction() as session:
                create_shop(session, platform="shopify", domain=fake.shop_domain, access_token=fake.access_token,
                            api_base_url=fake.url)
        src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
        body = json.dumps({"id": PRODUCT, "title": "Cup", "images": [{"id": 1, "src": src}]}).encode()
        digest = hmac.new(app_config["shopify_api_secret"].encode(), body, hashlib.sha256).digest()
        render_id = client.post("/webhooks/shopify", data=body, content_type="application/json", headers={
            "X-Shopify-Topic": "products/create", "X-Shopify-Shop-Domain": fake.shop_domain,
            "X-Shopify-Event-Id": str(uuid.uuid4()), "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        }).get_json()["render_id"]
        run_jobs(app, redis, [RENDERS])  # the render here; the push in a worker process of its own

        with (tmp_path / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "catalog_service.cli", "worker", "--queues", "pushes"],
                env=worker_env, stdout=subprocess.DEVNULL, stderr=log,
            )
        try:
            deadline = time.monotonic() + 60
            while fake.media_created < 1 and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.05)
            assert fake.media_created >= 1, (tmp_path / "worker.log").read_text()
            worker.send_signal(signal.SIGKILL)  # uploaded and attached, not yet recorded
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        with app.app_context():
            assets = app.extensions["catalog_db"].session().get(Render, render_id).assets
            assert any(a.push_status == PushStatus.PENDING for a in assets)

        # The restart: the dead worker's job is found abandoned (its heartbeat long expired) and retried;
        # RQ schedules the retry after its backoff, which the clock is moved past here.
        later = time.time() + 3600
        StartedJobRegistry(PUSHES, connection=redis, serializer=JSONSerializer).cleanup(timestamp=later)
        requeue_due_retries(redis, PUSHES, now=later)
        fake.ready_after_polls = 0
        run_jobs(app, redis, [PUSHES])
        with app.app_context():
            assets = app.extensions["catalog_db"].session().get(Render, render_id).assets
            assert {a.push_status for a in assets} == {PushStatus.PUSHED}
        media = fake.product_media(PRODUCT)
        assert len(media) == len(assets) == 4
        assert fake.errors == []
