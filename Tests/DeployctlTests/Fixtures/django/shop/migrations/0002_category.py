from django.db import migrations, models


class Migration(migrations.Migration):
    """Additive: a new table."""
    dependencies = [("shop", "0001_initial")]
    operations = [
        migrations.CreateModel(
            name="Category",
            fields=[("id", models.AutoField(primary_key=True)), ("title", models.CharField(max_length=40))],
        ),
    ]
