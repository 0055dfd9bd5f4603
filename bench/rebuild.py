#!/usr/bin/env python3
"""Production-size deploys: a 12-step rebuild of one large table (issue 22).

For each row count, builds a WAL database whose `item` table holds that many rows (plus two
small tables that stay untouched), and a migration that adds a `currency` column by the ordinary
12-step rebuild (CREATE new_item; INSERT … SELECT; DROP; RENAME). It then prints, per size, the
median of --runs fresh deploys:

  - stmts:    the statements' own time, run by the sqlite3 CLI on a copy (the anchor);
  - plan:     the plan's write-lock estimate (`write_lock_estimate_ms`, checks included);
  - blocked:  the writes-blocked time the deploy reports (`write_lock_ms`), and its ratio to stmts;
  - RssAnon:  deployctl's peak anonymous memory during the deploy;
  - online:   the same migration deployed with --online: writes blocked at its cut-over, its
              wall time, and its peak RssAnon.

    swift build -c release && python3 bench/rebuild.py --rows 100000,1000000,4000000 --runs 3
"""
import argparse, json, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import run, LAST_STDOUT  # noqa: E402

MIGRATION = """-- description: items get a currency (12-step rebuild)
CREATE TABLE new_item (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    currency TEXT NOT NULL DEFAULT 'EUR'
);
INSERT INTO new_item (id, owner_id, name, price_cents, created_at)
    SELECT id, owner_id, name, price_cents, created_at FROM item;
DROP TABLE item;
ALTER TABLE new_item RENAME TO item;
CREATE INDEX item_owner ON item(owner_id);
"""

def generate(path, rows):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=wal")
    db.executescript(f"""
        CREATE TABLE owner (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE item (id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL, name TEXT NOT NULL,
                           price_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
        CREATE INDEX item_owner ON item(owner_id);
        CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000)
          INSERT INTO owner SELECT i, 'owner ' || i FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000)
          INSERT INTO audit SELECT i, 'note ' || i FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {rows})
          INSERT INTO item SELECT i, 1 + i % 1000, 'item ' || i || ' ' || hex(randomblob(6)), abs(random()) % 100000,
                                  datetime(1700000000 + i, 'unixepoch') FROM n;
    """)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()

def make_root(folder, db_source, offline=False):
    inst = os.path.join(folder, "instances", "bench")
    os.makedirs(os.path.join(inst, "database"))
    os.makedirs(os.path.join(folder, "instances", "migrations"))
    with open(os.path.join(folder, "instances", "deploy.toml"), "w") as f:
        f.write('order = ["bench"]\nmigrations = "migrations"\n')
    with open(os.path.join(folder, "instances", "migrations", "0001_item_currency.sql"), "w") as f:
        f.write(MIGRATION)
    with open(os.path.join(inst, "instance.toml"), "w") as f:
        # The offline rows measure the one-transaction deploy whatever its estimate: a budget of
        # 10 minutes keeps the deploy from going online by itself.
        f.write('[database]\npath = "database/app.db"\nbusy_timeout_ms = 5000\n'
                + ('max_write_lock_ms = 600000\n' if offline else '') + '\n[backups]\npath = "backups"\ngzip = false\nkeep_last = 2\n')
    shutil.copyfile(db_source, os.path.join(inst, "database", "app.db"))
    return os.path.join(inst, "database", "app.db")

def statements_time(db_source, scratch):
    """The anchor: the migration's statements alone, in one transaction, by the sqlite3 CLI."""
    shutil.copyfile(db_source, scratch)
    script = ".timer off\nBEGIN;\n" + MIGRATION + "COMMIT;\n"
    start = time.perf_counter()
    subprocess.run(["sqlite3", scratch], input=script.encode(), check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(scratch + suffix): os.unlink(scratch + suffix)
    return elapsed * 1000

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="100000,1000000,4000000", help="comma-separated row counts of `item`")
    ap.add_argument("--runs", type=int, default=3, help="deploys per size (median)")
    ap.add_argument("--binary", default=".build/release/deployctl", help="the deployctl to measure")
    ap.add_argument("--no-online", action="store_true", help="measure the offline deploy only")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    print(f"| rows | stmts (sqlite3) | plan's estimate | writes blocked | blocked / stmts | estimate / blocked | RssAnon | online: cut-over | online: wall time | online: RssAnon |")
    print(f"|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="deployctl-rebuild-") as work:
        for rows in [int(r) for r in args.rows.split(",")]:
            source = os.path.join(work, f"source-{rows}.db")
            generate(source, rows)
            anchors, estimates, blocked, peaks, cuts, walls, online_peaks = [], [], [], [], [], [], []
            for i in range(args.runs):
                anchors.append(statements_time(source, os.path.join(work, "anchor.db")))
                root = os.path.join(work, f"root-{rows}-{i}")
                make_root(root, source, offline=True)
                run([binary, "plan", "bench", "--root", root, "--json"])
                plan = json.loads(LAST_STDOUT[0])
                estimates.append(plan.get("write_lock_estimate_ms", plan.get("statement_ms", 0)))
                _, peak = run([binary, "deploy", "bench", "--root", root, "--json", "--yes"])
                report = json.loads(LAST_STDOUT[0])
                blocked.append(report["write_lock_ms"]); peaks.append(peak)
                shutil.rmtree(root)
                if args.no_online:
                    continue
                make_root(root, source)
                wall, peak = run([binary, "deploy", "bench", "--root", root, "--json", "--yes", "--online"])
                cuts.append(json.loads(LAST_STDOUT[0])["write_lock_ms"]); walls.append(wall); online_peaks.append(peak)
                shutil.rmtree(root)
            s, e, b = statistics.median(anchors), statistics.median(estimates), statistics.median(blocked)
            print(f"| {rows:,} | {s:,.0f} ms | {e:,.0f} ms | {b:,.0f} ms | {b / s:.2f}x | {e / b:.2f}x | {max(peaks) / 1024:.0f} MiB "
                  + (f"| {statistics.median(cuts):,.1f} ms | {statistics.median(walls):,.1f} s | {max(online_peaks) / 1024:.0f} MiB |" if cuts else "| - | - | - |"), flush=True)
            os.unlink(source)

if __name__ == "__main__":
    main()
