"""assets.parent_asset_id, version, instruction: refined scenes keep and link their versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('assets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_asset_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('instruction', sa.Text(), nullable=True))
        batch_op.create_foreign_key('fk_assets_parent_asset_id', 'assets', ['parent_asset_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('assets', schema=None) as batch_op:
        batch_op.drop_constraint('fk_assets_parent_asset_id', type_='foreignkey')
        batch_op.drop_column('instruction')
        batch_op.drop_column('version')
        batch_op.drop_column('parent_asset_id')
