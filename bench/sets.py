#!/usr/bin/env python3
"""Deploy of an instance of four databases (the rails example's shape) against the same tables
and migrations in one database: the extra cost should be the extra snapshots and rehearsals.

Scales the rails example's seeds (primary's orders, cache entries, queue jobs, cable messages)
by --scale, builds both layouts, and deploys each --runs times from the same starting files,
printing medians, the ratio and each layout's snapshot stage.

    swift build -c release && python3 bench/sets.py --scale 200 --runs 5
"""
import argparse, json, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
RAILS = os.path.join(HERE, "..", "instances", "rails")
ORDER = ["primary", "cache", "queue", "cable"]
FOLDERS = {"primary": "migrate", "cache": "cache_migrate", "queue": "queue_migrate", "cable": "cable_migrate"}

def scaled_seed(name, scale):
    """The example's seed with every row-generating CTE's limit multiplied by `scale`."""
    text = open(os.path.join(RAILS, "seed", name + ".sql")).read()
    out = []
    for line in text.splitlines():
        if "WHERE i <" in line:
            head, tail = line.split("WHERE i <", 1)
            number = tail.split(")", 1)[0].strip()
            line = head + "WHERE i < " + str(int(number) * scale) + ")" + tail.split(")", 1)[1]
        out.append(line)
    text = "\n".join(out)
    # The cache key hash must stay unique at any scale.
    return text.replace("i * 7919", "i")

def build(folder, scale):
    """Both layouts under `folder`: instances/set (four databases) and instances/one (one)."""
    inst = os.path.join(folder, "instances")
    os.makedirs(os.path.join(inst, "set", "storage"))
    os.makedirs(os.path.join(inst, "one", "database"))
    tables = []
    for name in ORDER:
        sql = scaled_seed(name, scale)
        db = sqlite3.connect(os.path.join(inst, "set", "storage", name + ".sqlite3"))
        db.executescript(sql); db.close()
        tables.append(sql)
        shutil.copytree(os.path.join(RAILS, "db", FOLDERS[name]), os.path.join(inst, "set", "db", name))
    db = sqlite3.connect(os.path.join(inst, "one", "database", "one.sqlite3"))
    for sql in tables: db.executescript(sql)
    db.close()
    with open(os.path.join(inst, "set", "instance.toml"), "w") as f:
        for name in ORDER:
            f.write(f'[[database]]\nname = "{name}"\npath = "storage/{name}.sqlite3"\nmigrations = "db/{name}"\nbusy_timeout_ms = 60000\n\n')
        f.write('[backups]\npath = "backups"\ncompress = "zstd"\n')
    with open(os.path.join(inst, "one", "instance.toml"), "w") as f:
        f.write('[database]\npath = "database/one.sqlite3"\nbusy_timeout_ms = 60000\n[backups]\npath = "backups"\ncompress = "zstd"\n')
    # The same migrations, numbered in one sequence, for the one database.
    os.makedirs(os.path.join(inst, "migrations"))
    number = 0
    for name in ORDER:
        for file in sorted(os.listdir(os.path.join(RAILS, "db", FOLDERS[name]))):
            number += 1
            shutil.copy(os.path.join(RAILS, "db", FOLDERS[name], file), os.path.join(inst, "migrations", "%04d_%s" % (number, file.split("_", 1)[1])))
    with open(os.path.join(inst, "deploy.toml"), "w") as f:
        f.write('migrations = "migrations"\n')

def deploy(binary, root, instance):
    start = time.perf_counter()
    proc = subprocess.run([binary, "deploy", instance, "--json", "--root", root], capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"deploy {instance} failed: {proc.stderr.decode()}")
    report = json.loads(proc.stdout)
    snapshot = sum(s["seconds"] for s in report["stages"] if s["name"] == "snapshot")
    return elapsed, snapshot

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=200, help="multiply the example's rows by this")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join(HERE, "..", ".build", "release", "deployctl"))
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    base = tempfile.mkdtemp(prefix="deployctl-sets-")
    try:
        pristine = os.path.join(base, "pristine")
        build(pristine, args.scale)
        sizes = {n: os.path.getsize(os.path.join(pristine, "instances", "set", "storage", n + ".sqlite3")) for n in ORDER}
        times = {"set": [], "one": []}
        snaps = {"set": [], "one": []}
        for run in range(args.runs):
            for instance in (["set", "one"] if run % 2 == 0 else ["one", "set"]):
                root = os.path.join(base, f"run-{run}-{instance}")
                shutil.copytree(pristine, root)
                seconds, snapshot = deploy(binary, root, instance)
                times[instance].append(seconds); snaps[instance].append(snapshot)
                shutil.rmtree(root)
        mib = sum(sizes.values()) / 2**20
        print(f"scale {args.scale}: {mib:.1f} MiB over four databases (" + ", ".join(f"{n} {sizes[n] / 2**20:.1f}" for n in ORDER) + f"), {args.runs} runs, interleaved")
        print("| layout | deploy s (median) | snapshot stage s | ratio |")
        print("|---|---|---|---|")
        one = statistics.median(times["one"])
        for instance, label in (("one", "one database, all migrations"), ("set", "four databases, one set")):
            print(f"| {label} | {statistics.median(times[instance]):.2f} | {statistics.median(snaps[instance]):.2f} | {statistics.median(times[instance]) / one:.2f}× |")
    finally:
        shutil.rmtree(base, ignore_errors=True)

if __name__ == "__main__":
    main()
