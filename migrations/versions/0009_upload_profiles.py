"""upload profiles: the profile each file was uploaded under

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:00:00

Every file so far was checked against the global policy: the built-in `default` profile. A constant
default adds the column without rewriting the table on PostgreSQL 11+. Listing by profile reads a
partial index of the complete files of named profiles only, so uploads that name none write nothing
to it.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NAMED_AND_COMPLETE = "status = 'complete' AND profile <> 'default'"


def upgrade():
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("profile", sa.String(64), nullable=False, server_default="default"))
    op.create_index(
        "ix_files_listing_profile",
        "files",
        ["user_id", "profile", "created_at", "id"],
        postgresql_where=sa.text(NAMED_AND_COMPLETE),
        sqlite_where=sa.text(NAMED_AND_COMPLETE),
    )


def downgrade():
    op.drop_index("ix_files_listing_profile", table_name="files")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("profile")
