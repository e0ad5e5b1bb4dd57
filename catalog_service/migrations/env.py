"""Alembic environment: migrations run on the connection db.upgrade() hands over."""

from alembic import context

from catalog_service.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `catalog-service db upgrade`, which supplies the connection")
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
