from django.db import migrations


class Migration(migrations.Migration):
    """Fails: a statement on a table that does not exist."""
    dependencies = [("shop", "0004_remove_price")]
    operations = [migrations.RunSQL("UPDATE no_such_table SET x = 1", migrations.RunSQL.noop)]
