"""shares: public links to complete files

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:30:00

A share is a link `<base>/s/<token>` to one complete file that needs no account. Only the SHA-256
of its token is kept (looked up by it, unique); a password, when given, is hashed as users'
passwords are. `downloads` is counted by one conditional UPDATE, so concurrent fetches never
pass `max_downloads`; `revoked_at` set means the link stopped at its owner's request.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "shares",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("file_id", sa.String(36), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_downloads", sa.Integer(), nullable=True),
        sa.Column("downloads", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_shares_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name=op.f("fk_shares_file_id_files"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_shares_token_hash")),
    )
    op.create_index("ix_shares_user_created", "shares", ["user_id", "created_at", "id"])
    op.create_index("ix_shares_file_created", "shares", ["file_id", "created_at", "id"])


def downgrade():
    op.drop_index("ix_shares_file_created", table_name="shares")
    op.drop_index("ix_shares_user_created", table_name="shares")
    op.drop_table("shares")
