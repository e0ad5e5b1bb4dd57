"""Indexes for looking up a product's source images and renders

Every products/update webhook reads and replaces the product's source images and looks for the
media we pushed (through its renders); a product delete cancels its queued renders. Without
these indexes each of those scans the whole table, which grows with every product ever seen.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_source_images_product', 'source_images', ['product_id'])
    op.create_index('ix_renders_product', 'renders', ['product_id'])


def downgrade() -> None:
    op.drop_index('ix_renders_product', table_name='renders')
    op.drop_index('ix_source_images_product', table_name='source_images')
