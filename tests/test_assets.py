"""GET /assets/<key>: stored assets behind signed, expiring links."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from catalog_service.signed_links import signed_url


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_signed_link_serves_the_bytes(app, client) -> None:
    """A fresh link downloads exactly what was stored, with its content type."""
    key = app.extensions["catalog"].storage.put(b"\x89PNG\r\n\x1a\n fake", ext="png")
    response = client.get(path_of(signed_url(app.extensions["catalog"].config, key)))
    assert response.status_code == 200
    assert response.data == b"\x89PNG\r\n\x1a\n fake" and response.mimetype == "image/png"
    response.close()


def test_expired_tampered_and_unsigned_links_are_refused(app, client) -> None:
    """Past its expiry, with another key's signature, or with no signature: 403."""
    config = app.extensions["catalog"].config
    storage = app.extensions["catalog"].storage
    key, other = storage.put(b"one", ext="png"), storage.put(b"two", ext="png")
    expired = client.get(path_of(signed_url(config, key, ttl_s=60, now=time.time() - 3600)))
    assert expired.status_code == 403 and "expired" in expired.get_json()["error"]["message"]
    forged = client.get(path_of(signed_url(config, other)).replace(other, key))
    assert forged.status_code == 403 and "not valid" in forged.get_json()["error"]["message"]
    assert client.get(f"/assets/{key}").status_code == 403


def test_missing_and_malformed_keys_are_404(app, client) -> None:
    """A validly signed link to nothing, or to a path that is not a key, finds nothing."""
    config = app.extensions["catalog"].config
    missing = "sha256/ab/cd/abcd" + "0" * 60 + ".png"
    assert client.get(path_of(signed_url(config, missing))).status_code == 404
    assert client.get(path_of(signed_url(config, "../../etc/passwd"))).status_code == 404
