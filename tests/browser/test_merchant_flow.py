"""The merchant's pages in real headless Chromium, against the real app on a loopback port and a real worker.

Screenshots land in tests/artifacts/ (ignored by git) so a reader can look at the pages.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from sqlalchemy import select

from browsing import browser_errors, continue_sign_in, field, images_loaded, save_settings, shot, wait
from catalog_service.models import Asset, Product, PushStatus, ReferenceImage, Render, Shop, SourceImage
from catalog_service.shops import create_shop
from support import run_jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_merchant_signs_in_sets_up_regenerates_and_approves(live, browser, image_server) -> None:
    """Sign in by link, fix a settings error, upload references, regenerate, watch it finish, approve."""
    app, base = live.app, live.base
    photo = image_server.serve("/mug.jpg", (FIXTURES / "rocket.jpg").read_bytes(), content_type="image/jpeg")
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop, api_key, _secret = create_shop(session, platform="folder", domain="mug-shop.local", name="Mug Shop")
        product = Product(shop_id=shop.id, external_id="4242", title="Rocket mug")
        session.add(product)
        session.flush()
        session.add(SourceImage(shop_id=shop.id, product_id=product.id, external_id="1", src=photo))
        shop_id = shop.id

    # 1. A platform fetches a sign-in link with the shop's key; the merchant opens it.
    answer = requests.post(f"{base}/api/v1/shops/{shop_id}/login-link",
                           headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    continue_sign_in(browser, answer.json()["url"], shot_name="00-signin-continue")
    wait(browser, lambda d: d.current_url.endswith(f"/shops/{shop_id}/settings"), "not signed in")
    cookie = browser.get_cookie("session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Settings"
    shot(browser, "01-settings")

    # 2. A bad budget is refused beside the field; nothing is saved.
    budget = field(browser, "f-monthly_budget_usd")
    budget.clear()
    budget.send_keys("-5")
    Select(field(browser, "f-publish_mode")).select_by_value("review")
    browser.find_element(By.CSS_SELECTOR, "#settings-form button[type=submit]").click()
    error = wait(browser, lambda d: d.find_elements(By.ID, "f-monthly_budget_usd-error"), "no field error")[0]
    assert "greater than or equal to 0" in error.text
    assert "Nothing was saved" in browser.find_element(By.ID, "error-summary").text
    shot(browser, "02-settings-validation-error")
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Shop, shop_id).settings["publish_mode"] == "auto"

    # ... then fixed, with review-first publishing and a new preset added with the keyboard-usable button.
    budget = field(browser, "f-monthly_budget_usd")
    budget.clear()
    budget.send_keys("35")
    assert Select(field(browser, "f-publish_mode")).first_selected_option.get_attribute("value") == "review"
    field(browser, "f-cutout-square").click()
    browser.execute_script("document.querySelector('[data-add-preset]').scrollIntoView({block: 'center'})")
    browser.find_element(By.CSS_SELECTOR, "[data-add-preset]").click()
    name = wait(browser, lambda d: d.switch_to.active_element, "no focus")
    assert name.get_attribute("name") == "presets.0.name"
    name.clear()
    name.send_keys("window-light")
    save_settings(browser)
    with app.app_context():
        saved = app.extensions["catalog_db"].session().get(Shop, shop_id).settings
    assert saved["monthly_budget_usd"] == 35.0 and saved["publish_mode"] == "review"
    assert saved["cutout"]["square"] is True and saved["presets"][0]["name"] == "window-light"

    # Presets reorder and go away with the keyboard alone.
    add = browser.find_element(By.CSS_SELECTOR, "[data-add-preset]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", add)
    add.send_keys(Keys.ENTER)
    browser.switch_to.active_element.send_keys("evening")
    browser.find_elements(By.CSS_SELECTOR, "[data-preset]")[1].find_element(
        By.CSS_SELECTOR, "[data-move='-1']").send_keys(Keys.ENTER)
    save_settings(browser)
    with app.app_context():
        saved = app.extensions["catalog_db"].session().get(Shop, shop_id).settings
    assert [p["name"] for p in saved["presets"]] == ["evening", "window-light"]
    remove = browser.find_elements(By.CSS_SELECTOR, "[data-preset]")[0].find_element(By.CSS_SELECTOR, "[data-remove]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", remove)
    remove.send_keys(Keys.SPACE)
    save_settings(browser)
    with app.app_context():
        saved = app.extensions["catalog_db"].session().get(Shop, shop_id).settings
    assert [p["name"] for p in saved["presets"]] == ["window-light"]

    # 3. Reference images: a bad file is explained beside the picker; a good one by picker, another dropped.
    bad = Path(tempfile.mkdtemp()) / "not-a-photo.jpg"
    bad.write_bytes(b"<html><body>oops</body></html>")
    field(browser, "reference-file").send_keys(str(bad))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    upload_error = wait(browser, lambda d: [e for e in d.find_elements(By.ID, "upload-error") if e.is_displayed()],
                        "no upload error")[0]
    assert "not-a-photo.jpg" in upload_error.text and "web page" in upload_error.text
    shot(browser, "03-reference-upload-error")
    field(browser, "reference-file").send_keys(str(FIXTURES / "rocket.jpg"))
    wait(browser, lambda d: images_loaded(d, "[data-previews] img"), "no preview")
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    wait(browser, lambda d: images_loaded(d, ".ref-list img"), "uploaded photo not shown")
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const canvas = document.createElement('canvas');
        canvas.width = 240; canvas.height = 160;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = '#d9a441'; ctx.fillRect(0, 0, 240, 160);
        ctx.fillStyle = '#2d5d7b'; ctx.fillRect(30, 40, 120, 80);
        canvas.toBlob(blob => {
          const data = new DataTransfer();
          data.items.add(new File([blob], 'dropped-style.png', {type: 'image/png'}));
          const zone = document.querySelector('[data-dropzone]');
          zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true}));
          zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
          done();
        }, 'image/png');
    """)
    wait(browser, lambda d: images_loaded(d, "[data-previews] img"), "no preview of the dropped photo")
    shot(browser, "04-reference-dropped-preview")
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".ref-list img")) == 2
         and images_loaded(d, ".ref-list img"), "dropped photo not uploaded")
    with app.app_context():
        names = sorted(app.extensions["catalog_db"].session().scalars(select(ReferenceImage.name)))
    assert names == ["dropped-style.png", "rocket.jpg"]
    shot(browser, "05-settings-with-references")
    browser_errors(browser)  # the two refusals above were 400s on purpose; from here on, nothing may fail

    # 4. Regenerate from the gallery with chosen scenes; the card appears and follows the work live.
    browser.find_element(By.LINK_TEXT, "Renders").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Renders", "no gallery")
    Select(browser.find_element(By.ID, "regen-product")).select_by_value("4242")
    for box in browser.find_elements(By.CSS_SELECTOR, "#regenerate-form input[name=scenes]"):
        if box.is_selected() != (box.get_attribute("value") in ("studio", "marble-counter")):
            browser.execute_script("arguments[0].click()", box)
    # The offline scene maker draws fixed scenes: the form says so instead of offering a prompt it would ignore.
    assert browser.find_elements(By.ID, "regen-prompt") == []
    assert "ignores prompts" in browser.find_element(By.ID, "regenerate-form").text
    browser.find_element(By.CSS_SELECTOR, "#regenerate-form button[type=submit]").click()
    render_id = int(wait(browser, lambda d: d.execute_script(
        "const card = document.querySelector('[data-render-id]'); return card && card.dataset.renderId"),
        "no new card"))
    assert browser.find_element(By.ID, f"render-{render_id}").get_attribute("data-status") in ("queued", "running")
    shot(browser, "06-renders-queued")
    with app.app_context():
        options = app.extensions["catalog_db"].session().get(Render, render_id).options
    assert options.get("scenes") == ["studio", "marble-counter"] and not options.get("prompt")

    run_jobs(app, live.redis, ("renders",))  # the worker, in this thread; the page polls meanwhile

    def finished(driver: webdriver.Chrome) -> bool:
        card = driver.find_element(By.ID, f"render-{render_id}")
        return (card.get_attribute("data-status") in ("succeeded", "partial")
                and images_loaded(driver, f"#render-{render_id} img[data-thumb]"))

    wait(browser, finished, "the card did not update to a finished render with loaded thumbnails")
    card = browser.find_element(By.ID, f"render-{render_id}")
    alts = [img.get_attribute("alt") for img in card.find_elements(By.CSS_SELECTOR, "img[data-thumb]")]
    assert "Cutout" in alts and "White background" in alts and "Scene: studio" in alts, alts
    assert card.find_element(By.CSS_SELECTOR, "img[alt='Original photo']")
    assert "Waiting for your review" in card.text
    shot(browser, "07-renders-done-review")

    # 5. Approve one asset: it leaves review and is sent; the push lands in the (folder) shop.
    approve = card.find_element(By.CSS_SELECTOR, "button[data-asset-action=approve]")
    asset_id = int(approve.get_attribute("data-asset-id"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", approve)
    approve.click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"[data-asset-id='{asset_id}']")
         .get_attribute("data-push-status") == "pending", "approve did not change the asset")
    run_jobs(app, live.redis, ("pushes",))
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Asset, asset_id).push_status == PushStatus.PUSHED
    browser.refresh()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"li[data-asset-id='{asset_id}']")
         .get_attribute("data-push-status") == "pushed", "pushed status not shown")
    assert "In your shop" in browser.find_element(By.CSS_SELECTOR, f"li[data-asset-id='{asset_id}']").text
    shot(browser, "08-renders-approved")
    assert browser_errors(browser) == []

    # 6. Phone width: the same pages, one column, nothing cut off.
    browser.set_window_size(390, 844)
    time.sleep(0.3)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(browser, "09-renders-phone")
    browser.find_element(By.LINK_TEXT, "Settings").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Settings", "no settings page")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(browser, "10-settings-phone")


def test_another_shops_pages_are_refused_in_the_browser(live, browser) -> None:
    """Signed in as one shop, the other shop's settings page is a 403 page that says why."""
    app, base = live.app, live.base
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        mine, key, _ = create_shop(session, platform="folder", domain="a.local")
        theirs, _, _ = create_shop(session, platform="folder", domain="b.local")
        mine_id, theirs_id = mine.id, theirs.id
    url = requests.post(f"{base}/api/v1/shops/{mine_id}/login-link", headers={"Authorization": f"Bearer {key}"},
                        timeout=10).json()["url"]
    continue_sign_in(browser, url)
    wait(browser, lambda d: d.current_url.endswith(f"/shops/{mine_id}/settings"), "not signed in")
    browser.get(f"{base}/shops/{theirs_id}/settings")
    assert "Not your shop" in browser.find_element(By.TAG_NAME, "h1").text
    browser.get(url)  # the link was spent
    assert "already used" in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "11-link-already-used")


def test_opening_a_sign_in_link_spends_nothing_until_continue(live, browser) -> None:
    """A link scanner's fetch (the same GET) leaves the link working; the page shows a Continue button, desktop and
    phone width, and only pressing it signs the browser in."""
    app, base = live.app, live.base
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop, key, _ = create_shop(session, platform="folder", domain="scan.local", name="Scanned Shop")
        shop_id = shop.id
    url = requests.post(f"{base}/api/v1/shops/{shop_id}/login-link", headers={"Authorization": f"Bearer {key}"},
                        timeout=10).json()["url"]
    scanned = requests.get(url, timeout=10, allow_redirects=False)  # what a mail scanner does
    assert scanned.status_code == 200 and "Continue" in scanned.text
    browser.get(url)
    assert "Sign in to Scanned Shop" in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.get_cookie("session") is None or requests.get(
        f"{base}/shops/{shop_id}/settings", cookies={"session": browser.get_cookie("session")["value"]},
        timeout=10).status_code == 401
    shot(browser, "12-signin-continue")
    browser.set_window_size(390, 844)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(browser, "12-signin-continue-phone")
    browser.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    wait(browser, lambda d: d.current_url.endswith(f"/shops/{shop_id}/settings"), "not signed in")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Settings"
