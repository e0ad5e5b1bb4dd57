"""The schema: migrations match the models, secrets are encrypted at rest, lookups are shop-scoped."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Integer, MetaData, text
from sqlalchemy.orm import Session

from catalog_service.db import make_engine, upgrade
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


# --- ids are never reused --------------------------------------------------------------------------------


def _integer_id_tables() -> list[str]:
    return sorted(table.name for table in Base.metadata.sorted_tables
                  if [column.name for column in table.primary_key] == ["id"]
                  and isinstance(table.c.id.type, Integer))


def test_every_table_with_an_integer_id_is_autoincrement_on_sqlite() -> None:
    """Ids travel in links, cookies and API answers: every integer id is AUTOINCREMENT, so SQLite never reuses one."""
    tables = _integer_id_tables()
    assert {"shops", "products", "renders", "assets", "reference_images"} <= set(tables)
    assert [name for name in tables if not Base.metadata.tables[name].dialect_options["sqlite"]["autoincrement"]] == []


def test_migrated_sqlite_tables_are_autoincrement(app) -> None:
    """`db upgrade` builds those tables with AUTOINCREMENT (a later table rebuild that lost it would show here)."""
    engine = app.extensions["catalog_db"].engine
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL sequences never hand out an id twice")
    with engine.connect() as connection:
        schema = dict(connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all())
    assert [name for name in _integer_id_tables() if "AUTOINCREMENT" not in schema[name].upper()] == []


def _filler(column: Any, ids: dict[str, int], row: int) -> Any:
    """A value a NOT NULL column of a reflected table accepts (foreign keys point at the row made before)."""
    for key in column.foreign_keys:
        return ids[key.column.table.name]
    python_type = column.type.python_type
    if python_type is dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    if python_type in (dict, list):
        return python_type()
    return {bool: True, int: 1, float: 0.0}.get(python_type, f"{column.table.name}-{column.name}-{row}")


def test_the_migration_keeps_every_row_and_stops_id_reuse(tmp_path: Path) -> None:
    """On a SQLite database with data, the rebuild keeps every row and every reference (no cascade on the old
    tables' drop), gives each shop its own uid, and a deleted shop's id is not handed out again."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0006")
    old = MetaData()
    old.reflect(engine)
    ids: dict[str, int] = {}
    with engine.begin() as connection:
        for table in old.sorted_tables:
            if table.name == "alembic_version":
                continue
            for row in range(2 if table.name == "shops" else 1):
                values = {column.name: _filler(column, ids, row) for column in table.columns
                          if not column.nullable and not column.primary_key}
                ids[table.name] = connection.execute(table.insert().values(values)).inserted_primary_key[0]
    counts = {name: 1 for name in ids} | {"shops": 2}

    upgrade(engine)
    with engine.connect() as connection:
        after = {name: connection.scalar(text(f"SELECT count(*) FROM {name}")) for name in counts}
        assert after == counts
        assert connection.execute(text("PRAGMA foreign_key_check")).all() == []
        assert connection.scalar(text("SELECT shop_id FROM products")) == ids["shops"] == 2
        uids = connection.scalars(text("SELECT uid FROM shops")).all()
        assert len(set(uids)) == 2 and all(len(uid) >= 16 for uid in uids)
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        assert compare_metadata(context, Base.metadata) == []
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM shops WHERE id = 2"))
    with Session(engine) as session, session.begin():
        shop, _key, _secret = create_shop(session, platform="generic", domain="next.example.com")
        assert shop.id == 3
    engine.dispose()
