"""fails: a statement on a table that does not exist"""
from alembic import op

revision = "a5"
down_revision = "a4"


def upgrade():
    op.execute("UPDATE no_such_table SET x = 1")


def downgrade():
    pass
