"""additive: a new table"""
import sqlalchemy as sa
from alembic import op

revision = "a2"
down_revision = "a1"


def upgrade():
    op.create_table("tag", sa.Column("id", sa.Integer, primary_key=True), sa.Column("label", sa.String(30)))


def downgrade():
    op.drop_table("tag")
