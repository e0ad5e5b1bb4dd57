"""OpenAI's shutdown dates in the database, and what the merchant hears: a warning on the settings page while
their model shuts down within 30 days, a refused save once it has shut down (page and API), and a message to
fail a render with."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from sqlalchemy import select

from catalog_service.model_status import notice_for, refusal, save_shutdown_dates
from catalog_service.models import ModelLifecycle, Shop, utcnow
from catalog_service.schemas import settings_with_defaults
from merchant import field_error, form_data, sign_in

TODAY = dt.date(2027, 2, 1)


@pytest.fixture
def db(app):  # type: ignore[no-untyped-def]
    with app.app_context():
        yield app.extensions["catalog_db"]


def save(db, dates: dict[str, dt.date | None]) -> int:  # type: ignore[no-untyped-def]
    with db.transaction() as session:
        return save_shutdown_dates(session, dates)


def notice(db, model: str, today: dt.date = TODAY):  # type: ignore[no-untyped-def]
    with db.transaction() as session:
        return notice_for(session, model, today)


def test_only_image_models_are_kept_and_a_second_read_updates_them(db) -> None:
    """The account's list names every model; the image models are ours to track, each row updated in place."""
    assert save(db, {"gpt-image-2": None, "gpt-image-2.5-flare": dt.date(2027, 3, 1), "gpt-4o": None,
                     "whisper-1": dt.date(2027, 1, 1)}) == 2
    save(db, {"gpt-image-2.5-flare": dt.date(2027, 2, 20)})
    with db.transaction() as session:
        rows = {row.model: row.shutdown_date for row in session.scalars(select(ModelLifecycle))}
    assert rows == {"gpt-image-2": None, "gpt-image-2.5-flare": dt.date(2027, 2, 20)}


def test_no_notice_for_a_model_without_a_date_or_far_from_it(db) -> None:
    """No date announced, more than 30 days away, or never listed: nothing to say."""
    save(db, {"gpt-image-2": None, "gpt-image-2.6-flare": TODAY + dt.timedelta(days=31)})
    assert notice(db, "gpt-image-2") is None
    assert notice(db, "gpt-image-2.6-flare") is None
    assert notice(db, "gpt-image-2.6-sunburst") is None  # never listed: nothing known against it


def test_within_thirty_days_a_warning_names_the_date_and_what_to_choose(db) -> None:
    """30 days ahead: a warning with the date, the days left and current models to choose instead."""
    save(db, {"gpt-image-2.5-flare": TODAY + dt.timedelta(days=30), "gpt-image-2.6-sunburst": None})
    found = notice(db, "gpt-image-2.5-flare")
    assert found is not None and found.level == "warning"
    assert "2027-03-03" in found.message and "in 30 days" in found.message
    assert found.instead and "gpt-image-2.5-flare" not in found.instead
    assert all(name in found.message for name in found.instead)


def test_on_and_after_the_date_it_is_an_error(db) -> None:
    """From the shutdown date on: an error, and the refusal a render fails with says the same."""
    save(db, {"gpt-image-2.5-flare": TODAY})
    for today in (TODAY, TODAY + dt.timedelta(days=9)):
        found = notice(db, "gpt-image-2.5-flare", today)
        assert found is not None and found.level == "error" and "was shut down on 2027-02-01" in found.message
    with db.transaction() as session:
        assert refusal(session, "gpt-image-2.5-flare", TODAY) == found.message
        assert refusal(session, "gpt-image-2", TODAY) is None


def test_a_snapshot_suggests_its_alias_and_a_shut_down_model_its_replacement(db) -> None:
    """A dated snapshot shutting down: its moving alias. A model OpenAI retired: the documented replacement."""
    save(db, {"gpt-image-2-2026-04-21": TODAY + dt.timedelta(days=5)})
    snapshot = notice(db, "gpt-image-2-2026-04-21")
    assert snapshot is not None and snapshot.instead == ("gpt-image-2",)
    retired = notice(db, "gpt-image-1.5")
    assert retired is not None and retired.level == "error" and retired.instead == ("gpt-image-2.6-sunburst",)


def test_the_replacement_is_never_a_model_shutting_down_itself(db) -> None:
    """The alias shuts down too: something else is suggested."""
    save(db, {"gpt-image-2-2026-04-21": TODAY + dt.timedelta(days=5), "gpt-image-2": TODAY + dt.timedelta(days=6)})
    found = notice(db, "gpt-image-2-2026-04-21")
    assert found is not None and "gpt-image-2" not in found.instead and found.instead


# --- the settings page and the API ------------------------------------------------------------------------------


def use_model(app, shop_id: int, model: str) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            row = session.get(Shop, shop_id)
            row.settings = settings_with_defaults({**row.settings, "provider": "openai", "model": model})


def test_the_settings_page_warns_while_the_shops_model_shuts_down(app, client, shop, db) -> None:
    """A banner names the date for the model the shop uses, and only for that one."""
    shop_id = shop[0]
    soon = utcnow().date() + dt.timedelta(days=12)
    save(db, {"gpt-image-2.5-flare": soon})
    sign_in(app, client, shop_id)
    use_model(app, shop_id, "gpt-image-2")
    assert 'id="model-notice"' not in client.get(f"/shops/{shop_id}/settings").get_data(as_text=True)

    use_model(app, shop_id, "gpt-image-2.5-flare")
    page = html.unescape(client.get(f"/shops/{shop_id}/settings").get_data(as_text=True))
    assert 'id="model-notice" data-level="warning"' in page
    assert f"shuts down on {soon.isoformat()}" in page


def test_saving_a_shut_down_model_is_refused_on_the_page_and_in_the_api(app, client, shop, db) -> None:
    """The same settings error, with what to choose instead, wherever settings are saved; nothing is saved."""
    shop_id, api_key, _secret = shop
    save(db, {"gpt-image-2.5-flare": utcnow().date() - dt.timedelta(days=1)})
    csrf = sign_in(app, client, shop_id)
    settings = {**settings_with_defaults({}), "model": "gpt-image-2.5-flare"}
    response = client.post(f"/shops/{shop_id}/settings", data={"csrf_token": csrf, **form_data(settings)})
    assert response.status_code == 400
    message = html.unescape(field_error(response.get_data(as_text=True), "model"))
    assert "was shut down on" in message and "instead" in message

    api = client.put(f"/api/v1/shops/{shop_id}/settings", json=settings,
                     headers={"Authorization": f"Bearer {api_key}"})
    assert api.status_code == 400, api.get_json()
    assert "was shut down on" in str(api.get_json())
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Shop, shop_id).settings.get("model", "") == ""
