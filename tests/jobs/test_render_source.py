"""Each render keeps the photo it was made from: its address and our small copy, after the product's photo changes."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageStat

from catalog_service.imaging.thumbnail import SOURCE_THUMB_MAX_SIDE
from render_sources import FIXTURES, two_renders_of_a_changed_photo


def mean_colour(data: bytes) -> list[float]:
    with Image.open(io.BytesIO(data)) as image:
        return list(ImageStat.Stat(image.convert("RGB").resize((64, 64))).mean)


def distance(one: list[float], two: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(one, two, strict=True)) ** 0.5


def fetch(client, url: str) -> bytes:  # type: ignore[no-untyped-def]
    """A signed link of ours, fetched through the app."""
    parts = urlsplit(url)
    with client.get(f"{parts.path}?{parts.query}") as response:  # closed: the app serves the file itself
        assert response.status_code == 200
        return bytes(response.data)


@pytest.mark.slow
def test_the_api_shows_each_renders_own_photo_after_the_product_photo_changes(
        app, redis, client, shop, webhooks, image_server, model_session) -> None:
    """GET /api/v1/renders/<id> gives the photo that render was made from (address and a small stored copy that
    still loads when the shop's file is gone), not the product's current photo."""
    first_id, second_id, first_url, second_url = two_renders_of_a_changed_photo(app, redis, webhooks, image_server)
    auth = {"Authorization": f"Bearer {shop[1]}"}

    old = client.get(f"/api/v1/renders/{first_id}", headers=auth).get_json()
    new = client.get(f"/api/v1/renders/{second_id}", headers=auth).get_json()

    assert old["source"]["url"] == first_url and new["source"]["url"] == second_url
    assert old["product"]["source_images"] == [second_url]  # the product as it is now
    old_thumb, new_thumb = fetch(client, old["source"]["thumb_url"]), fetch(client, new["source"]["thumb_url"])
    with Image.open(io.BytesIO(old_thumb)) as image:
        assert image.format == "WEBP" and max(image.size) <= SOURCE_THUMB_MAX_SIDE
    cup, rocket = (mean_colour((FIXTURES / name).read_bytes()) for name in ("coffee.png", "rocket.jpg"))
    assert distance(mean_colour(old_thumb), cup) < distance(mean_colour(old_thumb), rocket)
    assert distance(mean_colour(new_thumb), rocket) < distance(mean_colour(new_thumb), cup)


def test_a_render_not_yet_run_has_no_source(app, client, shop, webhooks, image_server) -> None:
    """Before its job fetched a photo, a render's source is empty rather than the product's current photo."""
    src = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    render_id = webhooks.send("product.created", {"id": 7, "title": "Cup", "images": [{"id": 1, "src": src}]}
                              ).get_json()["render_id"]

    answer = client.get(f"/api/v1/renders/{render_id}", headers={"Authorization": f"Bearer {shop[1]}"}).get_json()

    assert answer["source"] == {"url": None, "thumb_url": None}
