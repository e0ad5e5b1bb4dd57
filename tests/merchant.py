"""Helpers for tests of the merchant pages: sign a client in by link, and the settings page's form as data."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from catalog_service.login_links import make_link
from catalog_service.models import Shop


def shop_row(app, shop_id: int) -> Shop:  # type: ignore[no-untyped-def]
    """The shop as stored (detached), for making its sign-in links."""
    with app.app_context():
        database = app.extensions["catalog_db"]
        shop = database.session().get(Shop, shop_id)
        database.remove()
        return shop


def continue_form(html: str) -> dict[str, str]:
    """The hidden fields of the sign-in page's Continue form (the link's token and the page's CSRF token)."""
    form = re.search(r'<form method="post" action="/signin" id="signin-form">(.*?)</form>', html, re.S)
    assert form, html
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(1)))


def open_link(client, url: str):  # type: ignore[no-untyped-def]
    """What a person does with a sign-in link: open it, then press Continue. The Continue POST's response, or
    the page's own when it shows no Continue button (a link that cannot work)."""
    page = client.get(url)
    if page.status_code != 200:
        return page
    origin = urlsplit(url)
    action = f"{origin.scheme}://{origin.netloc}/signin" if origin.netloc else "/signin"  # the page's own origin
    return client.post(action, data=continue_form(page.get_data(as_text=True)))


def sign_in(app, client, shop_id: int) -> str:  # type: ignore[no-untyped-def]
    """Open a fresh sign-in link with the test client and continue; returns the session's CSRF token."""
    config = app.extensions["catalog"].config
    link = make_link(config, shop_row(app, shop_id))
    response = open_link(client, link.url)
    assert response.status_code == 303, response.get_data(as_text=True)
    with client.session_transaction() as session:
        return str(session["csrf_token"])


def form_data(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Settings as the page's form sends them: dotted names, checkboxes only when ticked, lists repeated."""
    data: dict[str, Any] = {}
    for key, value in settings.items():
        name = prefix + key
        if isinstance(value, bool):
            if value:
                data[name] = "true"
        elif isinstance(value, dict):
            data.update(form_data(value, name + "."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for index, item in enumerate(value):
                data.update(form_data(item, f"{name}.{index}."))
        elif isinstance(value, list):
            data[name] = [str(item) for item in value]
        else:
            data[name] = str(value)
    return data


def field_error(html: str, path: str) -> str:
    """The error text shown beside one field ("" when none)."""
    match = re.search(r'id="f-%s-error">([^<]*)<' % re.escape(path.replace(".", "-")), html)
    return match.group(1) if match else ""
