"""Fixtures for the merchant pages."""

from __future__ import annotations

from typing import Any

import pytest

from merchant import sign_in


@pytest.fixture
def merchant(app, client, shop):  # type: ignore[no-untyped-def]
    """The test client, signed in as the shop; `.csrf` is its token."""
    shop_id = shop[0]

    class Merchant:
        id = shop_id
        csrf = sign_in(app, client, shop_id)

        def get(self, path: str, **kwargs: Any):  # type: ignore[no-untyped-def]
            return client.get(path, **kwargs)

        def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
            return client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)

    return Merchant()
