"""Database: the intake pool's driver connections behave like SQLAlchemy's for errors and dropped links."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from catalog_service.db import Database


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    yield database
    database.dispose()


def backend_pid(db: Database) -> int:
    with db.autocommit() as connection:
        return connection.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_each_statement_commits_by_itself(db: Database) -> None:
    with db.autocommit() as connection:
        connection.execute(
            "INSERT INTO shops (platform, domain, api_key_hash, name, settings, active, created_at, updated_at) "
            "VALUES ('generic', 'autocommit.example', repeat('0', 64), '', '{}', true, now(), now())")
        # Still inside the block, another connection already sees the row: nothing waits for a COMMIT.
        other = db.engine.connect()
        try:
            seen = other.execute(text("SELECT count(*) FROM shops WHERE domain = 'autocommit.example'")).scalar()
        finally:
            other.close()
    assert seen == 1


def test_a_driver_error_comes_out_as_sqlalchemys(db: Database) -> None:
    """Callers catch IntegrityError to retry a race, as they do for every other query."""
    with pytest.raises(IntegrityError, match="uq_deliveries_shop_key|shops"):
        with db.autocommit() as connection:
            # No shop 999999: the foreign key refuses it (an integrity error, like a duplicate key).
            connection.execute(
                "INSERT INTO deliveries (shop_id, platform, delivery_key, topic, outcome, received_at) "
                "VALUES (999999, 'shopify', 'k', 't', 'ignored', now())")
    # The connection went back to the pool healthy.
    assert backend_pid(db) > 0


def test_a_connection_the_server_dropped_is_replaced(db: Database, postgres_url: str) -> None:
    """A dropped link fails one statement (the webhook answers 503, the shop retries), never the next."""
    first = backend_pid(db)
    admin = create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    admin.dispose()

    with pytest.raises(OperationalError) as failure:
        with db.autocommit() as connection:
            connection.execute("SELECT 1")
    assert failure.value.connection_invalidated

    assert backend_pid(db) != first
