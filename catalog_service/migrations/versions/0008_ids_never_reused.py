"""Ids never reused; sessions and spent one-time tokens kept in the database

SQLite hands a deleted row's integer id to the next row unless the table is AUTOINCREMENT, which only
CREATE TABLE can say: on SQLite every table with an integer id is rebuilt (Alembic's batch mode copies
its rows into the new table; db.upgrade() turns foreign keys off around the migration, so dropping the
old table cascades nothing). PostgreSQL's sequences never go back: nothing to rebuild there.
SQLite's reflection does not report AUTOINCREMENT, so a later migration that rebuilds one of these
tables must pass table_kwargs={"sqlite_autoincrement": True} again (tests/test_models.py checks).

shops.uid is a random value of each row that sign-in links and session cookies carry, so a shop that
gets a deleted shop's id is not opened by them. web_sessions lets signing out end a session on the
server; spent_tokens remembers used sign-in links and Shopify app launches across a Redis flush.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

INTEGER_ID_TABLES = ('shops', 'products', 'source_images', 'renders', 'assets', 'reference_images', 'deliveries',
                     'usage_records')


def _fill_shop_uids() -> None:
    bind = op.get_bind()
    shops = sa.table('shops', sa.column('id', sa.Integer()), sa.column('uid', sa.String(32)))
    for shop_id in bind.scalars(sa.select(shops.c.id)).all():
        bind.execute(shops.update().where(shops.c.id == shop_id).values(uid=secrets.token_hex(16)))


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.add_column('shops', sa.Column('uid', sa.String(length=32), nullable=True))
    _fill_shop_uids()
    for table in INTEGER_ID_TABLES if sqlite else ('shops',):
        with op.batch_alter_table(table, schema=None, recreate='always' if sqlite else 'auto',
                                  table_kwargs={'sqlite_autoincrement': True} if sqlite else {}) as batch_op:
            if table == 'shops':
                batch_op.alter_column('uid', existing_type=sa.String(length=32), nullable=False)
                batch_op.create_unique_constraint('uq_shops_uid', ['uid'])

    op.create_table('web_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_web_sessions_shop', 'web_sessions', ['shop_id'])
    op.create_index('ix_web_sessions_expires', 'web_sessions', ['expires_at'])
    op.create_table('spent_tokens',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_spent_tokens_expires', 'spent_tokens', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_spent_tokens_expires', table_name='spent_tokens')
    op.drop_table('spent_tokens')
    op.drop_index('ix_web_sessions_expires', table_name='web_sessions')
    op.drop_index('ix_web_sessions_shop', table_name='web_sessions')
    op.drop_table('web_sessions')
    # The tables stay AUTOINCREMENT: ids that are never reused harm no earlier revision.
    with op.batch_alter_table('shops', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint('uq_shops_uid', type_='unique')
        batch_op.drop_column('uid')
