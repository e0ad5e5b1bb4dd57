"""The database engine and sessions for one app, and the `db upgrade` migration runner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

DriverConnection = psycopg.Connection[tuple[Any, ...]]


class Database:
    """Engine plus a thread-scoped session factory, one per app."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # Its own small pool, in autocommit from the start (see autocommit()); SQLite goes without.
        self._autocommit_engine = None if self.dialect == "sqlite" else make_engine(url, autocommit=True)
        self.sessions = scoped_session(sessionmaker(bind=self.engine, expire_on_commit=False))

    def session(self) -> Session:
        return self.sessions()

    def remove(self) -> None:
        self.sessions.remove()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        session = self.session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def autocommit(self) -> Iterator[DriverConnection]:
        """A pooled driver (psycopg) connection on which every statement commits by itself. Not on SQLite.

        For the one statement that takes most webhooks (see DriverStatement): from a pool of its own, since
        setting and resetting the mode on every checkout from the main pool cost a webhook more than its
        statement. Driver errors come out as SQLAlchemy's (IntegrityError, OperationalError, ...), as from
        any other query, and a connection the server dropped is thrown away rather than put back.
        """
        engine = self._autocommit_engine
        if engine is None:
            raise RuntimeError("autocommit connections are for PostgreSQL")
        driver_error = engine.dialect.loaded_dbapi.Error
        pooled = engine.raw_connection()
        try:
            yield pooled.driver_connection
        except driver_error as exc:
            dropped = engine.dialect.is_disconnect(exc, pooled.dbapi_connection, None)
            if dropped:
                pooled.invalidate(exc)
            raise DBAPIError.instance(None, None, exc, driver_error, connection_invalidated=dropped,
                                      dialect=engine.dialect) from exc
        finally:
            pooled.close()

    def upgrade(self) -> None:
        upgrade(self.engine)

    def dispose(self) -> None:
        self.sessions.remove()
        self.engine.dispose()
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose()


class DriverStatement:
    """A SQLAlchemy statement compiled once for psycopg, run on a driver connection (Database.autocommit()).

    For the hottest statement only: SQLAlchemy's execution and result machinery cost a webhook about as
    much CPU as psycopg's own work. The statement must take plain values (str, int, bool, datetime, None):
    SQLAlchemy's type processing (enums, JSON) is skipped, so callers pass enums' values and JSON as text.
    """

    def __init__(self, statement: Executable) -> None:
        compiled = statement.compile(dialect=_PSYCOPG)
        self.sql = str(compiled)
        # Values written into the statement (literals) travel as parameters; they never change.
        self.fixed = {name: value for name, value in compiled.params.items() if value is not None}

    def first(self, connection: DriverConnection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row the statement returns, or None."""
        return connection.execute(self.sql, {**self.fixed, **params}).fetchone()


_PSYCOPG = postgresql_psycopg.dialect()


def make_engine(url: str, *, autocommit: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Web and worker threads share the file; wait for locks instead of failing at once.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _begin_immediate).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection):  # type: ignore[no-untyped-def]
            # Take the write lock at the start. A deferred transaction that read first and writes later
            # cannot wait for another writer in WAL mode: it fails at once with "database is locked".
            # Taking it up front makes concurrent webhooks queue (busy timeout) instead of failing.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it costs a round trip on every request. A connection the server dropped fails its
    # request with a 503 (the sender retries) and is replaced, which SQLAlchemy does on disconnect errors.
    if autocommit:
        # Nothing to roll back when a connection comes back: every statement committed by itself.
        engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=3, pool_recycle=3600,
                               pool_reset_on_return=None)

        @event.listens_for(engine, "connect")
        def _index_lookups_only(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # This pool runs intake's statement, made of unique-index lookups. psycopg prepares it and
            # PostgreSQL caches one generic plan per connection; planned while a table was small, that
            # plan would read the table whole, and keep doing so as it grows (nothing re-plans it until
            # the next ANALYZE), each webhook slower than the last.
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET enable_seqscan = off")

        return engine
    return create_engine(url, pool_size=5, max_overflow=5, pool_recycle=3600)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` on this engine."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
