#!/usr/bin/env python3
"""deployctl under a live application: a real web server writing the whole time (issue 22).

Starts a small WSGI application under gunicorn on 127.0.0.1 (2 workers x 4 threads, each thread
with its own SQLite connection, busy_timeout 5 s, WAL) over a database whose `item` table holds
--rows rows. A load generator sends a steady --rate of requests (half writes: an INSERT into
`item` or `audit` that answers with the new rowid; half reads of one item) while deployctl runs,
phase by phase:

  idle                no deployctl command (the baseline)
  snapshot            deployctl snapshot
  deploy additive     a migration that adds a table and an index
  deploy rebuild      a 12-step rebuild of `item` adding a `currency` column (offline)
  deploy online       (when --online-rebuild) the same rebuild with --online
  restore             deployctl restore --latest --yes (the application's writes since that
                      backup leave the live database by design: they are counted as saved in the
                      pre_restore copy, not as lost)

Per phase it prints requests, errors, p99 and max latency, the command's own report of writes
blocked, and acknowledged writes lost (each acknowledged rowid and value looked up afterwards
with the sqlite3 module; must be 0).

    swift build -c release && python3 bench/load.py --rows 1000000 --rate 40
"""
import argparse, http.client, json, os, shutil, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rebuild  # noqa: E402

APP = r'''
import json, os, sqlite3, threading, time
DB = os.environ["BENCH_DB"]
local = threading.local()

def connection():
    db = getattr(local, "db", None)
    if db is None:
        db = sqlite3.connect(DB, timeout=5, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        local.db = db
    return db

def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    db = connection()
    try:
        if path == "/item":
            note = environ.get("QUERY_STRING", "")
            cur = db.execute("INSERT INTO item (owner_id, name, price_cents, created_at) VALUES (1, ?, 100, datetime('now'))", (note,))
            body = json.dumps({"table": "item", "id": cur.lastrowid, "value": note})
        elif path == "/audit":
            note = environ.get("QUERY_STRING", "")
            cur = db.execute("INSERT INTO audit (note) VALUES (?)", (note,))
            body = json.dumps({"table": "audit", "id": cur.lastrowid, "value": note})
        else:
            row = db.execute("SELECT id, name FROM item WHERE id = ?", (int(environ.get("QUERY_STRING") or 1),)).fetchone()
            body = json.dumps({"row": list(row) if row else None})
        start_response("200 OK", [("Content-Type", "application/json")])
    except sqlite3.Error as error:
        # A stale connection after a restore replaced the file, or the lock: reconnect next time.
        local.db = None
        body = json.dumps({"error": str(error)})
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
    return [body.encode()]
'''

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

class Load:
    """Sends `rate` requests a second from a pool of threads and records each result."""
    def __init__(self, port, rate):
        self.port, self.rate = port, rate
        self.results = []  # (start, latency ms, ok, ack or None, error text)
        self.lock = threading.Lock()
        self.running = True
        self.counter = 0

    def one(self, n):
        kind = ["item", "read", "audit", "read"][n % 4]
        query = f"w{n}" if kind != "read" else str(1 + n % 1000)
        start = time.time()
        t = time.perf_counter()
        ack, error = None, None
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            c.request("GET", f"/{kind}?{query}")
            r = c.getresponse()
            body = json.loads(r.read())
            ok = r.status == 200
            if ok and kind != "read": ack = (body["table"], body["id"], body["value"])
            if not ok: error = body.get("error")
            c.close()
        except Exception as e:  # time-outs and refused connections are failed requests
            ok, error = False, repr(e)
        with self.lock:
            self.results.append((start, (time.perf_counter() - t) * 1000, ok, ack, error))

    def run(self):
        interval = 1.0 / self.rate
        next_at = time.perf_counter()
        while self.running:
            self.counter += 1
            threading.Thread(target=self.one, args=(self.counter,), daemon=True).start()
            next_at += interval
            time.sleep(max(0, next_at - time.perf_counter()))

def summarize(name, results, blocked, lost, note=""):
    lat = sorted(r[1] for r in results)
    errors = sum(1 for r in results if not r[2])
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0
    print(f"| {name} | {len(results)} | {errors} | {p99:,.0f} ms | {max(lat) if lat else 0:,.0f} ms | {blocked} | {lost} |{note}", flush=True)
    kinds = {}
    for r in results:
        if not r[2]: kinds[(r[4] or "")[:60]] = kinds.get((r[4] or "")[:60], 0) + 1
    for text, count in kinds.items(): print(f"|   errors: {count} x {text} |||||||", flush=True)

def lost_writes(db_path, acks):
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    lost = 0
    for table, rowid, value in acks:
        column = "name" if table == "item" else "note"
        row = db.execute(f"SELECT {column} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
        if row is None or row[0] != value: lost += 1
    db.close()
    return lost

ADDITIVE = """-- description: a table and an index
CREATE TABLE item_tag (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL, tag TEXT NOT NULL);
CREATE INDEX item_tag_item ON item_tag(item_id);
"""

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in `item`")
    ap.add_argument("--rate", type=int, default=40, help="requests per second")
    ap.add_argument("--binary", default=".build/release/deployctl", help="the deployctl to measure")
    ap.add_argument("--online-rebuild", action="store_true", help="also deploy the rebuild with --online")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of load before and after each command")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    with tempfile.TemporaryDirectory(prefix="deployctl-load-") as work:
        source = os.path.join(work, "source.db")
        rebuild.generate(source, args.rows)
        root = os.path.join(work, "root")
        db_path = rebuild.make_root(root, source)
        migrations = os.path.join(root, "instances", "migrations")
        os.unlink(os.path.join(migrations, "0001_item_currency.sql"))
        with open(os.path.join(work, "app.py"), "w") as f: f.write(APP)
        port = free_port()
        env = dict(os.environ, BENCH_DB=db_path, PYTHONPATH=work)
        server = subprocess.Popen(["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "8", "--log-level", "warning", "app:app"],
                                  cwd=work, env=env, start_new_session=True)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); break
            except OSError: time.sleep(0.1)
        load = Load(port, args.rate)
        driver = threading.Thread(target=load.run, daemon=True); driver.start()
        print(f"{args.rows:,} rows in item, {args.rate} requests/s (half writes), gunicorn 2 workers x 8 threads, busy_timeout 5 s")
        print("| phase | requests | errors | p99 | max | writes blocked (deployctl) | acknowledged writes lost |")
        print("|---|---|---|---|---|---|---|")
        def phase(name, command=None, migration=None, restore=False):
            if migration:
                with open(os.path.join(migrations, migration[0]), "w") as f: f.write(migration[1])
            time.sleep(args.idle)
            start = time.time()
            blocked = "-"
            if command:
                out = subprocess.run([binary] + command + ["--root", root, "--json"], capture_output=True)
                if out.returncode != 0:
                    print(f"| {name} | failed ({out.returncode}): {out.stderr.decode().strip()[:300]} |")
                else:
                    try:
                        doc = json.loads(out.stdout)
                        ms = doc.get("write_lock_ms")
                        blocked = f"{ms:,.0f} ms" if ms is not None else "-"
                    except json.JSONDecodeError:
                        pass
            else:
                time.sleep(3)
            end = time.time()
            time.sleep(0.5)
            with load.lock:
                during = [r for r in load.results if start <= r[0] <= end]
                acks = [r[3] for r in load.results if r[3] and r[0] <= end]
            if restore:
                summarize(name, during, blocked, "n/a", " (writes since the backup are in the pre_restore copy)")
            else:
                summarize(name, during, blocked, lost_writes(db_path, acks))
        phase("idle")
        phase("snapshot", ["snapshot", "bench"])
        phase("deploy additive", ["deploy", "bench", "--yes"], ("0001_item_tag.sql", ADDITIVE))
        phase("deploy rebuild (offline)", ["deploy", "bench", "--yes"], ("0002_item_currency.sql", rebuild.MIGRATION.replace("CREATE INDEX item_owner", "CREATE INDEX item_owner_2")))
        if args.online_rebuild:
            phase("deploy rebuild (online)", ["deploy", "bench", "--yes", "--online"],
                  ("0003_item_currency_again.sql", rebuild.MIGRATION.replace("currency TEXT NOT NULL DEFAULT 'EUR'", "currency TEXT NOT NULL DEFAULT 'EUR', region TEXT")
                   .replace("CREATE INDEX item_owner", "CREATE INDEX item_owner_3")
                   .replace("created_at)\n    SELECT id, owner_id, name, price_cents, created_at", "created_at, currency)\n    SELECT id, owner_id, name, price_cents, created_at, currency")))
        phase("restore", ["restore", "bench", "--latest", "--yes"], restore=True)
        load.running = False
        time.sleep(1)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()

if __name__ == "__main__":
    main()
