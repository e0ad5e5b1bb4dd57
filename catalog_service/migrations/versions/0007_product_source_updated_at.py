"""products.source_updated_at: when the shop last changed the product, as its signed webhook body said

A delivery's id header is not signed, so a captured body can be sent again under a fresh id; one
older than what we hold is then recorded and ignored instead of reverting the product.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_updated_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('source_updated_at')
