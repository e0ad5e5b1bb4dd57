"""The schema: migrations match the models, secrets are encrypted at rest, lookups are shop-scoped."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from catalog_service.models import Base, Render, get_for_shop
from catalog_service.shops import create_shop

pytestmark = pytest.mark.both_databases  # database behaviour: on PostgreSQL too


def test_migrations_produce_exactly_the_models(app) -> None:
    """`db upgrade` builds the schema the models describe: nothing missing, nothing extra."""
    engine = app.extensions["catalog_db"].engine
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        assert compare_metadata(context, Base.metadata) == []


def test_webhook_secret_is_not_stored_in_clear_text(app) -> None:
    """The database holds ciphertext; the model gives back the secret."""
    with app.app_context():
        database = app.extensions["catalog_db"]
        with database.transaction() as session:
            shop, api_key, secret = create_shop(session, platform="generic", domain="a.example.com")
        raw = database.session().execute(text("SELECT webhook_secret, api_key_hash FROM shops")).one()
        assert secret not in raw[0] and api_key not in raw[1]
        database.remove()
        assert database.session().get(type(shop), shop.id).webhook_secret == secret


def test_get_for_shop_never_returns_another_shops_row(app) -> None:
    """A render of shop A looked up as shop B is not found."""
    from catalog_service.intake import request_render
    from catalog_service.models import Product

    with app.app_context():
        database = app.extensions["catalog_db"]
        with database.transaction() as session:
            shop_a, _, _ = create_shop(session, platform="generic", domain="a.example.com")
            shop_b, _, _ = create_shop(session, platform="generic", domain="b.example.com")
            product = Product(shop_id=shop_a.id, external_id="1")
            session.add(product)
            session.flush()
            render = request_render(session, shop_a, product, trigger="manual")
        session = database.session()
        assert get_for_shop(session, Render, render.id, shop_a.id) is not None
        assert get_for_shop(session, Render, render.id, shop_b.id) is None
