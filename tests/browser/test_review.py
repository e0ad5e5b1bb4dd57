"""Review at catalog scale in real headless Chromium: filters, bulk approve and reject, push now that asks first,
and a regenerate picker that searches the whole catalog."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import alert_is_present
from selenium.webdriver.support.ui import Select

from browsing import browser_errors, shot, sign_in, wait
from catalog_service.models import Asset, AssetKind, Product, PushStatus, Render, RenderStatus, Shop, SourceImage
from catalog_service.schemas import settings_with_defaults
from catalog_service.shops import create_shop
from catalog_service.web.renders import PRODUCT_CHOICES
from support import run_jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 90), color).save(out, "PNG")
    return out.getvalue()


def seed(app, photo: str) -> tuple[int, str, dict[str, int]]:  # type: ignore[no-untyped-def]
    """A folder shop in review mode with a catalog bigger than one picker page, and three finished renders:
    two of a vase waiting for review, one of a chair already in the shop."""
    storage = app.extensions["catalog"].storage
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop, api_key, _secret = create_shop(session, platform="folder", domain="review.local", name="Review")
        shop.settings = settings_with_defaults({"publish_mode": "review"})
        for number in range(PRODUCT_CHOICES + 10):
            session.add(Product(shop_id=shop.id, external_id=f"s{number}", title=f"Plain shirt {number}"))
        renders: dict[str, int] = {}
        for external_id, title, names, status in (("88", "Oak chair", ("chair",), PushStatus.PUSHED),
                                                  ("77", "Teal vase", ("first", "second"), PushStatus.HELD)):
            product = Product(shop_id=shop.id, external_id=external_id, title=title)
            session.add(product)
            session.flush()
            session.add(SourceImage(shop_id=shop.id, product_id=product.id, external_id="1", src=photo))
            for name in names:
                render = Render(shop_id=shop.id, product_id=product.id, status=RenderStatus.SUCCEEDED,
                                trigger="manual")
                session.add(render)
                session.flush()
                for kind, preset, color in ((AssetKind.CUTOUT, "", (200, 60, 40)),
                                            (AssetKind.SCENE, "studio", (40, 160, 90))):
                    session.add(Asset(shop_id=shop.id, render_id=render.id, kind=kind, preset=preset,
                                      storage_key=storage.put(png(color), ext="png"), content_type="image/png",
                                      width=120, height=90, bytes=100, push_status=status))
                renders[name] = render.id
        return shop.id, api_key, renders


def statuses(app, render_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        try:
            return [asset.push_status.value for asset in session.get(Render, render_id).assets]
        finally:
            session.close()


def both_widths(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    shot(driver, name)
    driver.set_window_size(390, 844)
    shot(driver, name + "-phone")
    driver.set_window_size(1280, 900)


def shown(driver) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(card.get_attribute("data-render-id")) for card in driver.find_elements(By.CSS_SELECTOR, ".render-card")]


def test_a_merchant_reviews_many_images_filters_and_finds_any_product(live, browser, image_server) -> None:
    """Filter by status and product; approve and reject in bulk; "push now" asks before sending held images;
    the regenerate picker finds a product beyond the first page."""
    app, base = live.app, live.base
    shop_id, api_key, renders = seed(app, image_server.base + "/photo.jpg")
    sign_in(browser, base, shop_id, api_key)
    browser.get(f"{base}/shops/{shop_id}/renders")
    assert shown(browser) == [renders["second"], renders["first"], renders["chair"]]

    # Filters: only what waits for review, then only the chair (by words of its title).
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("held")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait(browser, lambda d: "status=held" in d.current_url, "the status filter was not applied")
    assert shown(browser) == [renders["second"], renders["first"]]
    assert "waiting for your review" in browser.find_element(By.CSS_SELECTOR, "[data-filter-summary]").text
    both_widths(browser, "review-01-filtered-waiting")
    browser.get(f"{base}/shops/{shop_id}/renders?product=oak")
    assert shown(browser) == [renders["chair"]]
    browser.get(f"{base}/shops/{shop_id}/renders?status=held")

    # Bulk: tick both images of the first render and the cutout of the second; approve two, reject one.
    first = browser.find_element(By.ID, f"render-{renders['first']}")
    second = browser.find_element(By.ID, f"render-{renders['second']}")
    for box in first.find_elements(By.CSS_SELECTOR, "[data-bulk-asset]"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()
    bar = browser.find_element(By.CSS_SELECTOR, "[data-bulk-bar]")
    assert bar.find_element(By.CSS_SELECTOR, "[data-bulk-count]").text == "2 selected"
    both_widths(browser, "review-02-bulk-selected")
    bar.find_element(By.CSS_SELECTOR, "[data-bulk-action=approve]").click()
    wait(browser, lambda d: "Approved 2 of 2" in d.find_element(By.CSS_SELECTOR, "[data-bulk-message]").text,
         "the bulk approve did not answer")
    assert statuses(app, renders["first"]) == ["pending", "pending"]
    second = browser.find_element(By.ID, f"render-{renders['second']}")
    cutout_box = second.find_elements(By.CSS_SELECTOR, "[data-bulk-asset]")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", cutout_box)
    cutout_box.click()
    bar.find_element(By.CSS_SELECTOR, "[data-bulk-action=reject]").click()
    wait(browser, lambda d: "Rejected 1 of 1" in d.find_element(By.CSS_SELECTOR, "[data-bulk-message]").text,
         "the bulk reject did not answer")
    run_jobs(app, live.redis)
    assert statuses(app, renders["first"]) == ["pushed", "pushed"]
    assert statuses(app, renders["second"]) == ["rejected", "held"]

    # Push now on a render whose only image left waits for review: it asks, and Cancel sends nothing.
    browser.get(f"{base}/shops/{shop_id}/renders")
    push = browser.find_element(By.ID, f"render-{renders['second']}").find_element(By.CSS_SELECTOR, "[data-push]")
    assert push.get_attribute("data-held") == "1"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", push)
    push.click()
    wait(browser, alert_is_present(), "push now did not ask first")
    assert "waits for your review" in browser.switch_to.alert.text
    browser.switch_to.alert.dismiss()
    wait(browser, lambda d: "Nothing sent" in d.find_element(By.ID, f"render-{renders['second']}").text,
         "cancel did not say that nothing was sent")
    assert statuses(app, renders["second"]) == ["rejected", "held"]
    push.click()
    wait(browser, alert_is_present(), "push now did not ask the second time")
    browser.switch_to.alert.accept()
    wait(browser, lambda d: statuses(app, renders["second"]) == ["rejected", "pending"], "OK did not approve it")
    run_jobs(app, live.redis)
    assert statuses(app, renders["second"]) == ["rejected", "pushed"]

    # The picker offers a first page, says so, and finds any product by a word of its title.
    browser.get(f"{base}/shops/{shop_id}/renders")
    picker = Select(browser.find_element(By.ID, "regen-product"))
    assert len(picker.options) == PRODUCT_CHOICES
    assert f"of your {PRODUCT_CHOICES + 12} products" in browser.find_element(By.ID, "regen-product-help").text
    search = browser.find_element(By.ID, "regen-product-search")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", search)
    search.send_keys("oak")
    wait(browser, lambda d: [o.text for o in Select(d.find_element(By.ID, "regen-product")).options]
         == ["Oak chair (88)"], "the search did not find the chair")
    assert "1 product matches" in browser.find_element(By.ID, "regen-product-help").text
    both_widths(browser, "review-03-product-search")
    answer = requests.get(f"{base}/api/v1/shops/{shop_id}/products", params={"q": "vase"},
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert [p["id"] for p in answer.json()["products"]] == ["77"]
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Shop, shop_id).settings["publish_mode"] == "review"
    assert not [e for e in browser_errors(browser) if "404" not in e]
