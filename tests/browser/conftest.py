"""Fixtures of the browser tests: the real app behind a loopback HTTP server, and headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from werkzeug.serving import make_server

from browsing import CHROMEDRIVER, CHROMIUM, WAIT_S
from catalog_service.app import create_app
from support import free_port


@pytest.fixture
def live(app_config: dict[str, object], redis, model_session) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The real app behind a real HTTP server on loopback; public_url points at it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app({**app_config, "public_url": base})
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    class Live:
        pass

    live = Live()
    live.app, live.base, live.redis = app, base, redis  # type: ignore[attr-defined]
    yield live
    server.shutdown()
    server.server_close()
    app.extensions["catalog"].close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium driven by Debian's chromedriver (explicit paths: nothing is downloaded)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make test` (scripts/ensure-chromium installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
