"""files.tier_changing_until

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 21:00:00

A tier change copies the object onto itself in S3 with no lock held. While it runs, the record
carries when the change stops counting as in progress, so two changes of one file never race in
S3 (whose copy lands last would decide the storage class, not whose commit did).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("tier_changing_until", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("files") as batch:
        batch.drop_column("tier_changing_until")
