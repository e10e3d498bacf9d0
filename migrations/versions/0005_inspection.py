"""files: content inspection state, findings, preview and quarantine keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:10:00

Every upload that reaches `complete` is inspected by a task-queue worker; the record carries the
state (pending, passed, rejected), when a worker claimed it (a lease: a dead worker's claim is taken
over), what inspection found, the WebP preview's key and, for a rejected object kept for review,
its quarantine key.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PENDING = sa.text("inspection_state = 'pending'")
QUARANTINED = sa.text("quarantine_key IS NOT NULL")


def upgrade():
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("inspection_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("inspection_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("inspected_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("inspection", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("thumbnail_key", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("quarantine_key", sa.String(1024), nullable=True))
    op.create_index(
        "ix_files_inspection_pending",
        "files",
        ["inspection_claimed_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_files_quarantine", "files", ["inspected_at"], postgresql_where=QUARANTINED, sqlite_where=QUARANTINED
    )


def downgrade():
    op.drop_index("ix_files_quarantine", table_name="files")
    op.drop_index("ix_files_inspection_pending", table_name="files")
    with op.batch_alter_table("files") as batch:
        for column in (
            "quarantine_key",
            "thumbnail_key",
            "inspection",
            "inspected_at",
            "inspection_claimed_at",
            "inspection_state",
        ):
            batch.drop_column(column)
