from django.db import migrations, models


def backfill(apps, schema_editor):
    Product = apps.get_model("shop", "Product")
    for product in Product.objects.all():
        product.sku = "SKU-%d" % product.id
        product.save(update_fields=["sku"])


class Migration(migrations.Migration):
    """Preserving: a rebuild (longer name), a new column and its backfill."""
    dependencies = [("shop", "0002_category")]
    operations = [
        migrations.AlterField(model_name="product", name="name", field=models.CharField(max_length=100)),
        migrations.AddField(model_name="product", name="sku", field=models.CharField(max_length=20, null=True)),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
