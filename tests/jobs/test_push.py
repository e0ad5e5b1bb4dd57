"""Pushing to a generic platform's callback: signed message, signed links, retries, review mode, push API."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from catalog_service.models import PushStatus, Render, RenderStatus, Shop
from catalog_service.schemas import settings_with_defaults
from support import run_jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class Receiver:
    """A platform's callback endpoint on loopback: records messages, answers as scripted."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict, dict]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.messages.append((dict(self.headers), {"raw": body}))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/catalog-hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(app, shop):  # type: ignore[no-untyped-def]
    r = Receiver()
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Shop, shop[0]).callback_url = r.url
    yield r
    r.close()




def send(webhooks, image_server) -> int:  # type: ignore[no-untyped-def]
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    return webhooks.send("product.created", {"id": 8, "title": "Cup", "images": [{"id": 1, "src": src}]}).get_json()[
        "render_id"]


def render_of(app, render_id: int) -> Render:  # type: ignore[no-untyped-def]
    with app.app_context():
        render = app.extensions["catalog_db"].session().get(Render, render_id)
        assert render.assets is not None  # loaded while the session is open
        return render


@pytest.mark.slow
def test_callback_gets_one_signed_message_with_working_links(
        app, client, redis, webhooks, image_server, receiver, model_session, shop) -> None:
    """The platform hears once, can verify our signature, and downloads every asset from its link."""
    render_id = send(webhooks, image_server)
    run_jobs(app, redis)
    render = render_of(app, render_id)
    assert render.status == RenderStatus.SUCCEEDED
    assert all(a.push_status == PushStatus.PUSHED for a in render.assets)
    ((headers, payload),) = receiver.messages
    expected = "sha256=" + hmac.new(shop[2].encode(), payload["raw"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Catalog-Signature"], expected)
    message = json.loads(payload["raw"])
    assert message["event"] == "assets.ready" and message["product_id"] == "8"
    assert len(message["assets"]) == len(render.assets) == 4  # cutout, white, studio, brand-gradient
    for listed in message["assets"]:
        parts = urlsplit(listed["url"])
        download = client.get(f"{parts.path}?{parts.query}")
        assert download.status_code == 200 and len(download.data) == listed["bytes"]
        download.close()


@pytest.mark.slow
def test_failing_callback_is_visible_and_can_be_pushed_again(
        app, client, redis, webhooks, image_server, receiver, model_session, shop) -> None:
    """A callback that refuses (400) leaves push_failed with its words; the push API sends again."""
    receiver.statuses = [400]
    render_id = send(webhooks, image_server)
    run_jobs(app, redis)
    auth = {"Authorization": f"Bearer {shop[1]}"}
    status = client.get(f"/api/v1/renders/{render_id}", headers=auth).get_json()
    assert status["push"]["status"] == "push_failed" and "400" in status["push"]["errors"][0]["message"]
    again = client.post(f"/api/v1/renders/{render_id}/push", headers=auth)
    assert again.status_code == 202 and again.get_json()["assets"] == 4
    run_jobs(app, redis)
    assert client.get(f"/api/v1/renders/{render_id}", headers=auth).get_json()["push"]["status"] == "pushed"
    assert len(receiver.messages) == 2
    first, second = (h["X-Catalog-Delivery-Id"] for h, _ in receiver.messages)
    assert first == second  # the same assets again: the receiver can tell it is a repeat


@pytest.mark.slow
def test_review_mode_holds_assets_until_pushed(
        app, client, redis, webhooks, image_server, receiver, model_session, shop) -> None:
    """With publish_mode=review nothing reaches the shop until the merchant approves and pushes."""
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop[0])
            row.settings = settings_with_defaults({**row.settings, "publish_mode": "review"})
    render_id = send(webhooks, image_server)
    run_jobs(app, redis)
    assert receiver.messages == []
    auth = {"Authorization": f"Bearer {shop[1]}"}
    assert client.get(f"/api/v1/renders/{render_id}", headers=auth).get_json()["push"]["status"] == "held"
    assert client.post(f"/api/v1/renders/{render_id}/push", headers=auth).status_code == 409  # none approved
    assert client.post(f"/api/v1/renders/{render_id}/push", headers=auth,
                       json={"approve_held": True}).status_code == 202
    run_jobs(app, redis)
    assert len(receiver.messages) == 1


@pytest.mark.slow
def test_rejecting_a_pushed_asset_on_a_callback_shop_says_to_remove_it_there(
        app, client, redis, webhooks, image_server, receiver, model_session, shop) -> None:
    """A callback cannot be asked to take an image off: the takedown keeps the asset pushed, with the reason."""
    render_id = send(webhooks, image_server)
    run_jobs(app, redis)
    asset = render_of(app, render_id).assets[0]
    auth = {"Authorization": f"Bearer {shop[1]}"}
    assert client.post(f"/api/v1/assets/{asset.id}/reject", headers=auth).status_code == 202
    run_jobs(app, redis)
    after = next(a for a in render_of(app, render_id).assets if a.id == asset.id)
    assert after.push_status == PushStatus.PUSHED
    assert after.push_error and "remove it in the shop's admin" in after.push_error
    assert len(receiver.messages) == 1


def render_with_a_cutout(app, shop_id: int, product_id: str = "8") -> int:  # type: ignore[no-untyped-def]
    """A finished render with one pending cutout (its file stored), as a render job leaves it."""
    from catalog_service.models import Asset, AssetKind, Product

    with app.app_context():
        storage = app.extensions["catalog"].storage
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=shop_id, external_id=product_id, title="Cup")
            session.add(product)
            session.flush()
            render = Render(shop_id=shop_id, product_id=product.id, status=RenderStatus.SUCCEEDED)
            session.add(render)
            session.flush()
            session.add(Asset(shop_id=shop_id, render_id=render.id, kind=AssetKind.CUTOUT,
                              storage_key=storage.put((FIXTURES / "coffee.png").read_bytes(), ext="png"),
                              content_type="image/png", width=10, height=10, bytes=10))
            return render.id


def push(app, redis, render_id: int):  # type: ignore[no-untyped-def]
    """Queue the render's push and run it in a worker; the render's one asset afterwards."""
    from jobs.queues import PUSHES, enqueue_push

    enqueue_push(redis, render_id, timeout_s=60)
    run_jobs(app, redis, [PUSHES])
    (asset,) = render_of(app, render_id).assets
    return asset


@pytest.mark.parametrize(("template", "words"), [
    ("\ud800 {title}", "not valid Unicode"),  # saved through the API before surrogates were refused
    ("{title", "Correct the template"),  # saved before templates were checked
])
def test_a_push_that_fails_on_the_shops_own_data_records_why(app, redis, shop, template: str, words: str) -> None:
    """An alt-text template no push can use marks the asset failed with the reason, not `pending` for ever."""
    render_id = render_with_a_cutout(app, shop[0])
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop[0])
            row.settings = {**row.settings, "alt_template": template}  # as stored then, unchecked
    asset = push(app, redis, render_id)
    assert asset.push_status == PushStatus.FAILED
    assert asset.push_error and words in asset.push_error and "push again" in asset.push_error


def test_a_generic_product_id_the_folder_store_cannot_name_is_pushed(app, redis, shop) -> None:
    """A product id like `SKU 12/A` goes to a derived folder on the folder store instead of failing each push."""
    from catalog_service.stores.folder import product_folder_name

    asset = push(app, redis, render_with_a_cutout(app, shop[0], "SKU 12/A"))
    assert asset.push_status == PushStatus.PUSHED, asset.push_error
    shop_dir = Path(app.extensions["catalog"].config.folder_store_dir) / f"shop-{shop[0]}"
    assert (shop_dir / product_folder_name("SKU 12/A") / asset.external_id).is_file()
