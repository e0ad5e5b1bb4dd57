"""batch_scenes, scene_batches: backfill scenes made through OpenAI's Batch API at half price, each made once

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

SCENE_STATE = ('pending', 'submitted', 'done', 'failed', 'direct')
# renders.status gains 'waiting': the column is a plain string (native_enum=False, no CHECK), so nothing to alter.


def upgrade() -> None:
    op.create_table(
        'batch_scenes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('render_id', sa.Integer(), nullable=False),
        sa.Column('preset', sa.String(length=64), nullable=False),
        sa.Column('custom_id', sa.String(length=128), nullable=False),
        sa.Column('state', sa.Enum(*SCENE_STATE, name='batchscenestate', native_enum=False, length=32),
                  nullable=False),
        sa.Column('submission', sa.String(length=128), nullable=True),
        sa.Column('batch_id', sa.String(length=128), nullable=True),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('edit', sa.JSON(), nullable=False),
        sa.Column('context', sa.JSON(), nullable=False),
        sa.Column('estimate_usd', sa.Float(), nullable=False),
        sa.Column('error', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['render_id'], ['renders.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('custom_id', name='uq_batch_scenes_custom_id'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_batch_scenes_state', 'batch_scenes', ['state'])
    op.create_index('ix_batch_scenes_render', 'batch_scenes', ['render_id'])
    op.create_table(
        'scene_batches',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.String(length=128), nullable=False),
        sa.Column('submission', sa.String(length=128), nullable=False),
        sa.Column('submitted', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('outcome', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('batch_id', name='uq_scene_batches_batch_id'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_scene_batches_status', 'scene_batches', ['status'])


def downgrade() -> None:
    op.drop_table('scene_batches')
    op.drop_table('batch_scenes')
