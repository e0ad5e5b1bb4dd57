"""renders.source_url, renders.source_thumb_key: the photo each render was made from

A product's photo changes; a render made from the old one keeps showing that one (its address, and a small
copy in the asset storage, since the shop may delete the file), not the product's current photo.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('source_thumb_key', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.drop_column('source_thumb_key')
        batch_op.drop_column('source_url')
