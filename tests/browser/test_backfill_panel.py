"""The renders page's "Your existing catalog" panel in real headless Chromium, with a real worker process: estimate
first, start, watch the counts move, pause, resume and cancel, at desktop and phone width."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import alert_is_present, staleness_of

from browsing import browser_errors, shot, sign_in, wait
from catalog_service import backfills
from catalog_service.models import Backfill, BackfillStatus, Product, SourceImage
from catalog_service.schemas import settings_with_defaults
from catalog_service.shops import create_shop

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PRODUCTS = 20
PHOTO_DELAY_S = 1.0
"""Each photo takes this long to come from the shop's image host: the run lasts long enough to pause and cancel."""
COUNTS = re.compile(r"(\d+) done · (\d+) failed · (\d+) skipped · (\d+) remaining · \$(\d+\.\d\d) spent of about "
                    r"\$(\d+\.\d\d)(?: · about (\d+) min left)?")


def small_photo() -> bytes:
    image = Image.open(FIXTURES / "rocket.jpg")
    image.thumbnail((320, 320))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def seed(app, image_server) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """A generic shop whose webhooks told us about a score of products, each with a photo on a slow image host; review
    first (nothing is sent to a shop) and one scene, so each product is quick to make."""
    photo = small_photo()
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop, api_key, _secret = create_shop(session, platform="generic", domain="catalog.local", name="Catalog Shop")
        shop.settings = settings_with_defaults({"publish_mode": "review", "scene_presets": ["studio"]})
        for number in range(PRODUCTS):
            product = Product(shop_id=shop.id, external_id=str(500 + number), title=f"Rocket mug {number}")
            session.add(product)
            session.flush()
            src = image_server.serve(f"/photos/{number}.jpg", photo, "image/jpeg", delay_s=PHOTO_DELAY_S)
            session.add(SourceImage(shop_id=shop.id, product_id=product.id, external_id="1", src=src))
        return shop.id, api_key


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`catalog-service worker` on every queue, as a separate process; stopped (by its own pid) at the end."""
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker"], env=worker_env,
                                   stdout=subprocess.DEVNULL, stderr=log)
    yield process, log_path
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def panel(driver: webdriver.Chrome) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, "[data-backfill-panel]")


def actions(driver: webdriver.Chrome) -> list[str]:
    return [b.get_attribute("data-backfill-action") for b in panel(driver).find_elements(
        By.CSS_SELECTOR, "button[data-backfill-action]")]


def press(driver: webdriver.Chrome, action: str) -> WebElement:
    """Press one of the panel's buttons; returns the page element, which goes stale when the panel reloads."""
    page = driver.find_element(By.TAG_NAME, "html")
    button = panel(driver).find_element(By.CSS_SELECTOR, f"button[data-backfill-action={action}]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    return page


def reloaded_as(driver: webdriver.Chrome, page: WebElement, status: str) -> None:
    wait(driver, staleness_of(page), f"the page did not reload after asking for {status}")
    wait(driver, lambda d: panel(d).get_attribute("data-backfill-status") == status, f"the panel is not {status}")


def counts(driver: webdriver.Chrome) -> dict[str, int]:
    """The panel's counts line, read as numbers (and checked against its own total)."""
    # One read of both: the page's poll may update them between two reads.
    text, value, most = driver.execute_script(
        "const p = arguments[0], bar = p.querySelector('progress[data-backfill-bar]');"
        "return [p.querySelector('[data-backfill-counts]').textContent, bar.value, bar.max];", panel(driver))
    found = COUNTS.fullmatch(" ".join(text.split()))
    assert found, f"the counts line reads {text!r}"
    done, failed, skipped, remaining = (int(found.group(n)) for n in range(1, 5))
    assert done + failed + skipped + remaining == PRODUCTS, text
    return {"done": done, "failed": failed, "skipped": skipped, "remaining": remaining,
            "bar": round(float(value)), "bar_max": round(float(most))}


def stored(app, backfill_id: int) -> tuple[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    """The backfill's status and item counts as the database holds them."""
    with app.app_context():
        session = app.extensions["catalog_db"].session()
        try:
            backfill = session.get(Backfill, backfill_id)
            return backfill.status.value, backfills.item_counts(session, backfill_id)
        finally:
            session.close()


def bar_share(driver: webdriver.Chrome) -> float:
    """How much of the panel's inner width the progress bar takes."""
    return float(driver.execute_script("""
        const panel = arguments[0], style = getComputedStyle(panel);
        const inner = panel.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        return panel.querySelector('[data-backfill-bar]').getBoundingClientRect().width / inner;""", panel(driver)))


def outside(driver: webdriver.Chrome, element: WebElement) -> list[str]:
    """The element's visible descendants that stick out of it, or scroll inside themselves sideways."""
    return driver.execute_script("""
        const root = arguments[0], box = root.getBoundingClientRect(), out = [];
        if (root.scrollWidth > root.clientWidth + 1) out.push('the panel scrolls sideways: ' + root.scrollWidth);
        for (const el of root.querySelectorAll('*')) {
          const r = el.getBoundingClientRect();
          if (!el.checkVisibility() || !r.width || !r.height) continue;
          if (r.left < box.left - 0.5 || r.right > box.right + 0.5)
            out.push(`${el.tagName}.${el.className} spans ${r.left}..${r.right} in ${box.left}..${box.right}`);
        }
        return out;""", element)


def test_a_merchant_estimates_then_runs_pauses_resumes_and_cancels_the_catalog(  # type: ignore[no-untyped-def]
        live, browser, image_server, worker) -> None:
    """The estimate comes first and matches the API's; Start shows a bar whose counts move while a real worker
    renders; Pause stops new work (at phone width too), Resume goes on, Cancel asks first and drops the rest."""
    app, base = live.app, live.base
    process, log_path = worker
    shop_id, api_key = seed(app, image_server)

    def worker_alive() -> bool:
        assert process.poll() is None, f"the worker died:\n{log_path.read_text()[-3000:]}"
        return True

    sign_in(browser, base, shop_id, api_key)
    browser.get(f"{base}/shops/{shop_id}/renders")
    assert panel(browser).find_element(By.TAG_NAME, "h2").text == "Your existing catalog"
    assert actions(browser) == ["estimate"]

    # 1. Estimate: nothing is spent, the panel says what the run would make, cost and take, and offers Start.
    page = press(browser, "estimate")
    reloaded_as(browser, page, "ready")
    backfill_id = int(panel(browser).get_attribute("data-backfill-id"))
    answer = requests.get(f"{base}/api/v1/shops/{shop_id}/backfills/{backfill_id}",
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=10).json()
    estimate = answer["estimate"]
    assert answer["status"] == "ready" and estimate["products"] == PRODUCTS and estimate["scenes"] == PRODUCTS
    words = " ".join(panel(browser).find_element(By.CSS_SELECTOR, "[data-backfill-words]").text.split())
    assert words == (f"Estimate: {PRODUCTS} products, {PRODUCTS} scenes, about ${estimate['cost_usd']:.2f} and "
                     f"{math.ceil(estimate['time_s'] / 60)} min. Nothing is spent until you start.")
    assert actions(browser) == ["start", "cancel"]
    assert stored(app, backfill_id)[1]["queued"] == 0
    shot(browser, "backfill-01-estimate")

    # 2. Start: the bar and counts follow the worker without a reload.
    page = press(browser, "start")
    reloaded_as(browser, page, "running")
    assert actions(browser) == ["pause", "cancel"]
    first = counts(browser)
    assert first["bar_max"] == PRODUCTS and first["done"] < PRODUCTS
    page = browser.find_element(By.TAG_NAME, "html")
    wait(browser, lambda d: worker_alive() and counts(d)["done"] >= first["done"] + 2,
         "the counts did not move while the worker rendered")
    moving = counts(browser)
    assert moving["bar"] == moving["done"] + moving["failed"] + moving["skipped"] > first["bar"]
    assert moving["remaining"] < first["remaining"] and moving["failed"] == 0
    assert not staleness_of(page)(browser), "the page reloaded instead of updating the panel in place"
    assert panel(browser).get_attribute("data-backfill-status") == "running"
    assert bar_share(browser) > 0.9  # a bar across the panel, not a sliver beside the words
    shot(browser, "backfill-02-running")

    # 3. Phone width: the panel fits, nothing sticks out, and its Pause button works.
    browser.set_window_size(390, 844)
    time.sleep(0.3)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert outside(browser, panel(browser)) == []
    assert bar_share(browser) > 0.9
    shot(browser, "backfill-02-running-phone")
    page = press(browser, "pause")
    reloaded_as(browser, page, "paused")
    assert actions(browser) == ["resume", "cancel"]
    assert panel(browser).find_element(By.CSS_SELECTOR, "[data-backfill-words]").text.startswith("Paused.")
    assert outside(browser, panel(browser)) == []
    shot(browser, "backfill-03-paused-phone")
    browser.set_window_size(1280, 900)

    # Paused: the renders already queued finish, and no new product is queued.
    wait(browser, lambda _d: worker_alive() and stored(app, backfill_id)[1]["queued"] == 0,
         "the renders queued before the pause did not finish")
    _status, at_pause = stored(app, backfill_id)
    time.sleep(2 * PHOTO_DELAY_S + 1)
    status, later = stored(app, backfill_id)
    assert status == "paused" and later == at_pause and later["pending"] > 0, (at_pause, later)

    # 4. Resume: running again, and the counts go on from where they were.
    browser.refresh()
    page = press(browser, "resume")
    reloaded_as(browser, page, "running")
    assert actions(browser) == ["pause", "cancel"]
    resumed = counts(browser)
    wait(browser, lambda d: worker_alive() and counts(d)["done"] > resumed["done"], "nothing was done after resume")

    # 5. Cancel asks first: dismissing keeps it running; accepting cancels, and the products not started are dropped.
    press(browser, "cancel")
    wait(browser, alert_is_present(), "cancel did not ask first")
    assert "Cancel the catalog run?" in browser.switch_to.alert.text
    browser.switch_to.alert.dismiss()
    assert stored(app, backfill_id)[0] == "running"
    page = press(browser, "cancel")
    wait(browser, alert_is_present(), "cancel did not ask the second time")
    browser.switch_to.alert.accept()
    reloaded_as(browser, page, "cancelled")
    status, final = stored(app, backfill_id)
    assert status == "cancelled" and final["pending"] == 0 and final["skipped"] > 0, final
    assert actions(browser) == ["estimate"]  # a new run can be estimated; this one is over
    # The renders queued before the cancel may still finish: the page counted them as they were when it loaded.
    last = " ".join(panel(browser).text.split())
    said = re.search(r"\(the last run was cancelled: (\d+) done, (\d+) failed, (\d+) skipped\)", last)
    assert said, last
    done, failed, skipped = (int(n) for n in said.groups())
    assert skipped == final["skipped"] and resumed["done"] < done <= final["done"] and failed <= final["failed"]
    shot(browser, "backfill-04-cancelled")
    assert browser_errors(browser) == []


def test_a_run_that_could_not_read_the_catalog_says_why_and_offers_a_new_estimate(live, browser) -> None:  # type: ignore[no-untyped-def]
    """A backfill whose shop could not list its products failed: the panel gives the reason, at phone width too."""
    app, base = live.app, live.base
    reason = "Shopify has not finished listing the catalog after an hour; narrow the filters and start again."
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        shop, api_key, _secret = create_shop(session, platform="generic", domain="failed.local", name="Failed Shop")
        session.add(Backfill(shop_id=shop.id, status=BackfillStatus.FAILED, error=reason))
        shop_id = shop.id
    sign_in(browser, base, shop_id, api_key)
    browser.get(f"{base}/shops/{shop_id}/renders")
    assert panel(browser).get_attribute("data-backfill-status") == "failed"
    assert panel(browser).find_element(By.CSS_SELECTOR, "[data-backfill-error]").text == (
        f"The last run could not read your catalog: {reason}")
    assert actions(browser) == ["estimate"]
    browser.set_window_size(390, 844)
    assert outside(browser, panel(browser)) == []
    shot(browser, "backfill-05-failed-phone")
