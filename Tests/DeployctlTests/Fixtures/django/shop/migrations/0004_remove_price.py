from django.db import migrations


class Migration(migrations.Migration):
    """Destructive: a column and its values dropped."""
    dependencies = [("shop", "0003_product_sku")]
    operations = [migrations.RemoveField(model_name="product", name="price")]
