"""Scene cards in real headless Chromium: how faithful the product is, why a scene waits for review, the AI
marking and what a paid scene cost against its estimate, at desktop and phone width."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from browsing import browser_errors, images_loaded, shot, sign_in, wait
from catalog_service.imaging.fidelity import Fidelity
from catalog_service.models import Asset, AssetKind, Product, PushStatus, Render, RenderStatus, SourceImage
from catalog_service.scenes.base import COMPOSITE_SOURCE, GENERATED_SOURCE
from catalog_service.shops import create_shop
from support import run_jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEPT = Fidelity(delta_e=0.84, ssim=0.9712)
"""The exact-product composite: the product's own pixels laid back over the scene."""
CHANGED = Fidelity(delta_e=9.31, ssim=0.6123)
"""A scene whose model redrew the product (`product_lock: model`) and recoloured it."""


def png(color: tuple[int, int, int], size: tuple[int, int] = (160, 160)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def seed(app, photo: str) -> tuple[int, str, int, dict[str, int]]:  # type: ignore[no-untyped-def]
    """A folder shop publishing at once, and one finished render of a vase: its cutout, an exact-product scene
    that passed the fidelity check and was sent, and a redrawn scene held because the product changed."""
    storage = app.extensions["catalog"].storage
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop, api_key, _secret = create_shop(session, platform="folder", domain="scenes.local", name="Scenes")
        product = Product(shop_id=shop.id, external_id="77", title="Teal vase")
        session.add(product)
        session.flush()
        session.add(SourceImage(shop_id=shop.id, product_id=product.id, external_id="1", src=photo))
        render = Render(shop_id=shop.id, product_id=product.id, status=RenderStatus.SUCCEEDED, trigger="manual")
        session.add(render)
        session.flush()
        rows = {
            "cutout": Asset(kind=AssetKind.CUTOUT, preset="", push_status=PushStatus.PUSHED,
                            storage_key=storage.put(png((30, 120, 200)), ext="png")),
            "kept": Asset(kind=AssetKind.SCENE, preset="window-light", push_status=PushStatus.PUSHED,
                          storage_key=storage.put(png((210, 190, 160)), ext="png"), cost_usd=0.0421,
                          estimate_usd=0.0398, fidelity=KEPT.as_dict(), source_type=COMPOSITE_SOURCE),
            "changed": Asset(kind=AssetKind.SCENE, preset="sunny-terrace-with-long-name", push_status=PushStatus.HELD,
                             storage_key=storage.put(png((90, 140, 60)), ext="png"), cost_usd=0.1673,
                             estimate_usd=0.167, fidelity=CHANGED.as_dict(), hold_reason=CHANGED.reason(),
                             source_type=GENERATED_SOURCE),
        }
        for asset in rows.values():
            asset.shop_id, asset.render_id, asset.content_type = shop.id, render.id, "image/png"
            asset.width, asset.height, asset.bytes = 160, 160, 100
            session.add(asset)
        session.flush()
        return shop.id, api_key, render.id, {name: asset.id for name, asset in rows.items()}


def thumb(driver: webdriver.Chrome, asset_id: int) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f"li[data-asset-id='{asset_id}']")


def overflow(driver: webdriver.Chrome, card: WebElement) -> list[str]:
    """What sticks out of the card, or out of its own thumbnail cell, or scrolls sideways inside itself."""
    return driver.execute_script("""
        const card = arguments[0], out = [];
        // A closed <details> still lays its content out, unseen: only what can be seen counts.
        const inside = (el, box) => {
          const r = el.getBoundingClientRect();
          if (!el.checkVisibility() || !r.width || !r.height) return true;
          return r.left >= box.left - 0.5 && r.right <= box.right + 0.5;
        };
        const name = el => el.tagName.toLowerCase() + (el.className ? '.' + el.className.split(' ').join('.') : '');
        if (card.scrollWidth > card.clientWidth + 1) out.push('the card scrolls sideways');
        const cardBox = card.getBoundingClientRect();
        for (const el of card.querySelectorAll('*')) {
          if (!inside(el, cardBox)) out.push(name(el) + ' leaves the card');
          if (el.checkVisibility() && getComputedStyle(el).display !== 'inline' && el.scrollWidth > el.clientWidth + 1)
            out.push(name(el) + ' is wider than its box: ' + el.scrollWidth + ' > ' + el.clientWidth);
        }
        for (const cell of card.querySelectorAll('li.thumb')) {
          const box = cell.getBoundingClientRect();
          for (const el of cell.querySelectorAll('*'))
            if (!inside(el, box)) out.push(name(el) + ' of asset ' + cell.dataset.assetId + ' leaves its cell');
        }
        return out;""", card)


def test_scene_cards_show_fidelity_the_review_reason_the_ai_mark_and_cost_beside_estimate(  # type: ignore[no-untyped-def]
        live, browser, image_server) -> None:
    """A kept product shows its figures; a changed one says why it waits and can be approved; AI-made scenes say
    so and the cutout does not; each paid scene shows its cost beside its estimate; nothing overflows on a phone."""
    app, base = live.app, live.base
    photo = image_server.serve("/vase.png", png((30, 120, 200)))
    shop_id, api_key, render_id, assets = seed(app, photo)
    sign_in(browser, base, shop_id, api_key)
    browser.get(f"{base}/shops/{shop_id}/renders")
    wait(browser, lambda d: images_loaded(d, f"#render-{render_id} img[data-thumb]"), "the thumbnails did not load")

    kept, changed, cutout = (thumb(browser, assets[name]) for name in ("kept", "changed", "cutout"))
    # The exact-product scene: the product kept, with the two figures, marked as AI-made, cost beside estimate.
    fidelity = kept.find_element(By.CSS_SELECTOR, "[data-fidelity]")
    assert fidelity.text == "product kept: colour difference 0.8, structure 0.97"
    assert "fidelity-ok" in fidelity.get_attribute("class")
    assert kept.find_element(By.CSS_SELECTOR, "[data-ai-mark]").text == "Marked as AI-made"
    assert kept.find_element(By.CSS_SELECTOR, "[data-cost]").text == "$0.042 (estimated $0.040)"
    assert not kept.find_elements(By.CSS_SELECTOR, "[data-hold-reason], [data-asset-action]")
    assert "In your shop" in kept.text

    # The redrawn scene waits for review whatever the publish mode, says why, and offers Approve and Reject.
    assert changed.find_element(By.CSS_SELECTOR, "[data-fidelity]").text == (
        "product changed: colour difference 9.3, structure 0.61")
    reason = changed.find_element(By.CSS_SELECTOR, "[data-hold-reason]").text
    assert reason == f"Waits for your review: {CHANGED.reason()}"
    assert "colour difference 9.3 (limit 4)" in reason and "moved, warped or redrawn" in reason
    buttons = changed.find_elements(By.CSS_SELECTOR, "button[data-asset-action]")
    assert [b.text for b in buttons] == ["Approve", "Reject"]
    assert changed.find_element(By.CSS_SELECTOR, "[data-ai-mark]").text == "Marked as AI-made"
    assert changed.find_element(By.CSS_SELECTOR, "[data-cost]").text == "$0.167 (estimated $0.167)"

    # The cutout: no model touched it, nothing was paid, nothing to measure.
    assert not cutout.find_elements(By.CSS_SELECTOR, "[data-ai-mark], [data-cost], [data-fidelity], [data-hold-reason]")
    card = browser.find_element(By.ID, f"render-{render_id}")
    assert "cost $0.21" in card.find_element(By.CSS_SELECTOR, ".meta").text
    assert not (stuck := overflow(browser, card)), stuck
    shot(browser, "scene-cards-01")

    browser.set_window_size(390, 844)
    wait(browser, lambda d: d.execute_script("return window.innerWidth") <= 400, "the window did not narrow")
    card = browser.find_element(By.ID, f"render-{render_id}")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert not (stuck := overflow(browser, card)), stuck
    shot(browser, "scene-cards-01-phone")
    # Its regenerate form, opened on the phone, stays inside the card too.
    summary = card.find_element(By.CSS_SELECTOR, "details.regenerate-one summary")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    assert card.find_element(By.CSS_SELECTOR, "details.regenerate-one form button[type=submit]").is_displayed()
    assert not (stuck := overflow(browser, card)), stuck
    summary.click()

    # Approve the held scene (on the phone): it leaves review and goes to the shop.
    approve = thumb(browser, assets["changed"]).find_element(By.CSS_SELECTOR, "button[data-asset-action=approve]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", approve)
    approve.click()
    wait(browser, lambda d: thumb(d, assets["changed"]).get_attribute("data-push-status") == "pending",
         "approve did not change the scene")
    assert not thumb(browser, assets["changed"]).find_elements(By.CSS_SELECTOR, "[data-hold-reason]")
    run_jobs(app, live.redis, ("pushes",))
    browser.refresh()
    wait(browser, lambda d: thumb(d, assets["changed"]).get_attribute("data-push-status") == "pushed",
         "the approved scene was not sent")
    changed = thumb(browser, assets["changed"])
    assert "In your shop" in changed.text and "product changed" in changed.text  # the figures stay on record
    assert not (stuck := overflow(browser, browser.find_element(By.ID, f"render-{render_id}"))), stuck
    shot(browser, "scene-cards-02-approved-phone")
    browser.set_window_size(1280, 900)
    assert browser_errors(browser) == []
