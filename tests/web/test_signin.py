"""Signing in to the merchant pages: one-time links, Shopify's app launch, sessions kept to their shop."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import unquote, urlencode

import pytest
from click.testing import CliRunner
from itsdangerous import URLSafeSerializer
from sqlalchemy import select

from catalog_service.cli import main
from catalog_service.login_links import make_link
from catalog_service.models import Shop
from catalog_service.shops import create_shop
from catalog_service.signed_links import ASSET_LINK, SIGN_IN, sign
from merchant import continue_form, open_link, shop_row, sign_in


def link_for(app, shop_id: int, **kwargs) -> str:  # type: ignore[no-untyped-def]
    config = app.extensions["catalog"].config
    return make_link(config, shop_row(app, shop_id), ttl_s=kwargs.pop("ttl_s", 900), **kwargs).url


def add_shop(app, **kwargs) -> int:  # type: ignore[no-untyped-def]
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        created, _key, _secret = create_shop(session, **kwargs)
        return created.id


def test_a_link_signs_in_once_with_a_safe_cookie(app, client, shop) -> None:
    """Opened and continued, the link lands on the settings page; the cookie is HttpOnly and SameSite=Lax; a second
    use is refused."""
    url = link_for(app, shop[0])
    response = open_link(client, url)
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/shops/{shop[0]}/settings")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get(f"/shops/{shop[0]}/settings")
    assert page.status_code == 200 and 'name="csrf_token"' in page.get_data(as_text=True)
    client.post("/signout", data={"csrf_token": _csrf(client)})
    again = client.get(url)
    assert again.status_code == 401 and "already used" in again.get_data(as_text=True)


def test_opening_a_link_spends_nothing_and_continue_signs_in(app, client, shop) -> None:
    """A GET (a mail scanner, a chat preview) shows the Continue page and signs no one in, however often; the
    Continue POST then signs this browser in."""
    url = link_for(app, shop[0])
    scanner = app.test_client()
    for _ in range(3):
        page = scanner.get(url)
        assert page.status_code == 200 and ">Continue</button>" in page.get_data(as_text=True)
    assert scanner.get(f"/shops/{shop[0]}/settings").status_code == 401
    page = client.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Sign in to" in html and page.headers["Cache-Control"] == "no-store"
    assert client.get(f"/shops/{shop[0]}/settings").status_code == 401
    response = client.post("/signin", data=continue_form(html))
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/shops/{shop[0]}/settings")
    assert client.get(f"/shops/{shop[0]}/settings").status_code == 200


def test_a_head_request_spends_nothing(app, client, shop) -> None:
    """HEAD, which some link checkers send, is answered like the page and leaves the link unspent."""
    url = link_for(app, shop[0])
    assert client.head(url).status_code == 200
    assert open_link(client, url).status_code == 303


def test_continue_needs_the_pages_csrf_token(app, client, shop) -> None:
    """A POST of the token without the Continue page's CSRF token (another site's form, a browser that never opened
    the page) is refused and spends nothing: the link still signs in from its own page."""
    url = link_for(app, shop[0])
    token = continue_form(app.test_client().get(url).get_data(as_text=True))["token"]
    forged = app.test_client().post("/signin", data={"token": token})
    assert forged.status_code == 403
    wrong = app.test_client()
    wrong.get(url)
    assert wrong.post("/signin", data={"token": token, "csrf_token": "not-the-token"}).status_code == 403
    assert open_link(client, url).status_code == 303


def test_a_used_or_expired_link_says_so_when_opened(app, client, shop) -> None:
    """The page shows no Continue button for a link that cannot work: used (401 "already used"), expired (401)."""
    url = link_for(app, shop[0])
    assert open_link(client, url).status_code == 303
    used = app.test_client().get(url)
    assert used.status_code == 401 and "already used" in used.get_data(as_text=True)
    assert ">Continue</button>" not in used.get_data(as_text=True)
    expired = app.test_client().get(link_for(app, shop[0], now=time.time() - 1000))
    assert expired.status_code == 401 and "expired" in expired.get_data(as_text=True)


def test_a_continue_page_whose_link_was_used_meanwhile_is_refused(app, client, shop) -> None:
    """Two browsers open the same link: the first to continue signs in, the second is told the link was used."""
    url = link_for(app, shop[0])
    other = app.test_client()
    first, second = client.get(url), other.get(url)
    assert client.post("/signin", data=continue_form(first.get_data(as_text=True))).status_code == 303
    late = other.post("/signin", data=continue_form(second.get_data(as_text=True)))
    assert late.status_code == 401 and "already used" in late.get_data(as_text=True)
    assert other.get(f"/shops/{shop[0]}/settings").status_code == 401


def _csrf(client) -> str:  # type: ignore[no-untyped-def]
    with client.session_transaction() as session:
        return str(session.get("csrf_token", ""))


def test_an_expired_link_is_refused(app, client, shop) -> None:
    """A link past its lifetime says so and signs nobody in."""
    response = client.get(link_for(app, shop[0], now=time.time() - 1000))
    assert response.status_code == 401 and "expired" in response.get_data(as_text=True)
    assert client.get(f"/shops/{shop[0]}/settings").status_code == 401


def _other_shops_payload(config, shop_id: int, token: str) -> str:  # type: ignore[no-untyped-def]
    """Another shop's genuine payload under this token's signature."""
    other = make_link(config, Shop(id=shop_id + 1, uid="another-shops-uid")).url
    return other.split("token=", 1)[1].rsplit(".", 1)[0] + "." + token.rsplit(".", 1)[1]


@pytest.mark.parametrize("tamper", [
    _other_shops_payload,
    lambda config, shop_id, token: token[:-2] + ("00" if not token.endswith("00") else "11"),
    lambda config, shop_id, token: token.rsplit(".", 1)[0],
    lambda config, shop_id, token: "",
    # Signed with our key, but for another purpose (an asset link's salt), or with a key we never had.
    lambda config, shop_id, token: sign(config, ASSET_LINK, {"shop": shop_id, "nonce": "n"}, int(time.time()) + 60),
    lambda config, shop_id, token: URLSafeSerializer("not-our-key", salt=SIGN_IN).dumps(
        {"shop": shop_id, "nonce": "n", "exp": int(time.time()) + 60}),
])
def test_a_tampered_link_is_refused(app, client, shop, tamper) -> None:
    """Another shop's payload, a changed or missing signature, another purpose's or key's token: 401, no session."""
    config = app.extensions["catalog"].config
    token = unquote(link_for(app, shop[0]).split("token=", 1)[1])
    response = client.get("/signin?" + urlencode({"token": tamper(config, shop[0], token)}))
    assert response.status_code == 401
    assert "not valid" in response.get_data(as_text=True)
    assert _csrf(client) == "" or client.get(f"/shops/{shop[0]}/settings").status_code == 401


def test_links_and_sessions_made_before_a_key_rotation_still_work(app, client, app_config, shop) -> None:  # type: ignore[no-untyped-def]
    """With the old key as a fallback, an old sign-in link works (once) and an old session stays signed in."""
    from catalog_service.app import create_app
    from catalog_service.config import Config

    old_link = make_link(Config.load(app_config, environ={}), shop_row(app, shop[0])).url
    sign_in(app, client, shop[0])
    old_session = client.get_cookie("session")
    assert old_session is not None
    rotated = create_app({**app_config, "secret_key": "a-new-key",
                          "secret_key_fallbacks": str(app_config["secret_key"])})
    try:
        fresh = rotated.test_client()
        assert open_link(fresh, old_link).status_code == 303
        assert open_link(fresh, old_link).status_code == 401
        carried = rotated.test_client()
        carried.set_cookie("session", old_session.value)
        assert carried.get(f"/shops/{shop[0]}/settings").status_code == 200
        unknown = create_app({**app_config, "secret_key": "a-new-key"})
        try:
            stranger = unknown.test_client()
            stranger.set_cookie("session", old_session.value)
            assert stranger.get(f"/shops/{shop[0]}/settings").status_code == 401
        finally:
            unknown.extensions["catalog"].close()
    finally:
        rotated.extensions["catalog"].close()


def test_secure_cookie_behind_https(app_config, redis, shop) -> None:  # type: ignore[no-untyped-def]
    """With an https public URL, the session cookie is Secure."""
    from catalog_service.app import create_app

    secure = create_app({**app_config, "public_url": "https://catalog.example.com"})
    try:
        response = open_link(secure.test_client(), link_for(secure, shop[0]))
        assert response.status_code == 303 and "Secure" in response.headers["Set-Cookie"]
    finally:
        secure.extensions["catalog"].close()


def test_signed_out_pages_ask_to_sign_in(client, shop) -> None:
    """Without a session every shop page is a 401 page telling how to sign in."""
    for path in (f"/shops/{shop[0]}/settings", f"/shops/{shop[0]}/renders"):
        response = client.get(path)
        assert response.status_code == 401 and "text/html" in response.content_type
        assert "login-link" in response.get_data(as_text=True)


def test_one_shops_session_cannot_read_or_change_another(app, client, shop) -> None:
    """Signed in as shop A: B's pages and B's forms are 403, and B's settings stay as they were."""
    other = add_shop(app, platform="generic", domain="other.example.com")
    csrf = sign_in(app, client, shop[0])
    assert client.get(f"/shops/{other}/settings").status_code == 403
    assert client.get(f"/shops/{other}/renders").status_code == 403
    response = client.post(f"/shops/{other}/settings", data={"csrf_token": csrf, "publish_mode": "review"})
    assert response.status_code == 403
    with app.app_context():
        row = app.extensions["catalog_db"].session().get(Shop, other)
        assert row.settings["publish_mode"] == "auto"


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_a_post_without_the_csrf_token_is_refused(app, client, shop, token) -> None:
    """Missing or wrong token: 403, an HTML page saying to reload, and nothing saved."""
    sign_in(app, client, shop[0])
    data = {"publish_mode": "review"} | ({"csrf_token": token} if token is not None else {})
    response = client.post(f"/shops/{shop[0]}/settings", data=data)
    assert response.status_code == 403 and "text/html" in response.content_type
    assert "Reload the page" in response.get_data(as_text=True)
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Shop, shop[0]).settings["publish_mode"] == "auto"


def test_the_page_and_the_api_refuse_a_write_without_the_token_alike(app, client, shop) -> None:
    """One CSRF check: a signed-in browser's page form and API call without the token are both 403 with the same
    message (an HTML page, a JSON error); with the token, or with a bearer key and no cookie, the API call works."""
    shop_id, api_key, _ = shop
    csrf = sign_in(app, client, shop_id)
    page = client.post(f"/shops/{shop_id}/settings", data={"publish_mode": "review"})
    api = client.put(f"/api/v1/shops/{shop_id}/settings", json={})
    assert page.status_code == api.status_code == 403
    message = api.get_json()["error"]["message"]
    assert "X-CSRF-Token" in message and "Reload the page" in message
    assert message in page.get_data(as_text=True) and "text/html" in page.content_type
    assert client.put(f"/api/v1/shops/{shop_id}/settings", json={}, headers={"X-CSRF-Token": csrf}).status_code == 200
    bearer = app.test_client().put(f"/api/v1/shops/{shop_id}/settings", json={},
                                   headers={"Authorization": f"Bearer {api_key}"})
    assert bearer.status_code == 200


def test_sign_out_ends_the_session(app, client, shop) -> None:
    csrf = sign_in(app, client, shop[0])
    assert client.post("/signout", data={"csrf_token": csrf}).status_code == 200
    assert client.get(f"/shops/{shop[0]}/settings").status_code == 401


# --- the API call and the command ----------------------------------------------------------------------------


def test_platforms_fetch_a_link_with_the_api_key(client, shop) -> None:
    """POST /api/v1/shops/<id>/login-link with the bearer key: a working absolute URL and its expiry."""
    shop_id, api_key, _ = shop
    response = client.post(f"/api/v1/shops/{shop_id}/login-link", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["url"].startswith("http://localhost:8000/signin?token=") and body["expires_at"].endswith("+00:00")
    assert open_link(client, body["url"]).status_code == 303


def test_the_api_gives_no_link_for_another_shop_or_without_a_key(app, client, shop) -> None:
    other = add_shop(app, platform="generic", domain="other.example.com")
    assert client.post(f"/api/v1/shops/{other}/login-link",
                       headers={"Authorization": f"Bearer {shop[1]}"}).status_code == 403
    assert client.post(f"/api/v1/shops/{shop[0]}/login-link").status_code in (400, 401)


def test_the_command_prints_a_working_link(app, client, shop, app_config, monkeypatch) -> None:
    """`catalog-service shops login-link ID` prints a link this app accepts; an unknown shop is an error."""
    for name, var in (("var_dir", "CATALOG_VAR_DIR"), ("database_url", "CATALOG_DATABASE_URL"),
                      ("redis_url", "CATALOG_REDIS_URL"), ("secret_key", "CATALOG_SECRET_KEY"),
                      ("storage_url", "CATALOG_STORAGE_URL")):
        monkeypatch.setenv(var, str(app_config[name]))
    monkeypatch.setenv("CATALOG_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("CATALOG_SCENE_PROVIDER", "compositor")
    result = CliRunner().invoke(main, ["shops", "login-link", str(shop[0])], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert open_link(client, result.output.strip()).status_code == 303
    missing = CliRunner().invoke(main, ["shops", "login-link", "999"])
    assert missing.exit_code == 1 and "no active shop 999" in missing.output


# --- Shopify's app launch -----------------------------------------------------------------------------------


def launch_query(shop: str, *, timestamp: float | None = None, secret: str = "shpss_test_client_secret",
                 **extra: str) -> str:
    query = {"shop": shop, "timestamp": str(int(timestamp or time.time())), "host": "YWRtaW4uc2hvcGlmeS5jb20",
             **extra}
    message = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    query["hmac"] = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return urlencode(query)


@pytest.fixture
def shopify_shop(app) -> int:  # type: ignore[no-untyped-def]
    return add_shop(app, platform="shopify", domain="acme.myshopify.com")


@pytest.mark.parametrize("path", ["/", "/shopify/app"])
def test_shopify_launch_opens_a_session(client, shopify_shop, path) -> None:
    """The admin's launch request, signed by the app secret, lands on the shop's settings signed in."""
    response = client.get(f"{path}?{launch_query('acme.myshopify.com')}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/shops/{shopify_shop}/settings")
    assert client.get(f"/shops/{shopify_shop}/settings").status_code == 200


@pytest.mark.parametrize(("make", "status", "words"), [
    (lambda: launch_query("acme.myshopify.com", secret="not-the-secret"), 401, "signature"),
    (lambda: launch_query("acme.myshopify.com", timestamp=time.time() - 600), 401, "too old"),
    (lambda: launch_query("acme.myshopify.com").replace("acme", "evil"), 401, "signature"),
    (lambda: launch_query("unknown.myshopify.com"), 404, "has not installed"),
])
def test_shopify_launch_refuses_bad_requests(client, shopify_shop, make, status, words) -> None:
    """A wrong or replayed signature is 401; a shop that never installed is 404; nobody is signed in."""
    response = client.get(f"/shopify/app?{make()}")
    assert response.status_code == status and words in response.get_data(as_text=True)
    assert client.get(f"/shops/{shopify_shop}/settings").status_code == 401


def test_shopify_launch_for_an_uninstalled_shop_is_404(app, client, shopify_shop) -> None:
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        session.scalar(select(Shop).where(Shop.id == shopify_shop)).active = False
    assert client.get(f"/shopify/app?{launch_query('acme.myshopify.com')}").status_code == 404


def test_link_lifetime_comes_from_config(app_config, redis, shop) -> None:  # type: ignore[no-untyped-def]
    """CATALOG_LOGIN_LINK_TTL_S sets the API's expiry; nonsense values stop startup."""
    import datetime as dt

    from catalog_service.app import create_app
    from catalog_service.config import Config, ConfigError

    with pytest.raises(ConfigError, match="LOGIN_LINK_TTL_S"):
        Config.load({"login_link_ttl_s": 5}, environ={})
    assert Config.load(environ={"CATALOG_LOGIN_LINK_TTL_S": "120"}).login_link_ttl_s == 120
    short = create_app({**app_config, "login_link_ttl_s": 120})
    try:
        body = short.test_client().post(f"/api/v1/shops/{shop[0]}/login-link",
                                        headers={"Authorization": f"Bearer {shop[1]}"}).get_json()
        left = dt.datetime.fromisoformat(body["expires_at"]) - dt.datetime.now(dt.UTC)
        assert dt.timedelta(seconds=100) < left <= dt.timedelta(seconds=121)
    finally:
        short.extensions["catalog"].close()


# --- hardening: what a deleted shop, a Redis flush, a copied cookie and odd input can do --------------------


def _redact(client, domain: str) -> None:  # type: ignore[no-untyped-def]
    """Shopify's shop/redact for this domain, signed with the app secret as Shopify signs it."""
    import base64
    import json

    body = json.dumps({"shop_id": 954889, "shop_domain": domain}).encode()
    digest = hmac.new(b"shpss_test_client_secret", body, hashlib.sha256).digest()
    response = client.post("/webhooks/shopify", data=body, content_type="application/json", headers={
        "X-Shopify-Topic": "shop/redact", "X-Shopify-Shop-Domain": domain, "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": "redact-1", "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()})
    assert response.status_code == 200 and response.get_json()["outcome"] == "redacted"


def _cookie_and_unused_link(app, client, shop_id: int) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    sign_in(app, client, shop_id)
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value, link_for(app, shop_id)


def _opens(app, cookie: str, link: str, shop_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    """What the old cookie and the old link still open of this shop (nothing, when all is well)."""
    opened = []
    carried = app.test_client()
    carried.set_cookie("session", cookie)
    if carried.get(f"/shops/{shop_id}/settings").status_code == 200:
        opened.append("page")
    if carried.get(f"/api/v1/shops/{shop_id}/renders").status_code == 200:
        opened.append("api")
    if app.test_client().get(link).status_code == 200 or open_link(app.test_client(), link).status_code == 303:
        opened.append("link")
    return opened


@pytest.mark.both_databases
def test_a_redacted_shops_cookie_and_link_do_not_open_the_next_shop(app, client, shopify_shop) -> None:
    """After shop/redact a new shop gets a new id, and the old session cookie and unused link open nothing."""
    cookie, link = _cookie_and_unused_link(app, client, shopify_shop)
    _redact(client, "acme.myshopify.com")
    newcomer = add_shop(app, platform="generic", domain="newcomer.example.com")
    assert newcomer != shopify_shop
    assert _opens(app, cookie, link, newcomer) == []
    assert _opens(app, cookie, link, shopify_shop) == []


@pytest.mark.both_databases
def test_a_shop_given_a_deleted_shops_id_is_not_opened_by_its_cookie_or_link(app, client, shopify_shop) -> None:
    """Sessions and links are bound to the shop row itself: a shop restored or inserted under the old id is not
    opened by the deleted shop's cookie or link."""
    cookie, link = _cookie_and_unused_link(app, client, shopify_shop)
    _redact(client, "acme.myshopify.com")
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        created, _key, _secret = create_shop(session, platform="generic", domain="newcomer.example.com")
        session.flush()
        session.execute(Shop.__table__.update().where(Shop.id == created.id).values(id=shopify_shop))
    assert _opens(app, cookie, link, shopify_shop) == []


@pytest.mark.both_databases
def test_a_used_link_stays_used_after_redis_loses_its_data(app, client, shop, redis) -> None:
    """Spent links are recorded in the database: a Redis flush does not make a used link work again."""
    url = link_for(app, shop[0])
    assert open_link(client, url).status_code == 303
    redis.flushall()
    again = open_link(app.test_client(), url)
    assert again.status_code == 401 and "already used" in again.get_data(as_text=True)


@pytest.mark.both_databases
def test_signing_out_ends_the_session_on_the_server(app, client, shop) -> None:
    """A copy of the cookie taken before signing out opens neither the pages nor the API afterwards."""
    csrf = sign_in(app, client, shop[0])
    copied = client.get_cookie("session")
    assert copied is not None
    elsewhere = app.test_client()
    elsewhere.set_cookie("session", copied.value)
    assert elsewhere.get(f"/shops/{shop[0]}/settings").status_code == 200
    assert client.post("/signout", data={"csrf_token": csrf}).status_code == 200
    assert elsewhere.get(f"/shops/{shop[0]}/settings").status_code == 401
    assert elsewhere.get(f"/api/v1/shops/{shop[0]}/renders").status_code == 401


def test_signing_out_ends_only_that_session(app, client, shop) -> None:
    """Another browser signed in to the same shop stays signed in."""
    csrf = sign_in(app, client, shop[0])
    other = app.test_client()
    sign_in(app, other, shop[0])
    client.post("/signout", data={"csrf_token": csrf})
    assert other.get(f"/shops/{shop[0]}/settings").status_code == 200


@pytest.mark.both_databases
def test_a_shopify_launch_url_works_once(app, client, shopify_shop) -> None:
    """The same launch query (hmac and timestamp) signs in once; replayed by another browser it is refused."""
    query = launch_query("acme.myshopify.com")
    assert client.get(f"/shopify/app?{query}").status_code == 302
    replayed = app.test_client().get(f"/shopify/app?{query}")
    assert replayed.status_code == 401 and "already used" in replayed.get_data(as_text=True)
    assert client.get(f"/shops/{shopify_shop}/settings").status_code == 200


def test_the_signed_in_browser_may_reload_its_launch_url(client, shopify_shop) -> None:
    """A reload of the admin's frame by the browser it signed in goes on to the pages instead of an error."""
    query = launch_query("acme.myshopify.com")
    assert client.get(f"/shopify/app?{query}").status_code == 302
    again = client.get(f"/shopify/app?{query}")
    assert again.status_code == 302 and again.headers["Location"].endswith(f"/shops/{shopify_shop}/settings")


@pytest.mark.parametrize("mangle", [
    lambda token: "١٢٣",  # Arabic-Indic digits
    lambda token: token + "١",
    lambda token: token.rsplit(".", 1)[0] + ".١٢٣٤",
    lambda token: token.replace(token[5], "５", 1),  # a fullwidth digit
    lambda token: token + "\ufffd",  # what a byte that is not UTF-8 (%FF) becomes
], ids=["digits-only", "digit-appended", "digits-as-signature", "fullwidth-digit", "not-utf8"])
def test_a_token_with_unicode_characters_is_refused(app, client, shop, mangle) -> None:
    """A sign-in token is URL-safe ASCII: Unicode digits anywhere in it answer 400 and sign no one in."""
    token = unquote(link_for(app, shop[0]).split("token=", 1)[1])
    response = client.get("/signin", query_string={"token": mangle(token)})
    assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)
    assert client.get(f"/shops/{shop[0]}/settings").status_code == 401


@pytest.mark.parametrize("bad_hmac", ["é" * 64, "٣" * 64, "\ufffd"], ids=["accented", "arabic-digits", "not-utf8"])
def test_a_non_ascii_launch_hmac_is_refused(client, shopify_shop, bad_hmac) -> None:
    """A launch whose hmac holds non-ASCII characters answers 401 like any other wrong signature."""
    query = dict(pair.split("=", 1) for pair in launch_query("acme.myshopify.com").split("&"))
    query["hmac"] = bad_hmac
    response = client.get("/shopify/app", query_string=query)
    assert response.status_code == 401 and "signature" in response.get_data(as_text=True)
