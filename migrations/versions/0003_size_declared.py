"""files.size_declared

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 16:00:00

An Uppy form upload (`/uppy/s3/params`) arrives without the file's size: its record reserves an
upper bound (the form's content-length-range) with size_declared false, and confirm replaces it
with the size S3 reports. Every existing record declared its size.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("size_declared", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade():
    with op.batch_alter_table("files") as batch:
        batch.drop_column("size_declared")
