"""The app as a whole: ids past the database's range, streamed bodies past the cap, headers on every answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from werkzeug.serving import make_server

from catalog_service.app import MAX_DATABASE_ID, create_app

HUGE = 2**63  # past SQLite's range; MAX_DATABASE_ID + 1 is past PostgreSQL's


@pytest.mark.both_databases
@pytest.mark.parametrize("path", [
    "/api/v1/renders/{huge}",
    "/api/v1/shops/{shop}/reference-images/{huge}",
    "/api/v1/shops/{huge}/usage",
    "/webhooks/generic/{huge}",
    "/shops/{huge}/settings",
])
def test_ids_past_the_databases_range_are_404(client, shop, path: str) -> None:
    """An id past what the id columns hold is no row of ours: 404, not an overflow (500 or 503)."""
    shop_id, key, _ = shop
    method = "delete" if "reference-images" in path else "post" if "webhooks" in path else "get"
    for huge in (HUGE, MAX_DATABASE_ID + 1):
        response = getattr(client, method)(path.format(huge=huge, shop=shop_id),
                                           headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 404, (huge, response.get_data(as_text=True))
    response = client.get(f"/api/v1/renders/{MAX_DATABASE_ID}", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404 and "No render" in response.get_json()["error"]["message"]


@pytest.fixture
def served(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app behind Werkzeug's own server on loopback, which decodes chunked bodies as gunicorn does."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_chunked_body_past_the_cap_is_413(app, served, shop) -> None:
    """A signed-or-not webhook streamed in chunks past MAX_CONTENT_LENGTH is refused as too large (413), as
    one with a Content-Length would be; it was verified truncated and answered 401. A small one still reads."""
    cap = app.config["MAX_CONTENT_LENGTH"]

    def chunks(total: int) -> Iterator[bytes]:
        for start in range(0, total, 65536):
            yield b" " * min(65536, total - start)

    url = f"{served}/webhooks/generic/{shop[0]}"
    headers = {"Content-Type": "application/json", "X-Catalog-Signature": "sha256=" + "0" * 64}
    big = requests.post(url, data=chunks(cap + 1), headers=headers, timeout=30)
    assert big.status_code == 413 and "larger than" in big.json()["error"]["message"]
    small = requests.post(url, data=chunks(100), headers=headers, timeout=30)
    assert small.status_code == 401  # read whole, then judged by its signature


def test_json_answers_carry_nosniff_and_no_store(client, shop, webhooks) -> None:
    """API, webhook and error answers: nosniff, and JSON is never cached; no HSTS on plain http."""
    shop_id, key, _ = shop
    for response in (client.get(f"/api/v1/shops/{shop_id}/settings", headers={"Authorization": f"Bearer {key}"}),
                     client.get("/api/v1/renders/1"),
                     webhooks.send("product.created", {"id": 1, "title": "Mug", "images": []})):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in response.headers


def test_assets_carry_nosniff_and_https_adds_hsts(app_config, redis, shop) -> None:  # type: ignore[no-untyped-def]
    """A downloaded asset is nosniff; with an https public URL every answer has HSTS, pages too."""
    from catalog_service.signed_links import signed_url

    secure = create_app({**app_config, "public_url": "https://catalog.example.com"})
    try:
        client = secure.test_client()
        key = secure.extensions["catalog"].storage.put(b"\x89PNG\r\n\x1a\n" + b"0" * 32, ext="png")
        link = signed_url(secure.extensions["catalog"].config, key)
        asset = client.get(link.split("catalog.example.com", 1)[1])
        asset.close()
        assert asset.status_code == 200 and asset.headers["X-Content-Type-Options"] == "nosniff"
        for response in (asset, client.get("/healthz"), client.get(f"/shops/{shop[0]}/settings")):
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        secure.extensions["catalog"].close()
