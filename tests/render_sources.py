"""A product whose photo changed between two renders, for the tests of each render's own original."""

from __future__ import annotations

from pathlib import Path

from catalog_service.models import Render, RenderStatus
from support import run_jobs

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def two_renders_of_a_changed_photo(app, redis, webhooks, image_server):  # type: ignore[no-untyped-def]
    """A product rendered from one photo, then its photo replaced and rendered again; the first photo then
    vanishes from the shop's host. Returns (first render id, second render id, first url, second url)."""
    first = image_server.serve("/cup.png", (FIXTURES / "coffee.png").read_bytes())
    second = image_server.serve("/rocket.jpg", (FIXTURES / "rocket.jpg").read_bytes(), content_type="image/jpeg")
    product = {"id": 7, "title": "Espresso cup"}
    sent = webhooks.send("product.created", {**product, "images": [{"id": 1, "src": first}]})
    first_id = sent.get_json()["render_id"]
    run_jobs(app, redis)
    sent = webhooks.send("product.updated", {**product, "images": [{"id": 2, "src": second}]})
    second_id = sent.get_json()["render_id"]
    run_jobs(app, redis)
    del image_server.files["/cup.png"]  # the shop deleted the old photo
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        for render_id in (first_id, second_id):
            render = session.get(Render, render_id)
            assert render.status == RenderStatus.SUCCEEDED, render.last_error
    return first_id, second_id, first, second
