"""preserving: the item table rebuilt with a new column, then the column filled"""
import sqlalchemy as sa
from alembic import op

revision = "a3"
down_revision = "a2"


def upgrade():
    with op.batch_alter_table("item", recreate="always") as batch:
        batch.add_column(sa.Column("note", sa.String(40), nullable=True))
    op.execute("UPDATE item SET note = 'item ' || id")


def downgrade():
    with op.batch_alter_table("item", recreate="always") as batch:
        batch.drop_column("note")
