"""Render cards in real headless Chromium: what happened to the images, each error once, no broken images."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from browsing import browser_errors, shot, sign_in, wait
from catalog_service.models import Asset, AssetKind, Product, PushStatus, Render, RenderStatus, SourceImage
from catalog_service.shops import create_shop
from support import run_jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STORE_WORDS = "The shop answered 503: its media library is full."


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 90), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


def seed(app, photo: str) -> tuple[int, str, int, int]:  # type: ignore[no-untyped-def]
    """A folder shop; one render whose push failed for good, one whose scene file is gone from storage."""
    storage = app.extensions["catalog"].storage
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop, api_key, _secret = create_shop(session, platform="folder", domain="cards.local", name="Cards")
        product = Product(shop_id=shop.id, external_id="77", title="Teal vase")
        session.add(product)
        session.flush()
        session.add(SourceImage(shop_id=shop.id, product_id=product.id, external_id="1", src=photo))
        rows = []
        for push_status, error, keys in ((PushStatus.FAILED, STORE_WORDS, ("ok", "ok")),
                                         (PushStatus.PUSHED, None, ("ok", "gone"))):
            render = Render(shop_id=shop.id, product_id=product.id, status=RenderStatus.SUCCEEDED, trigger="manual")
            session.add(render)
            session.flush()
            for (kind, preset), key in zip(((AssetKind.CUTOUT, ""), (AssetKind.SCENE, "studio")), keys, strict=True):
                storage_key = storage.put(png(), ext="png") if key == "ok" else "gone/missing.png"
                session.add(Asset(shop_id=shop.id, render_id=render.id, kind=kind, preset=preset,
                                  storage_key=storage_key, content_type="image/png", width=120, height=90, bytes=100,
                                  push_status=push_status, push_error=error, push_attempts=5 if error else 1))
            rows.append(render.id)
        return shop.id, api_key, rows[0], rows[1]


def test_cards_say_what_happened_and_never_show_a_broken_image(live, browser, image_server) -> None:
    """Not sent is not "Done"; the store's words once; send again works; missing photos become placeholders."""
    app, base = live.app, live.base
    shop_id, api_key, not_sent, gone = seed(app, image_server.base + "/deleted-photo.jpg")
    sign_in(browser, base, shop_id, api_key)
    browser.get(f"{base}/shops/{shop_id}/renders")

    card = browser.find_element(By.ID, f"render-{not_sent}")
    assert "Made, but not sent to your shop" in card.find_element(By.CSS_SELECTOR, "[data-status-label]").text
    assert card.text.count(STORE_WORDS) == 1 and "after 5 attempts" in card.text
    # The original's address answers 404, the second render's scene file is gone: placeholders, with the reason.
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".thumb-missing")) == 3, "no placeholders")
    assert not browser.execute_script(
        "return [...document.querySelectorAll('.render-card img')].filter(i => i.complete && !i.naturalWidth).length")
    other = browser.find_element(By.ID, f"render-{gone}")
    assert "no longer in our storage" in other.text and "can no longer be loaded" in other.text
    # The offline compositor ignores prompts, and the page says so rather than offering a prompt box.
    assert "ignores prompts" in browser.find_element(By.CSS_SELECTOR, "#regenerate-form [data-offline-note]").text
    assert not browser.find_elements(By.CSS_SELECTOR, "textarea[name=prompt]")
    shot(browser, "12-render-cards-not-sent")
    browser.set_window_size(390, 844)
    shot(browser, "13-render-cards-not-sent-phone")
    browser.set_window_size(1280, 900)

    button = card.find_element(By.CSS_SELECTOR, "[data-push]")
    assert button.text == "Send again"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait(browser, lambda d: d.find_element(By.ID, f"render-{not_sent}").get_attribute("data-push-status") == "pending",
         "the card did not show the push under way")
    run_jobs(app, live.redis)
    wait(browser, lambda d: d.find_element(By.ID, f"render-{not_sent}").get_attribute("data-push-status") == "pushed",
         "the card did not follow the push to its end")
    assert browser.find_element(By.ID, f"render-{not_sent}").find_element(
        By.CSS_SELECTOR, "[data-status-label]").text == "Done"
    shot(browser, "14-render-cards-sent-again")
    assert not [e for e in browser_errors(browser) if "404" not in e]
