"""listing by tag: a GIN index on the tags and statistics on them (PostgreSQL)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:00:00

`?tag=` tests jsonb containment (tags::jsonb @> '["x"]'). Without an index, a tag that few files carry
(or none) read every complete file of the user: 0.2 s for one in 5,000 of 1,000,000 files, 1.3 s
for none. A GIN index (jsonb_path_ops: containment only, a third the size of jsonb_ops) finds them
directly; statistics on the expression tell the planner when a tag is common enough that walking
the sort index and filtering is cheaper than reading the index and sorting every match. Partial on
status = 'complete', as the other listing indexes are.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return  # SQLite and others: tag pages scan, as before
    op.execute(
        "CREATE INDEX ix_files_tags_gin ON files USING gin ((CAST(tags AS JSONB)) jsonb_path_ops)"
        " WHERE status = 'complete'"
    )
    if bind.dialect.server_version_info >= (14,):
        # The planner ignores the statistics of partial indexes; without these it guesses 1% for every tag.
        op.execute("CREATE STATISTICS IF NOT EXISTS st_files_tags_jsonb ON (CAST(tags AS JSONB)) FROM files")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_files_tags_jsonb")
        op.execute("DROP INDEX IF EXISTS ix_files_tags_gin")
