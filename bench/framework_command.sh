#!/bin/bash
# Deploy time of one Django migration through `manage.py migrate` (migrate_command) vs the same
# migration as .sql (manage.py sqlmigrate output), on a database of N rows.
set -e
cd "$(dirname "$0")/.."
D=${D:-$PWD/.build/debug/deployctl}
FIX=$PWD/Tests/DeployctlTests/Fixtures/django
N=${N:-100000}
W=$(mktemp -d)
mkdir -p $W/base/app && cp -r $FIX/. $W/base/app/ && rm $W/base/app/shop/migrations/000[3-5]*
cat > $W/base/app/shop/migrations/0003_rebuild.py <<'PY'
from django.db import migrations, models
class Migration(migrations.Migration):
    dependencies = [("shop", "0002_category")]
    operations = [
        migrations.AlterField(model_name="product", name="name", field=models.CharField(max_length=100)),
        migrations.AddField(model_name="product", name="sku", field=models.CharField(max_length=20, null=True)),
    ]
PY
sed 's/0003_product_sku/0003_rebuild/' $FIX/shop/migrations/0004_remove_price.py > $W/0004_remove_price.py
mv $W/base/app/shop/migrations/0003_rebuild.py $W/0003_rebuild.py
export DEPLOYCTL_DATABASE=$W/base/shop.db
python3 $W/base/app/manage.py migrate -v0
sqlite3 $W/base/shop.db "PRAGMA journal_mode=wal; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<$N) INSERT INTO shop_product(name,price) SELECT 'product '||i, i FROM n;" >/dev/null
cp $W/0003_rebuild.py $W/base/app/shop/migrations/; S3=$(python3 $W/base/app/manage.py sqlmigrate shop 0003); rm $W/base/app/shop/migrations/0003_rebuild.py
run() { # name migration-file sql extra-flags
  local name=$1 file=$2 sql=$3 flags=$4
  for route in command sql; do
    for r in 1 2 3; do
      R=$W/root-$route; rm -rf $R; mkdir -p $R/instances/shop/database
      cp -r $W/base/app $R/instances/shop/app
      [ "$file" = 0004_remove_price.py ] && cp $W/0003_rebuild.py $R/instances/shop/app/shop/migrations/
      sqlite3 $W/base/shop.db "VACUUM INTO '$R/instances/shop/database/shop.db'"; sqlite3 $R/instances/shop/database/shop.db "PRAGMA journal_mode=wal" >/dev/null
      if [ "$file" = 0004_remove_price.py ]; then DEPLOYCTL_DATABASE=$R/instances/shop/database/shop.db python3 $R/instances/shop/app/manage.py migrate -v0; fi
      if [ $route = command ]; then
        cp $W/$file $R/instances/shop/app/shop/migrations/
        printf '[database]\npath = "database/shop.db"\nmax_write_lock_ms = 600000\nmigrate_command = "python3 app/manage.py migrate --noinput"\npending_command = "python3 app/manage.py showmigrations --plan"\n[backups]\npath = "backups"\n' > $R/instances/shop/instance.toml
      else
        mkdir -p $R/instances/migrations; printf '%s\n' "$sql" > $R/instances/migrations/0001_m.sql
        [ -n "$flags" ] && sed -i '1i -- allow-destructive' $R/instances/migrations/0001_m.sql
        printf '[database]\npath = "database/shop.db"\nmax_write_lock_ms = 600000\n[backups]\npath = "backups"\n' > $R/instances/shop/instance.toml
      fi
      s=$(date +%s.%N); $D deploy shop --root $R --quiet $flags >/dev/null; e=$(date +%s.%N)
      echo "$name $route run$r $(echo "$e - $s" | bc) s class=$(python3 -c "import json,glob; print(json.load(open(sorted(glob.glob('$R/instances/shop/deploys/*.json'))[-1]))['class'])")"
    done
  done
}
run rebuild 0003_rebuild.py "$S3" ""
cp $W/0003_rebuild.py $W/base/app/shop/migrations/; cp $W/0004_remove_price.py $W/base/app/shop/migrations/; S4=$(python3 $W/base/app/manage.py sqlmigrate shop 0004); rm $W/base/app/shop/migrations/0003_rebuild.py $W/base/app/shop/migrations/0004_remove_price.py
run dropcolumn 0004_remove_price.py "$S4" "--allow-destructive"
rm -rf $W
