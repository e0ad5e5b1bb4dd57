"""The generic callback: one message per render, signed the Standard Webhooks way and (for one release) the old way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from catalog_service.stores.base import AuthRevoked, PushAsset, asset_filename
from catalog_service.stores.callback import CallbackStore
from fakes.loopback import LoopbackFake

SECRET = "the-shops-webhook-secret"
# What the README tells the platform to configure: the webhook secret as a Standard Webhooks secret.
WHSEC = "whsec_" + base64.b64encode(SECRET.encode()).decode()


class Receiver(LoopbackFake):
    """A platform's callback endpoint that verifies with the standardwebhooks library: 401 unless it verifies."""

    name = "callback-receiver"

    def __init__(self, whsec: str) -> None:
        super().__init__()
        self.webhook = Webhook(whsec)
        self.messages: list[tuple[dict[str, str], bytes]] = []
        self.refused: list[str] = []

    class handler(BaseHTTPRequestHandler):  # noqa: N801
        def do_POST(self) -> None:  # noqa: N802
            fake: Receiver = self.server.fake  # type: ignore[attr-defined]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = dict(self.headers.items())
            try:
                fake.webhook.verify(body, headers)
            except WebhookVerificationError as exc:
                fake.refused.append(str(exc))
                status = 401
            else:
                fake.messages.append((headers, body))
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(WHSEC) as fake:
        yield fake
    assert fake.errors == []


def assets() -> list[PushAsset]:
    return [PushAsset(key=key, kind="cutout", filename=asset_filename("7", "cutout", "", key, "png"),
                      content_type="image/png", data=b"\x89PNG fake")
            for key in ("0123456789abcdef", "fedcba9876543210")]


def store(receiver: Receiver, secret: str = SECRET) -> CallbackStore:
    return CallbackStore(callback_url=receiver.url + "/hook", secret=secret, allow_private=True,
                         asset_url=lambda asset: f"https://us.example/assets/{asset.key}?token=t")


def test_callback_carries_both_signatures_and_the_receiver_verifies_the_standard_one(receiver: Receiver) -> None:
    """The receiver's standardwebhooks library accepts the message; the old X-Catalog-Signature is there too."""
    results = store(receiver).push_all("7", assets())
    assert [result.external_id for result in results] == ["0123456789abcdef", "fedcba9876543210"]
    ((headers, body),) = receiver.messages
    old = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Catalog-Signature"], old)
    assert headers["webhook-signature"].startswith("v1,")
    assert json.loads(body)["event"] == "assets.ready"


def test_the_same_message_keeps_its_webhook_id(receiver: Receiver) -> None:
    """Sent again (a retry), the message has the same webhook-id, which is also the old delivery id."""
    store(receiver).push_all("7", assets())
    store(receiver).push_all("7", list(reversed(assets())))
    first, second = (headers for headers, _body in receiver.messages)
    assert first["webhook-id"] == second["webhook-id"] == first["X-Catalog-Delivery-Id"]


def test_a_receiver_with_another_secret_refuses_it(receiver: Receiver) -> None:
    """Signed with another secret, the library refuses it, and its 401 reaches the merchant as AuthRevoked."""
    with pytest.raises(AuthRevoked):
        store(receiver, secret="not-the-receivers-secret").push_all("7", assets())
    assert receiver.refused == ["No matching signature found"]
