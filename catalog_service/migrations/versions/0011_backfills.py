"""backfills, backfill_items: a shop's existing catalog done in one action, each product at most once

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BACKFILL_STATUS = ('collecting', 'ready', 'running', 'paused', 'done', 'cancelled', 'failed')
ITEM_STATUS = ('pending', 'queued', 'done', 'failed', 'skipped')


def upgrade() -> None:
    op.create_table(
        'backfills',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.Enum(*BACKFILL_STATUS, name='backfillstatus', native_enum=False, length=32),
                  nullable=False),
        sa.Column('filters', sa.JSON(), nullable=False),
        sa.Column('scenes', sa.JSON(), nullable=False),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('source_state', sa.JSON(), nullable=False),
        sa.Column('estimate', sa.JSON(), nullable=False),
        sa.Column('pause_reason', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_backfills_shop_status', 'backfills', ['shop_id', 'status'])
    op.create_table(
        'backfill_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('backfill_id', sa.Integer(), nullable=False),
        sa.Column('product_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.Enum(*ITEM_STATUS, name='backfillitemstatus', native_enum=False, length=32),
                  nullable=False),
        sa.Column('render_id', sa.Integer(), nullable=True),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('cost_usd', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['backfill_id'], ['backfills.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['product_id'], ['products.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['render_id'], ['renders.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('backfill_id', 'product_id', name='uq_backfill_items_product'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_backfill_items_status', 'backfill_items', ['backfill_id', 'status'])
    op.create_index('ix_backfill_items_fingerprint', 'backfill_items', ['product_id', 'fingerprint'])


def downgrade() -> None:
    op.drop_table('backfill_items')
    op.drop_table('backfills')
