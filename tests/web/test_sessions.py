"""The merchant pages' cookie session, and the requests that carry no cookie at all (webhooks, the API)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from catalog_service.login_links import spend
from catalog_service.models import Shop, SpentToken, WebSession
from catalog_service.web.sessions import CookieSessions, find_server_session, open_server_session


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


@pytest.mark.both_databases
def test_a_server_session_lapses_unused_and_is_pushed_on_while_used(app, shop) -> None:  # type: ignore[no-untyped-def]
    """Used within its lifetime a session is pushed on; left unused for longer it is refused, and a new sign-in
    deletes the lapsed rows."""
    database, ttl = app.extensions["catalog_db"], 3600
    with app.app_context(), database.transaction() as db:
        row = db.get(Shop, shop[0])
        session_id = open_server_session(db, row, ttl_s=ttl, now=1_000_000)
    with app.app_context(), database.transaction() as db:
        assert find_server_session(db, session_id, shop_id=row.id, shop_uid=row.uid, ttl_s=ttl,
                                   now=1_000_000 + ttl - 10) is not None
    with app.app_context(), database.transaction() as db:
        assert find_server_session(db, session_id, shop_id=row.id, shop_uid=row.uid, ttl_s=ttl,
                                   now=1_000_000 + 2 * ttl - 20) is not None
        assert find_server_session(db, session_id, shop_id=row.id, shop_uid="another-uid", ttl_s=ttl,
                                   now=1_000_000 + 2 * ttl - 20) is None
    with app.app_context(), database.transaction() as db:
        assert find_server_session(db, session_id, shop_id=row.id, shop_uid=row.uid, ttl_s=ttl,
                                   now=1_000_000 + 4 * ttl) is None
        open_server_session(db, row, ttl_s=ttl, now=1_000_000 + 4 * ttl)
    with app.app_context():
        assert database.session().scalar(select(func.count()).select_from(WebSession)) == 1


@pytest.mark.both_databases
def test_spent_tokens_are_kept_until_they_expire_and_no_longer(app) -> None:  # type: ignore[no-untyped-def]
    """A token spends once while it could still be presented; records past their expiry are deleted."""
    database = app.extensions["catalog_db"]
    with app.app_context(), database.transaction() as db:
        assert spend(db, "test:a", 1_000_100, now=1_000_000) is True
        assert spend(db, "test:a", 1_000_100, now=1_000_050) is False
    with app.app_context(), database.transaction() as db:
        assert spend(db, "test:b", 1_000_300, now=1_000_200) is True
        assert db.scalars(select(SpentToken.id)).all() == ["test:b"]
