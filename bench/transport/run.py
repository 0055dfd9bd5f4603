#!/usr/bin/env python3
"""Transport comparison for docs/transport.md: deployctl's own HTTP client against
async-http-client (bench/transport, ahc-s3) and `aws s3 cp`, on one SeaweedFS store on loopback
with signatures checked, moving the same ~1 GiB backup (a plain SQLite snapshot of random blobs,
incompressible like a gzip backup) up and down.

    swift build -c release
    swift build -c release --package-path bench/transport --scratch-path bench/transport/.build-ahc-release
    python3 bench/transport/run.py --mb 1024 --runs 5

Runs are interleaved (one of each per round) and each command runs under /usr/bin/time -v
(max RSS) while its RssAnon is sampled every 10 ms; medians are printed as a Markdown table.
"""
import argparse, os, shutil, socket, sqlite3, statistics, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def timed(cmd, env):
    """Runs cmd; returns (seconds, peak RssAnon KiB, max RSS KiB, CPU seconds). Exits on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0

    def sample():
        nonlocal peak
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                    pids = [int(x) for x in f.read().split()]
                for pid in pids:
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("RssAnon:"):
                                peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    out, err = proc.communicate()
    t.join()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out.decode()[-2000:]}\n{err.decode()[-2000:]}")
    maxrss, cpu = 0, 0.0
    for line in err.decode().splitlines():
        if "Maximum resident set size" in line:
            maxrss = int(line.split()[-1])
        if "User time (seconds)" in line or "System time (seconds)" in line:
            cpu += float(line.split()[-1])
    return elapsed, peak, maxrss, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--deployctl", default=os.path.join(REPO, ".build/release/deployctl"))
    ap.add_argument("--ahc", default=os.path.join(HERE, ".build-ahc-release/release/ahc-s3"))
    ap.add_argument("--work", default=None, help="scratch folder (default: a new one under /tmp)")
    args = ap.parse_args()
    for tool in (args.deployctl, args.ahc):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is not built (see the docstring)")
    for tool in ("weed", "aws", "sqlite3"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (.ci/run installs it)")

    work = args.work or tempfile.mkdtemp(prefix="deployctl-transport-")
    os.makedirs(work, exist_ok=True)
    store = os.path.join(work, "store")
    for d in ("data", "log"):
        os.makedirs(os.path.join(store, d), exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(os.path.join(store, "identities.json"), "w") as f:
        f.write('{"identities":[{"name":"bench","credentials":[{"accessKey":"BENCHKEY","secretKey":"benchsecret"}],'
                '"actions":["Admin","Read","List","Tagging","Write"]}]}')
    server = subprocess.Popen(["weed", f"-logdir={store}/log", "mini", f"-dir={store}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                               f"-s3.port={port}", f"-s3.config={store}/identities.json", "-master.telemetry=false", "-webdav=false",
                               "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": "BENCHKEY", "AWS_SECRET_ACCESS_KEY": "benchsecret", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"})
    for name in ("AWS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AWS_PROFILE"):
        env.pop(name, None)
    endpoint = f"http://127.0.0.1:{port}"
    aws = lambda *a: ["aws", "--endpoint-url", endpoint, *a]
    try:
        for _ in range(120):
            if subprocess.run(aws("s3api", "list-buckets"), capture_output=True, env=env).returncode == 0:
                break
            time.sleep(0.5)
        subprocess.run(aws("s3api", "create-bucket", "--bucket", "bench"), capture_output=True, check=True, env=env)

        # The instance: a database of random blobs (incompressible), one plain snapshot of it.
        root = os.path.join(work, "root")
        data = os.path.join(work, "data")
        os.makedirs(os.path.join(root, "instances"), exist_ok=True)
        os.makedirs(data, exist_ok=True)
        db = os.path.join(data, "app.db")
        if not os.path.exists(db):
            con = sqlite3.connect(db)
            con.execute("PRAGMA journal_mode=wal")
            con.execute("CREATE TABLE blob (id INTEGER PRIMARY KEY, b BLOB)")
            rows = args.mb * 16  # 64 KiB each
            con.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {rows}) INSERT INTO blob (b) SELECT randomblob(65536) FROM n")
            con.commit()
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
        dctl = lambda *a: [args.deployctl, "--root", root, *a]
        if not os.path.exists(os.path.join(root, "instances", "prod", "instance.toml")):
            subprocess.run(dctl("init", "prod", "--database", db), check=True, capture_output=True, env=env)
            with open(os.path.join(root, "instances", "prod", "instance.toml"), "a") as f:
                f.write(f'\n[[offsite]]\nname = "bench"\nurl = "s3://bench/prod"\nendpoint = "{endpoint}"\npath_style = true\nhost_id = "bench"\n')
        backups = os.path.join(root, "instances", "prod", "backups")
        existing = [f for f in os.listdir(backups) if f.endswith(".db")] if os.path.isdir(backups) else []
        if not existing:
            subprocess.run(dctl("snapshot", "prod", "--compress", "none", "--quiet"), check=True, capture_output=True, env=env)
        name = sorted(f for f in os.listdir(backups) if f.endswith(".db"))[-1]
        path = os.path.join(backups, name)
        size = os.path.getsize(path)
        key = f"prod/bench/{name}"
        down = os.path.join(work, "down.db")

        def empty_store():
            subprocess.run(aws("s3", "rm", "--recursive", "--quiet", "s3://bench/"), capture_output=True, env=env)
            subprocess.run(["sync"])

        def gone(p):
            for q in (p, p + ".part"):
                if os.path.exists(q):
                    os.remove(q)
            subprocess.run(["sync"])

        up = {
            "deployctl `backups push` (16 MiB parts, 2 at once)": (dctl("backups", "push", "prod", name, "--quiet"), empty_store),
            "AHC multipart (16 MiB parts, 2 at once), whole-file hash pass first as push does": ([args.ahc, "put", endpoint, "bench", key, path, "--prepass"], empty_store),
            "AHC multipart (16 MiB parts, 2 at once), each part hashed before it is sent": ([args.ahc, "put", endpoint, "bench", key, path], empty_store),
            "AHC one streaming PUT": ([args.ahc, "put", endpoint, "bench", key, path, "--single"], empty_store),
            "`aws s3 cp` up (8 MiB parts, 10 at once)": (aws("s3", "cp", "--quiet", path, f"s3://bench/{key}"), empty_store),
        }
        downward = {
            "deployctl `verify --remote --download` (fetch + sha256 + integrity_check)":
                (dctl("backups", "verify", "prod", "--remote", "bench", name, "--download", "--quiet"), lambda: subprocess.run(["sync"])),
            "deployctl local `backups verify` (sha256 + integrity_check, no network)":
                (dctl("backups", "verify", "prod", name, "--quiet"), lambda: subprocess.run(["sync"])),
            "AHC GET (stream to temp file, sha256, fsync, rename)": ([args.ahc, "get", endpoint, "bench", key, down], lambda: gone(down)),
            "`aws s3 cp` down": (aws("s3", "cp", "--quiet", f"s3://bench/{key}", down), lambda: gone(down)),
        }
        results = {}
        for rnd in range(args.runs):
            for label, (cmd, before) in up.items():
                before()
                results.setdefault(label, []).append(timed(cmd, env))
                print(f"round {rnd + 1} {label}: {results[label][-1][0]:.2f} s", file=sys.stderr)
            # The object as deployctl pushed it (with its signed manifest) for the downloads.
            empty_store()
            subprocess.run(dctl("backups", "push", "prod", name, "--quiet"), check=True, capture_output=True, env=env)
            for label, (cmd, before) in downward.items():
                before()
                results.setdefault(label, []).append(timed(cmd, env))
                print(f"round {rnd + 1} {label}: {results[label][-1][0]:.2f} s", file=sys.stderr)
            gone(down)
        print(f"\n{size / 2**20:.0f} MiB object ({name}), SeaweedFS on 127.0.0.1, {args.runs} runs each, interleaved; medians.\n")
        print("| transfer | median s | runs s | MiB/s | CPU s (median) | RssAnon MiB (max) | max RSS MiB (max) |")
        print("|---|---|---|---|---|---|---|")
        for label, runs in results.items():
            times = [r[0] for r in runs]
            med = statistics.median(times)
            print(f"| {label} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times)} | {size / 2**20 / med:.0f} | "
                  f"{statistics.median(r[3] for r in runs):.2f} | "
                  f"{max(r[1] for r in runs) / 1024:.1f} | {max(r[2] for r in runs) / 1024:.1f} |")
    finally:
        server.terminate()
        server.wait()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
