"""files.watch_at (the upload watcher's schedule) and users.reserved_bound (the quota's fast path)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 04:00:00

- files.watch_at: when the upload watcher next looks in S3 for an Uppy form's object (NULL: not
  watched). The watcher is one periodic task that takes the forms due, instead of a task message
  per form: signing a form writes its record and nothing else.
- users.reserved_bound: never less than the bytes the user's live reservations hold (quota.py).
  Existing users start at their quota, a bound that always holds: their first reservation counts
  the live ones exactly and sets it.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

WATCHED = sa.text("watch_at IS NOT NULL")


def upgrade():
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("watch_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_files_watch", "files", ["watch_at"], postgresql_where=WATCHED, sqlite_where=WATCHED)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("reserved_bound", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE users SET reserved_bound = quota_bytes")


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("reserved_bound")
    op.drop_index("ix_files_watch", table_name="files")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("watch_at")
