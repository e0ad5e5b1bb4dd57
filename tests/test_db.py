"""Database: transactions commit or roll back whole; a connection the server dropped is replaced."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from catalog_service.db import Database

pytestmark = pytest.mark.both_databases  # database behaviour: on PostgreSQL too


@pytest.fixture
def db(app_config: dict[str, object]) -> Iterator[Database]:
    database = Database(str(app_config["database_url"]))
    yield database
    database.dispose()


def backend_pid(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")))


def test_an_error_in_a_transaction_rolls_all_of_it_back(db: Database) -> None:
    """Rows written before the error are gone, and the session is usable afterwards."""
    with pytest.raises(RuntimeError):
        with db.transaction() as session:
            session.execute(text(
                "INSERT INTO shops (platform, domain, api_key_hash, name, settings, active, created_at, updated_at, "
                "uid) VALUES ('generic', 'rollback.example', :hash, '', '{}', true, :now, :now, 'rollback-uid')"),
                {"hash": "0" * 64, "now": "2026-01-01 00:00:00"})
            raise RuntimeError("fails after the insert")
    with db.transaction() as session:
        assert session.scalar(text("SELECT count(*) FROM shops")) == 0


def test_a_connection_the_server_dropped_is_replaced(db: Database, postgres_url: str) -> None:
    """No pre-ping: a dropped link fails one transaction (the webhook answers 503, the shop retries),
    never the next one."""
    first = backend_pid(db)
    db.remove()
    admin = create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    admin.dispose()

    with pytest.raises(OperationalError) as failure:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
    assert failure.value.connection_invalidated
    db.remove()

    assert backend_pid(db) != first


def test_a_new_sqlite_file_is_readable_by_its_owner_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The SQLite file (shop tokens, merchants' data) and its WAL files are created 0600, whatever the umask."""
    import os
    import stat

    from catalog_service.db import make_engine

    path = tmp_path / "var" / "catalog.db"
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{path}")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        files = [path, *path.parent.glob("catalog.db-*")]
        modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
        assert set(modes.values()) == {"0o600"}, modes
        engine.dispose()
    finally:
        os.umask(old)
