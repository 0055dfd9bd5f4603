"""destructive: a column and its values dropped"""
import sqlalchemy as sa
from alembic import op

revision = "a4"
down_revision = "a3"


def upgrade():
    with op.batch_alter_table("item", recreate="always") as batch:
        batch.drop_column("qty")


def downgrade():
    with op.batch_alter_table("item", recreate="always") as batch:
        batch.add_column(sa.Column("qty", sa.Integer, nullable=False, server_default="0"))
