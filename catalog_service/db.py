"""The database engine and sessions for one app, and the `db upgrade` migration runner."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Database:
    """Engine plus a thread-scoped session factory, one per app."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
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

    def upgrade(self) -> None:
        upgrade(self.engine)

    def dispose(self) -> None:
        self.sessions.remove()
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # The file holds shop tokens (encrypted) and merchants' data: readable by this user only. SQLite
            # gives its -wal and -shm files the database file's mode.
            if not parsed.database.startswith("file:"):
                os.close(os.open(parsed.database, os.O_RDWR | os.O_CREAT, 0o600))
        # Web and worker threads share the file; wait for locks instead of failing at once.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _begin_immediate).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            # Take the write lock at the start. A deferred transaction that read first and writes later
            # cannot wait for another writer in WAL mode: it fails at once with "database is locked".
            # Taking it up front makes concurrent webhooks queue (busy timeout) instead of failing.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it costs a round trip on every request. A connection the server dropped fails its
    # request with a 503 (the sender retries) and is replaced, which SQLAlchemy does on disconnect errors.
    return create_engine(url, pool_size=5, max_overflow=5, pool_recycle=3600)


def _sqlite_driver(connection: Connection) -> sqlite3.Connection:
    # The sqlite3 connection itself: a statement through SQLAlchemy would first open a transaction.
    return cast(sqlite3.Connection, connection.connection.driver_connection)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` on this engine."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a SQLite table (copy, drop, rename); with foreign keys enforced, the
            # drop would delete every row that refers to the old table. SQLite takes this pragma only outside a
            # transaction (the connection has none open yet: isolation_level None) and, as its own table-rebuild
            # procedure says, the keys are checked before the migration commits.
            _sqlite_driver(connection).execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"the migration left rows whose foreign key points at nothing: {broken[:5]}")
        finally:
            if sqlite:
                _sqlite_driver(connection).execute("PRAGMA foreign_keys=ON")
