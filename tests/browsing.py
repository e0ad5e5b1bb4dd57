"""What the browser tests share besides their fixtures (tests/browser/conftest.py): screenshots, waits, forms."""

from __future__ import annotations

from pathlib import Path

import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WAIT_S = 60


def shot(driver: webdriver.Chrome, name: str) -> Path:
    """A full-page screenshot into tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    original = driver.get_window_size()
    driver.set_window_size(width, min(max(int(height) + 140, 600), 6000))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(original["width"], original["height"])
    return path


def wait(driver: webdriver.Chrome, condition, message: str, timeout: float = WAIT_S):  # type: ignore[no-untyped-def]
    # Cards are swapped in by the page's script while we look: a stale element just means "look again".
    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)


def browser_errors(driver: webdriver.Chrome) -> list[str]:
    """Console errors (failed loads, CSP violations, script errors) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def field(driver: webdriver.Chrome, element_id: str):  # type: ignore[no-untyped-def]
    element = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    return element


def save_settings(driver: webdriver.Chrome) -> None:
    """Submit the settings form and wait for the next page (not the old one's banner) to say it saved."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, "#settings-form button[type=submit]").click()
    wait(driver, staleness_of(page), "the form was not submitted")
    wait(driver, lambda d: "Settings saved." in d.find_element(By.TAG_NAME, "main").text, "not saved")


def continue_sign_in(driver: webdriver.Chrome, url: str, *, shot_name: str = "") -> None:
    """Open a sign-in link and press its Continue button (opening it alone signs no one in)."""
    driver.get(url)
    button = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#signin-form button[type=submit]"),
                  "no Continue button")[0]
    assert button.text == "Continue"
    if shot_name:
        shot(driver, shot_name)
    button.click()


def images_loaded(driver: webdriver.Chrome, css: str) -> bool:
    return bool(driver.execute_script(
        "const imgs = [...document.querySelectorAll(arguments[0])];"
        "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);", css))


def sign_in(driver: webdriver.Chrome, base: str, shop_id: int, api_key: str) -> None:
    """Ask the API for a sign-in link, as a platform does, and continue it in the browser."""
    answer = requests.post(f"{base}/api/v1/shops/{shop_id}/login-link",
                           headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    continue_sign_in(driver, answer.json()["url"])
    wait(driver, lambda d: f"/shops/{shop_id}/" in d.current_url and "signin" not in d.current_url, "not signed in")
