"""Scenes a merchant can publish: what each scene was estimated to cost, how faithful its product is, how it
is marked, and why it waits for review; the size each paid call was made at (for calibrating estimates); and
the OpenAI models' shutdown dates as the worker last read them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('assets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('estimate_usd', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('fidelity', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('source_type', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('hold_reason', sa.Text(), nullable=True))
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('size', sa.String(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('estimate_usd', sa.Float(), nullable=True))
    op.create_table(
        'model_lifecycle',
        sa.Column('provider', sa.String(length=32), nullable=False),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('shutdown_date', sa.Date(), nullable=True),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('provider', 'model'),
    )


def downgrade() -> None:
    op.drop_table('model_lifecycle')
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('estimate_usd')
        batch_op.drop_column('size')
    with op.batch_alter_table('assets', schema=None) as batch_op:
        batch_op.drop_column('hold_reason')
        batch_op.drop_column('source_type')
        batch_op.drop_column('fidelity')
        batch_op.drop_column('estimate_usd')
