"""Backfills through the API: a generic shop sends its catalog, sees the estimate, starts, and every product is
rendered once by a real worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalog_service.models import Backfill, BackfillItem, Render
from support import run_jobs


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


PHOTO = (Path(__file__).parent / "fixtures" / "rocket.jpg").read_bytes()


def products(image_server, count: int, *, start: int = 1, **fields: Any) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The generic webhook's product shape, each with one photo served on loopback."""
    src = image_server.serve("/product.jpg", PHOTO, "image/jpeg")
    return [{"id": str(number), "title": f"Mug {number}", "images": [{"id": f"img-{number}", "src": src}], **fields}
            for number in range(start, start + count)]


def test_a_dry_run_estimates_and_spends_nothing(client, shop, image_server) -> None:  # type: ignore[no-untyped-def]
    shop_id, key, _ = shop
    answer = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key),
                         json={"dry_run": True, "products": products(image_server, 3)})
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "ready"
    assert body["estimate"]["products"] == 3
    assert body["estimate"]["cost_usd"] == 0  # the offline compositor costs nothing
    assert body["estimate"]["time_s"] > 0
    assert answer.headers["Location"].endswith(f"/backfills/{body['id']}")
    assert body["total"] == 3 and body["remaining"] == 3 and body["done"] == 0


def test_a_started_backfill_renders_each_product_once(app, client, shop, image_server, redis) -> None:  # type: ignore[no-untyped-def]
    shop_id, key, _ = shop
    created = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key),
                          json={"dry_run": True, "scenes": ["studio"], "products": products(image_server, 2)})
    backfill_id = created.get_json()["id"]
    more = client.post(f"/api/v1/shops/{shop_id}/backfills/{backfill_id}/products", headers=bearer(key),
                       json={"products": products(image_server, 2, start=2)})
    assert more.status_code == 200 and more.get_json()["added"] == 1  # product 2 was already in it
    assert more.get_json()["estimate"]["products"] == 3

    started = client.post(f"/api/v1/shops/{shop_id}/backfills/{backfill_id}/start", headers=bearer(key))
    assert started.status_code == 200 and started.get_json()["status"] == "running"
    assert client.post(f"/api/v1/shops/{shop_id}/backfills/{backfill_id}/start",
                       headers=bearer(key)).status_code == 409
    run_jobs(app, redis)

    shown = client.get(f"/api/v1/shops/{shop_id}/backfills/{backfill_id}", headers=bearer(key)).get_json()
    assert (shown["status"], shown["done"], shown["remaining"], shown["failed"]) == ("done", 3, 0, 0)
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        renders = session.query(Render).filter(Render.trigger == "backfill").all()
        assert sorted(r.product.external_id for r in renders) == ["1", "2", "3"]
        assert all(r.options["scenes"] == ["studio"] for r in renders)

    # The same catalog again, with the same photos and settings: nothing to do.
    again = client.post(f"/api/v1/shops/{shop_id}/backfills", headers=bearer(key),
                        json={"dry_run": False, "scenes": ["studio"], "products": products(image_server, 3)})
    assert again.status_code == 201
    assert (again.get_json()["skipped"], again.get_json()["status"]) == (3, "done")


def test_bad_bodies_get_clear_errors(client, shop, image_server) -> None:  # type: ignore[no-untyped-def]
    shop_id, key, _ = shop
    url = f"/api/v1/shops/{shop_id}/backfills"
    bad_filter = client.post(url, headers=bearer(key), json={"filters": {"status": "sold"}})
    assert bad_filter.status_code == 400 and "status" in bad_filter.get_json()["error"]["fields"]["filters"]
    assert client.post(url, headers=bearer(key), json={"scenes": ["nope"]}).status_code == 400
    nul = client.post(url, headers=bearer(key), json={"products": [{"id": "1", "title": "a\u0000b"}]})
    assert nul.status_code == 400
    assert client.get(f"{url}/999999", headers=bearer(key)).status_code == 404
    assert client.post(url, headers=bearer("wrong"), json={}).status_code == 401


def test_pause_and_cancel(app, client, shop, image_server, redis) -> None:  # type: ignore[no-untyped-def]
    shop_id, key, _ = shop
    url = f"/api/v1/shops/{shop_id}/backfills"
    backfill_id = client.post(url, headers=bearer(key), json={"products": products(image_server, 5)}).get_json()["id"]
    assert client.post(f"{url}/{backfill_id}/pause", headers=bearer(key)).status_code == 409  # not running
    client.post(f"{url}/{backfill_id}/start", headers=bearer(key))
    paused = client.post(f"{url}/{backfill_id}/pause", headers=bearer(key)).get_json()
    assert paused["status"] == "paused" and paused["queued"] == 2  # the feeder's depth: the rest waits
    run_jobs(app, redis)
    assert client.get(f"{url}/{backfill_id}", headers=bearer(key)).get_json()["status"] == "paused"
    cancelled = client.post(f"{url}/{backfill_id}/cancel", headers=bearer(key)).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["done"] == 2 and cancelled["skipped"] == 3
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        assert session.query(BackfillItem).count() == 5
        assert session.get(Backfill, backfill_id).finished_at is not None
