"""The gallery card shows the photo its render was made from, not the product's current one."""

from __future__ import annotations

import html

import pytest

from catalog_service.models import Render
from render_sources import two_renders_of_a_changed_photo


@pytest.mark.slow
def test_an_old_card_shows_its_own_original_after_the_photo_changes(
        app, redis, client, merchant, webhooks, image_server, model_session) -> None:
    """After the product's photo changes, the older render's card (and the gallery) show that render's kept copy
    of its photo, and only the newer card shows the product's new photo."""
    first_id, second_id, _first_url, second_url = two_renders_of_a_changed_photo(app, redis, webhooks, image_server)
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        first_key, second_key = (session.get(Render, i).source_thumb_key for i in (first_id, second_id))
    assert first_key and second_key and first_key != second_key

    old_card = html.unescape(merchant.get(f"/shops/{merchant.id}/renders/{first_id}/card").get_data(as_text=True))
    new_card = html.unescape(merchant.get(f"/shops/{merchant.id}/renders/{second_id}/card").get_data(as_text=True))
    gallery = html.unescape(merchant.get(f"/shops/{merchant.id}/renders").get_data(as_text=True))

    assert f"/assets/{first_key}?token=" in old_card and second_url not in old_card
    assert f"/assets/{second_key}?token=" in new_card and f"/assets/{first_key}" not in new_card
    assert f"/assets/{first_key}?token=" in gallery and f"/assets/{second_key}?token=" in gallery
