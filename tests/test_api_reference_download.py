"""A reference image fetched by URL inside a web request: the download ends well before gunicorn's 30 s timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from catalog_service.config import Config
from catalog_service.models import ReferenceImage

GUNICORN_TIMEOUT_S = 30
"""What `catalog-service serve` gives a web worker (catalog_service/cli.py) before killing it."""


class TrickleServer:
    """A loopback image host that sends a PNG header and then one byte every 0.5 s, for minutes."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        stopping = self.stopping

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(10_000_000))
                self.end_headers()
                try:
                    self.wfile.write(b"\x89PNG\r\n\x1a\n")
                    while not stopping.wait(0.5):
                        self.wfile.write(b"\x00")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the service hung up: what we want

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins the handlers: none outlive the test
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ref.png"

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def trickle() -> Iterator[TrickleServer]:
    server = TrickleServer()
    yield server
    server.close()


@pytest.fixture
def app_config(app_config: dict[str, object]) -> dict[str, object]:
    """A 2 s download budget, so the test takes seconds; the default is checked against gunicorn below."""
    return {**app_config, "web_fetch_timeout_s": 2.0}


@pytest.fixture
def api_headers(shop) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {shop[1]}"}


def test_a_trickling_reference_url_answers_json_504_within_the_budget(app, client, shop, api_headers, trickle) -> None:
    """A byte every 0.5 s: the API gives up at the web download budget with a JSON 504, and stores nothing."""
    started = time.monotonic()
    response = client.post(f"/api/v1/shops/{shop[0]}/reference-images", json={"url": trickle.url},
                           headers=api_headers)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 1.5, f"the request took {elapsed:.1f} s for a 2 s budget"
    assert response.status_code == 504 and response.is_json
    message = response.get_json()["error"]["message"]
    assert "2 s" in message and "upload the file" in message
    assert "retry" not in message  # nobody retries a web request for the merchant
    with app.app_context():
        assert app.extensions["catalog_db"].session().scalars(select(ReferenceImage)).all() == []


def test_the_default_web_download_budget_is_well_under_the_web_worker_timeout() -> None:
    """Out of the box a web request's download ends in at most a third of gunicorn's 30 s."""
    assert Config().web_fetch_timeout_s <= GUNICORN_TIMEOUT_S / 3


@pytest.mark.parametrize("seconds", [0.0, 21.0])
def test_a_web_download_budget_near_the_worker_timeout_is_refused(seconds: float) -> None:
    """CATALOG_WEB_FETCH_TIMEOUT_S must leave the web worker time to answer."""
    from catalog_service.config import ConfigError

    with pytest.raises(ConfigError, match="CATALOG_WEB_FETCH_TIMEOUT_S"):
        Config.load({"web_fetch_timeout_s": seconds}, environ={})
