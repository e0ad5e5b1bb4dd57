"""The merchant pages' cookie session, and the requests that carry no cookie at all (webhooks, the API)."""

from __future__ import annotations

from catalog_service.web.sessions import CookieSessions


def test_a_request_without_a_cookie_gets_no_cookie_back(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/webhooks/generic/1", data=b"{}", headers={"X-Catalog-Signature": "sha256=00"})
    assert response.status_code in (401, 404)
    assert "Set-Cookie" not in response.headers


def test_a_signed_in_merchant_keeps_the_session(merchant) -> None:  # type: ignore[no-untyped-def]
    page = merchant.get(f"/shops/{merchant.id}/settings")
    assert page.status_code == 200 and merchant.csrf in page.get_data(as_text=True)


def test_a_cookie_signed_with_another_key_is_not_trusted(app, client, merchant) -> None:  # type: ignore[no-untyped-def]
    """The serializer is kept, but for its key: after the key changes, the old cookie signs no one in."""
    assert isinstance(app.session_interface, CookieSessions)
    before = app.session_interface.get_signing_serializer(app)
    assert app.session_interface.get_signing_serializer(app) is before
    app.secret_key = "another-secret-key-for-this-test"
    assert app.session_interface.get_signing_serializer(app) is not before
    assert client.get(f"/shops/{merchant.id}/settings").status_code == 401
