"""initial: the item table"""
import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = None


def upgrade():
    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50), nullable=False),
                    sa.Column("qty", sa.Integer, nullable=False))


def downgrade():
    op.drop_table("item")
