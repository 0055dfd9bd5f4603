#!/usr/bin/env python3
"""deployctl benchmark runner.

Generates a lending database of the given size (WAL and rollback-journal variants) and prints,
in one run, the median wall time and peak anonymous memory (RssAnon) of deployctl's commands
next to the anchors an operator would otherwise run, on the same file, with the ratio.

    swift build -c release && python3 bench/run.py --mb 1024 --runs 3
"""
import argparse, json, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, threading, time

def generate(path, mb, journal):
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.executescript("""
        CREATE TABLE user (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
        CREATE TABLE loan (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES user(id), principal_cents INTEGER, rate REAL, status TEXT);
        CREATE TABLE payment (id INTEGER PRIMARY KEY, loan_id INTEGER NOT NULL REFERENCES loan(id), amount_cents INTEGER, paid_at TEXT, memo TEXT);
        CREATE TABLE tracker (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES user(id), name TEXT);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 50000)
          INSERT INTO user SELECT i, 'User ' || i, 'u' || i || '@example.com' FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 80000)
          INSERT INTO loan SELECT i, 1 + i % 50000, i * 1000, 4.5, 'active' FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
          INSERT INTO tracker SELECT i, 1 + i % 50000, 'Goal ' || i FROM n;
    """)
    batch = max(2000, min(200000, mb * 800))
    while os.path.getsize(path) < mb * 1024 * 1024:
        db.execute(f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {batch})
            INSERT INTO payment (loan_id, amount_cents, paid_at, memo)
            SELECT 1 + abs(random()) % 80000, abs(random()) % 100000, date('2024-01-01', '+' || (i % 700) || ' days'),
                   'payment ' || i || ' ' || substr(hex(randomblob(24)), 1, 20 + i % 28) FROM n""")
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()

LAST_STDOUT = [b""]

def run(cmd, cwd=None, shell=False):
    """Runs a command; returns (seconds, peak RssAnon in KiB). Its stdout is kept in LAST_STDOUT."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    def sample():
        nonlocal peak
        while proc.poll() is None:
            try:
                for pid in [proc.pid] + children(proc.pid):
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("RssAnon:"):
                                peak = max(peak, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.01)
    t = threading.Thread(target=sample); t.start()
    out, err = proc.communicate(); t.join()
    LAST_STDOUT[0] = out
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {cmd}\n{err.decode()}")
    return elapsed, peak

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []

def median(cmd, runs, before=None, **kw):
    times, peaks = [], []
    for _ in range(runs):
        if before: before()
        t, p = run(cmd, **kw)
        times.append(t); peaks.append(p)
    return statistics.median(times), max(peaks)

def writer_latency(db_path, seconds, during=None):
    """A separate process commits a small row every 2 ms; returns p50/p99 ms and busy errors."""
    code = f"""
import sqlite3, time, json
db = sqlite3.connect({db_path!r}, timeout=5, isolation_level=None)
db.execute('CREATE TABLE IF NOT EXISTS bench_ticks (id INTEGER PRIMARY KEY, at REAL)')
lat, busy = [], 0
end = time.time() + {seconds}
while time.time() < end:
    t = time.perf_counter()
    try:
        db.execute('INSERT INTO bench_ticks (at) VALUES (?)', (time.time(),))
    except sqlite3.OperationalError:
        busy += 1
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.002)
lat.sort()
print(json.dumps([lat[len(lat)//2], lat[int(len(lat)*0.99)], busy, lat[-1]]))
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    if during:
        time.sleep(0.3); during()
    out, _ = proc.communicate()
    return json.loads(out)

CASHBACK_TABLES = ["cashback_redemption", "user_payment_method", "tracker_cashback_config", "tracker_entry",
                   "loan_cashback_config", "cashback_transaction", "deployctl_migrations"]

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=256, help="database size in MiB")
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--binary", default=".build/release/deployctl", help="the deployctl to measure")
    ap.add_argument("--journal", default="wal,delete", help="journal modes to measure")
    ap.add_argument("--only", choices=["offsite", "encryption", "snapshot"], help="measure only these rows (the offsite rows need weed and aws; snapshot: plain and zstd snapshots)")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    migration = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "instances", "migrations", "0001_cashback_tables.sql")
    pigz = shutil.which("pigz")
    print(f"deployctl benchmark — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.mb} MiB, median of {args.runs}"
          + ("" if pigz else " (pigz not installed: apt-get install pigz)"))
    for journal in args.journal.split(","):
        root = tempfile.mkdtemp(prefix="deployctl-bench-")
        try:
            inst = os.path.join(root, "instances", "prod")
            os.makedirs(os.path.join(inst, "database"))
            os.makedirs(os.path.join(root, "instances", "migrations"))
            shutil.copy(migration, os.path.join(root, "instances", "migrations"))
            with open(os.path.join(root, "instances", "deploy.toml"), "w") as f:
                f.write('order = ["prod"]\nmigrations = "migrations"\n')
            # The shipped prod config, as committed (gzip = true, keep_last = 14, 5 s busy timeout).
            shutil.copy(os.path.join(os.path.dirname(migration), "..", "prod", "instance.toml"), inst)
            db = os.path.join(inst, "database", "lending_app_prod.db")
            generate(db, args.mb, journal)
            backups = os.path.join(inst, "backups")
            out = os.path.join(root, "out.db")
            def clean():
                shutil.rmtree(backups, ignore_errors=True)
                shutil.rmtree(os.path.join(inst, "deploys"), ignore_errors=True)
                for p in (out, out + ".gz"):
                    if os.path.exists(p): os.remove(p)
                subprocess.run(["sync"])
            ours = lambda *a: [binary, *a, "--root", root, "--quiet"]
            rows, notes = [], []
            def compare(name, our_cmd, anchors, before=clean):
                t, m = median(our_cmd, args.runs, before)
                for anchor_name, cmd, shell in anchors:
                    at, am = median(cmd, args.runs, clean, shell=shell)
                    rows.append((name, t, m, anchor_name, at, am))
                return t
            if args.only in ("offsite", "encryption"):
                (offsite if args.only == "offsite" else encryption)(root, inst, backups, ours, clean, args.runs, rows, notes)
                print_rows(journal, db, rows, notes)
                continue
            snap = compare("snapshot", ours("snapshot", "prod", "--no-gzip"), [
                ("sqlite3 .backup", ["sqlite3", db, f".backup {out}"], False),
                ("VACUUM INTO", ["sqlite3", db, f"VACUUM INTO '{out}'"], False),
                ("cp + sync (the floor)", f"cp '{db}' '{out}' && sync '{out}'", True)])
            if args.only == "snapshot":
                zt = compare("snapshot --compress zstd", ours("snapshot", "prod", "--compress", "zstd"), [
                    (".backup + zstd -3", f"sqlite3 '{db}' '.backup {out}' && zstd -q -3 -f --rm '{out}'", True)])
                notes.append(f"snapshot --compress zstd is {zt / snap:.2f}× our plain snapshot")
                print_rows(journal, db, rows, notes)
                continue
            gz_anchors = [(".backup + gzip -6", f"sqlite3 '{db}' '.backup {out}' && gzip -6 -f '{out}'", True)]
            if pigz:
                gz_anchors.append((".backup + pigz -p2 -6", f"sqlite3 '{db}' '.backup {out}' && pigz -p2 -6 -f '{out}'", True))
            if shutil.which("libdeflate-gzip"):
                gz_anchors.append((".backup + libdeflate-gzip -6", f"sqlite3 '{db}' '.backup {out}' && libdeflate-gzip -6 -f '{out}'", True))
            compare("snapshot --gzip", ours("snapshot", "prod", "--gzip"), gz_anchors)
            encryption(root, inst, backups, ours, clean, args.runs, rows, notes)
            clean(); run(ours("snapshot", "prod", "--gzip"))
            ours_gz = os.path.getsize(os.path.join(backups, [f for f in os.listdir(backups) if f.endswith(".gz")][0]))
            run(f"gzip -6 -c '{db}' > '{out}.gz'", shell=True)
            notes.append(f"gzip size: ours {ours_gz / 2**20:.1f} MiB, gzip -6 {os.path.getsize(out + '.gz') / 2**20:.1f} MiB "
                         f"({ours_gz / os.path.getsize(out + '.gz'):.3f}×)")
            # A restore drill: checking the .gz backup (checksum, inflate, integrity_check) against
            # doing it by hand.
            gz_file = os.path.join(backups, [f for f in os.listdir(backups) if f.endswith(".gz")][0])
            def unverify():
                for f in os.listdir(backups):
                    if f.endswith(".json"):
                        path = os.path.join(backups, f)
                        with open(path) as fh: doc = json.load(fh)
                        doc.pop("verification", None); doc.pop("verified_at", None)
                        with open(path, "w") as fh: json.dump(doc, fh)
                if os.path.exists(out): os.remove(out)
                subprocess.run(["sync"])
            t, m = median(ours("backups", "verify", "prod"), args.runs, unverify)
            at, am = median(f"gunzip -c '{gz_file}' > '{out}' && sqlite3 -readonly '{out}' 'pragma integrity_check' >/dev/null", args.runs, unverify, shell=True)
            rows.append(("backups verify (gz)", t, m, "gunzip + pragma integrity_check", at, am))
            # Unverified first, so that the restore checks the backup as the anchor does.
            t, m = median(ours("restore", "prod", os.path.basename(gz_file), "--to", out), args.runs, unverify)
            rows.append(("restore --to NEW (gz)", t, m, "gunzip + pragma integrity_check", at, am))
            if shutil.which("zstd"):
                zt = compare("snapshot --compress zstd", ours("snapshot", "prod", "--compress", "zstd"), [
                    (".backup + zstd -3", f"sqlite3 '{db}' '.backup {out}' && zstd -q -3 -f --rm '{out}'", True)])
                notes.append(f"snapshot --compress zstd is {zt / snap:.2f}× our plain snapshot")
                clean(); run(ours("snapshot", "prod", "--compress", "zstd"))
                zst_file = os.path.join(backups, [f for f in os.listdir(backups) if f.endswith(".zst")][0])
                run(f"gzip -6 -c '{db}' > '{out}.gz'", shell=True)
                notes.append(f"zstd size: ours {os.path.getsize(zst_file) / 2**20:.1f} MiB ({os.path.getsize(zst_file) / os.path.getsize(out + '.gz'):.3f}× gzip -6's)")
                t, m = median(ours("restore", "prod", os.path.basename(zst_file), "--to", out), args.runs, unverify)
                at, am = median(f"zstd -q -d '{zst_file}' -o '{out}' && sqlite3 -readonly '{out}' 'pragma integrity_check' >/dev/null", args.runs, unverify, shell=True)
                rows.append(("restore --to NEW (zst)", t, m, "zstd -d + pragma integrity_check", at, am))
            # restore --latest --yes under the shipped config, from a plain and a .gz backup, after
            # a thousand rows changed and after one in eleven rows of payment was deleted. Each run
            # starts from the same state: the change is made again before it (a restore undoes
            # it). The anchor is what a careful operator types: save the live database, check the
            # backup, restore it (gunzip first for a .gz).
            conn = sqlite3.connect(db)
            top = conn.execute("SELECT max(id) FROM payment").fetchone()[0] or 0
            conn.close()
            every = max(2, top // 500)
            changes = {"1k rows changed": f"DELETE FROM payment WHERE id % {every} = 1; "
                                          f"UPDATE payment SET amount_cents = amount_cents + 1 WHERE id % {every} = 2",
                       "1 in 11 rows deleted": "DELETE FROM payment WHERE id % 11 = 0"}
            pre, plain = os.path.join(root, "pre.db"), os.path.join(root, "backup.db")
            for kind in ("plain", "gz"):
                clean(); run(ours("snapshot", "prod", "--gzip" if kind == "gz" else "--no-gzip"))
                snapshot_file = os.path.join(backups, [f for f in os.listdir(backups) if not f.endswith(".json") and not f.startswith(".")][0])
                first = None
                for change, sql in changes.items():
                    def prepare():
                        for f in os.listdir(backups):
                            if "_pre_restore_" in f: os.remove(os.path.join(backups, f))
                        for f in (pre, plain):
                            if os.path.exists(f): os.remove(f)
                        conn = sqlite3.connect(db); conn.executescript(sql); conn.close()
                        subprocess.run(["sync"])
                    t, m = median([binary, "restore", "prod", "--latest", "--yes", "--json", "--root", root], args.runs, prepare)
                    report = json.loads(LAST_STDOUT[0])
                    if report.get("already_held"):
                        # A small database whose payment table is empty: the change changed nothing,
                        # and a restore of what the database already holds does nothing.
                        notes.append(f"restore ({kind}, {change}): nothing to restore (the change left the database as the backup)")
                    else:
                        notes.append(f"restore ({kind}, {change}): writes blocked {report['write_lock_ms'] / 1000:.2f} s")
                    source = plain if kind == "gz" else snapshot_file
                    by_hand = ((f"gunzip -c '{snapshot_file}' > '{plain}' && " if kind == "gz" else "")
                               + f"sqlite3 '{db}' '.backup {pre}' && sqlite3 -readonly '{source}' 'pragma integrity_check' >/dev/null"
                               + f" && sqlite3 '{db}' '.restore {source}'")
                    at, am = median(by_hand, args.runs, prepare, shell=True)
                    rows.append((f"restore --latest --yes ({kind}, {change})", t, m,
                                 ("gunzip + " if kind == "gz" else "") + ".backup + integrity_check + .restore", at, am))
                    first = first or (change, t, m)
                floor = (f"gunzip -c '{snapshot_file}' > '{plain}' && cp '{plain}' '{pre}'" if kind == "gz"
                         else f"cp '{snapshot_file}' '{pre}'")
                at, am = median(floor, args.runs, shell=True)
                rows.append((f"restore --latest --yes ({kind}, {first[0]})", first[1], first[2],
                             ("gunzip + cp" if kind == "gz" else "cp") + " (the floor)", at, am))
                # Back to the snapshot's state (the last anchor run restored it) for what follows.
                for f in (pre, plain):
                    if os.path.exists(f): os.remove(f)
            clean()
            verify, vm = median(ours("verify", "prod"), args.runs)
            for anchor_name, cmd in [("sqlite3 .sha3sum", ["sqlite3", db, ".sha3sum"]), ("pragma quick_check", ["sqlite3", db, "pragma quick_check"])]:
                at, am = median(cmd, args.runs)
                rows.append(("verify", verify, vm, anchor_name, at, am))
            sha3, _ = median(["sqlite3", db, ".sha3sum"], 1)
            # deploy of the cashback migration; each run starts from the database without it.
            blocked = []
            def undeploy():
                clean()
                conn = sqlite3.connect(db)
                for table in CASHBACK_TABLES: conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.commit(); conn.close()
            def deploy_once():
                # Plain pre_ snapshot, like the anchor's: the gzip cost is the snapshot --gzip row.
                t, m = run(ours("deploy", "prod", "--no-gzip"))
                reports = os.path.join(inst, "deploys")
                with open(os.path.join(reports, os.listdir(reports)[0])) as f:
                    blocked.append(json.load(f)["write_lock_ms"] / 1000)
                return t, m
            times, peaks = [], []
            for _ in range(args.runs):
                undeploy(); t, m = deploy_once(); times.append(t); peaks.append(m)
            rows.append(("deploy (cashback)", statistics.median(times), max(peaks), "our snapshot + verify", snap + verify, 0))
            rows.append(("  writes blocked in deploy", statistics.median(blocked), 0, "sqlite3 .sha3sum", sha3, 0))
            if shutil.which("weed") and shutil.which("aws"):
                offsite(root, inst, backups, ours, clean, args.runs, rows, notes)
            print_rows(journal, db, rows, notes)
            if journal == "wal":
                base = writer_latency(db, 2)
                clean()
                during = writer_latency(db, 3, during=lambda: run(ours("snapshot", "prod", "--no-gzip")))
                undeploy()
                during_deploy = writer_latency(db, 6, during=deploy_once)
                print(f"\nwriter every 2 ms: baseline p50 {base[0]:.2f} ms p99 {base[1]:.2f} ms busy {base[2]}; "
                      f"during snapshot p50 {during[0]:.2f} ms p99 {during[1]:.2f} ms busy {during[2]}; "
                      f"during deploy p50 {during_deploy[0]:.2f} ms p99 {during_deploy[1]:.2f} ms max {during_deploy[3]:.0f} ms busy {during_deploy[2]}")
        finally:
            shutil.rmtree(root, ignore_errors=True)

def print_rows(journal, db, rows, notes):
    print(f"\n## {journal} ({os.path.getsize(db) / 2**20:.0f} MiB)\n")
    print("| ours | s | RssAnon MiB | anchor | s | RssAnon MiB | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, t, m, an, at, am in rows:
        print(f"| `{name}` | {t:.2f} | {m/1024:.1f} | {an} | {at:.2f} | {am/1024:.1f} | {t/at:.2f}× |")
    for note in notes: print(f"\n{note}")

def encryption(root, inst, backups, ours, clean, runs, rows, notes):
    """Encryption rows: snapshot --gzip with [encryption] local = true (gzip members sealed in
    age's 64 KiB ChaCha20-Poly1305 chunks on the way to the disk) against our own plain
    snapshot --gzip, measured alternately in the same run; and the restore drill of each
    (backups verify: checksum, decrypt, inflate, integrity_check)."""
    config = os.path.join(inst, "instance.toml")
    with open(config) as f: shipped = f.read()
    key = os.path.join(root, "bench.agekey")
    if not os.path.exists(key): run(ours("keygen", "--output", key))
    public = subprocess.run(["grep", "-o", "age1[0-9a-z]*", key], capture_output=True, text=True).stdout.split()[0]
    encrypted = shipped + f'\n[encryption]\nrecipients = ["{public}"]\nidentity_file = "{key}"\nlocal = true\n'
    def use(text):
        with open(config, "w") as f: f.write(text)
    times = {False: [], True: []}
    peaks = {False: 0, True: 0}
    try:
        for _ in range(runs):
            for on in (False, True):
                use(encrypted if on else shipped)
                t, m = median(ours("snapshot", "prod", "--gzip"), 1, clean)
                times[on].append(t); peaks[on] = max(peaks[on], m)
        rows.append(("snapshot --gzip, encrypted (age)", statistics.median(times[True]), peaks[True],
                     "our snapshot --gzip", statistics.median(times[False]), peaks[False]))
        drills = {}
        for on in (False, True):
            use(encrypted if on else shipped)
            clean(); run(ours("snapshot", "prod", "--gzip"))
            def unverify():
                for f in os.listdir(backups):
                    if f.endswith(".json"):
                        with open(os.path.join(backups, f)) as g: m = json.load(g)
                        m.pop("verification", None); m.pop("verified_at", None)
                        with open(os.path.join(backups, f), "w") as g: json.dump(m, g)
            drills[on] = median(ours("backups", "verify", "prod"), runs, unverify)
        rows.append(("backups verify (gz, age)", *drills[True], "our backups verify (gz)", *drills[False]))
        name = [f for f in os.listdir(backups) if f.endswith(".gz.age")][0]
        with open(os.path.join(backups, name + ".json")) as f: plain = json.load(f)["encryption"]["plaintext_bytes"]
        sealed = os.path.getsize(os.path.join(backups, name))
        notes.append(f"encrypted size: {sealed / 2**20:.1f} MiB, {sealed / plain:.4f}× the .gz inside it (16 bytes per 64 KiB chunk, and the header)")
    finally:
        use(shipped)

def offsite(root, inst, backups, ours, clean, runs, rows, notes):
    """Offsite rows on a SeaweedFS store on loopback: backups push of the gz backup against
    aws s3 cp of the same file, and restore --remote against aws s3 cp down + a local restore."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    store = tempfile.mkdtemp(prefix="deployctl-bench-s3-")
    os.makedirs(os.path.join(store, "data")); os.makedirs(os.path.join(store, "log"))
    with open(os.path.join(store, "identities.json"), "w") as f:
        f.write('{"identities":[{"name":"bench","credentials":[{"accessKey":"BENCHKEY","secretKey":"benchsecret"}],'
                '"actions":["Admin","Read","List","Tagging","Write"]}]}')
    server = subprocess.Popen(["weed", f"-logdir={store}/log", "mini", f"-dir={store}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                               f"-s3.port={port}", f"-s3.config={store}/identities.json", "-master.telemetry=false", "-webdav=false",
                               "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = dict(os.environ)
    os.environ.update({"AWS_ACCESS_KEY_ID": "BENCHKEY", "AWS_SECRET_ACCESS_KEY": "benchsecret", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"})
    os.environ.pop("AWS_CA_BUNDLE", None)
    endpoint = f"http://127.0.0.1:{port}"
    aws = lambda *a: ["aws", "--endpoint-url", endpoint, *a]
    try:
        for _ in range(120):
            if subprocess.run(aws("s3api", "list-buckets"), capture_output=True).returncode == 0: break
            time.sleep(0.5)
        subprocess.run(aws("s3api", "create-bucket", "--bucket", "bench"), capture_output=True, check=True)
        with open(os.path.join(inst, "instance.toml"), "a") as f:
            f.write(f'\n[[offsite]]\nname = "bench"\nurl = "s3://bench/prod"\nendpoint = "{endpoint}"\npath_style = true\nhost_id = "bench"\n')
        clean(); run(ours("snapshot", "prod", "--gzip"))
        name = [f for f in os.listdir(backups) if f.endswith(".gz")][0]
        path = os.path.join(backups, name)
        def empty_store():
            subprocess.run(aws("s3", "rm", "--recursive", "--quiet", "s3://bench/"), capture_output=True)
        t, m = median(ours("backups", "push", "prod", name), runs, empty_store)
        at, am = median(aws("s3", "cp", "--quiet", path, f"s3://bench/anchor/{name}"), runs, empty_store)
        rows.append((f"backups push ({os.path.getsize(path) / 2**20:.0f} MiB gz)", t, m, "aws s3 cp up", at, am))
        run(ours("backups", "push", "prod", name))
        kept = os.path.join(root, "kept.db.gz")
        shutil.copy(path, kept); shutil.copy(path + ".json", kept + ".json")
        def local_gone():
            for f in os.listdir(backups):
                if f.startswith(name) or "_pre_restore_" in f: os.remove(os.path.join(backups, f))
            subprocess.run(["sync"])
        t, m = median(ours("restore", "prod", "--remote", "bench", "--latest", "--yes"), runs, local_gone)
        # The anchor downloads the same object, puts it (and its manifest) in place, and restores it locally.
        by_hand = (f"aws --endpoint-url {endpoint} s3 cp --quiet s3://bench/prod/bench/{name} '{path}' && cp '{kept}.json' '{path}.json' && "
                   + " ".join(ours("restore", "prod", name, "--yes")))
        at, am = median(by_hand, runs, local_gone, shell=True)
        rows.append(("restore --remote --latest --yes (gz)", t, m, "aws s3 cp down + local restore", at, am))
    finally:
        server.terminate(); server.wait()
        os.environ.clear(); os.environ.update(saved)
        shutil.rmtree(store, ignore_errors=True)

if __name__ == "__main__":
    main()
