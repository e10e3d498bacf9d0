"""folders: the folders a user made, kept while they are empty

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 14:00:00

A folder is a path on its files (files.folder); a folder the user creates in the page before
anything is in it needs a row of its own, or it would vanish at the next reload.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "folders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "path", name="uq_folders_user_path"),
    )


def downgrade():
    op.drop_table("folders")
