"""The cluster path against one process, on the studies of sql/studies/.

For a synthetic store (written once with `tsunagu generate`, as
compare.py does), runs every study and its plain-SQL twin with
`tsunagu sql --repeat --timing`: alone, then with `--cluster` over 1, 2
and 4 `tsunagu worker` processes on 127.0.0.1. Checks that every answer
equals the single process's, and prints the median time of each (after
one warm-up run), its ratio to the single process, and the bytes the
plan's network boundaries moved (from EXPLAIN ANALYZE of the study).
Build the binary first:

    cargo build --release -p tsunagu-cli
    python3 benches/cluster.py --persons 100000

usage: cluster.py [--persons N] [--runs R] [--work DIR] [--tsunagu BIN]
                  [--workers 1,2,4] [--markdown] [--rwd-only]
                  [--only NAME[,NAME...]] [--role analyst]

With `--role analyst` the studies run as an analyst would run them,
through the privacy layer (no bytes moved: EXPLAIN ANALYZE is refused to
analysts).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STUDIES = REPO / "sql" / "studies"
SECRET = "benchmark-cluster-secret-0123456789"
# Extra coordinator arguments (--cluster-task-bytes), set from the command line.
COORDINATOR_ARGS = []
# Arguments of every statement (--role), set from the command line.
STATEMENT_ARGS = []
UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def start_workers(binary, store, state, n):
    """n workers over the store; their processes and addresses."""
    procs, addrs = [], []
    env = dict(os.environ, TSUNAGU_CLUSTER_SECRET=SECRET)
    for _ in range(n):
        p = subprocess.Popen([str(binary), "worker", "--store", str(store), "--state", str(state),
                              "--listen", "127.0.0.1:0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = p.stdout.readline()
        m = re.search(r" on (\S+)$", line.strip())
        if not m:
            raise RuntimeError(f"worker did not start: {line!r}")
        procs.append(p)
        addrs.append(m.group(1))
    return procs, addrs


def run(binary, store, state, sql_file, runs, cluster, timeout=900):
    args = [str(binary), "sql", "--store", str(store), "--state", str(state), "--csv",
            "--repeat", str(runs + 1), "--timing", "-f", str(sql_file)] + STATEMENT_ARGS
    if cluster:
        args += ["--cluster", ",".join(cluster)] + COORDINATOR_ARGS
    env = dict(os.environ, TSUNAGU_CLUSTER_SECRET=SECRET)
    try:
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout} s"
    if out.returncode != 0:
        if not cluster:
            raise RuntimeError(f"tsunagu sql failed on {sql_file.name}: {out.stderr}")
        return None, out.stderr.strip()
    times = [float(m) / 1e3 for m in re.findall(r"run \d+: ([0-9.]+) ms", out.stderr)][1:]
    return statistics.median(times) * 1e3, out.stdout


def bytes_moved(binary, store, state, sql_file, cluster):
    """Bytes through the network boundaries of the study's last statement,
    and bytes its scans read from the store's files."""
    text = sql_file.read_text().strip().rstrip(";")
    *before, last = [s for s in text.split(";\n") if s.strip()]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(";\n".join(before + ["EXPLAIN ANALYZE " + last.strip()]) + ";\n")
    env = dict(os.environ, TSUNAGU_CLUSTER_SECRET=SECRET)
    out = subprocess.run([str(binary), "sql", "--store", str(store), "--state", str(state),
                          "--csv", "--cluster", ",".join(cluster), *COORDINATOR_ARGS, "-f", f.name],
                         capture_output=True, text=True, env=env, timeout=900)
    os.unlink(f.name)
    def total(metric):
        # EXPLAIN ANALYZE writes "5.3 KB" for bytes moved, "8.12 M" for bytes scanned.
        found = re.findall(metric + r"=([0-9.]+)\s*([KMGT]?)B?\b", out.stdout)
        return sum(float(value) * UNITS[unit] for value, unit in found)
    return total("bytes_transferred"), total("bytes_scanned")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--persons", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tsunagu-bench")
    p.add_argument("--tsunagu", type=Path, default=REPO / "target" / "release" / "tsunagu")
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--task-bytes", default=None,
                   help="--cluster-task-bytes for the coordinator (default: Tsunagu's)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--rwd-only", action="store_true",
                   help="the studies only, not their plain-SQL twins (for large stores)")
    p.add_argument("--only", default=None, help="run only the studies whose file name contains this")
    p.add_argument("--timeout", type=int, default=900, help="seconds a query may take on the cluster")
    p.add_argument("--role", default=None, help="run the statements as this role (analyst)")
    a = p.parse_args()
    if a.role:
        STATEMENT_ARGS.extend(["--role", a.role])
    counts = [int(n) for n in a.workers.split(",")]
    if a.task_bytes:
        COORDINATOR_ARGS.extend(["--cluster-task-bytes", a.task_bytes])
    store = a.work / f"store-{a.persons}"
    state = a.work / f"state-{a.persons}"
    if not (store / "rwd.toml").exists():
        subprocess.run([str(a.tsunagu), "generate", "--persons", str(a.persons), "--seed", "42",
                        "--out", str(store)], check=True)
    # Derive the state once, before any worker opens the store.
    subprocess.run([str(a.tsunagu), "sql", "--store", str(store), "--state", str(state), "SELECT 1"],
                   check=True, capture_output=True)
    files = sorted(f for f in STUDIES.glob("*.sql")
                   if not (a.rwd_only and f.name.endswith(".plain.sql"))
                   and (a.only is None or any(o in f.name for o in a.only.split(","))))
    results = {f.name: {"alone": run(a.tsunagu, store, state, f, a.runs, None)} for f in files}
    moved = {}
    for n in counts:
        procs, addrs = start_workers(a.tsunagu, store, state, n)
        try:
            time.sleep(0.5)
            for f in files:
                results[f.name][n] = run(a.tsunagu, store, state, f, a.runs, addrs, a.timeout)
                if (n == max(counts) and not f.name.endswith(".plain.sql") and not a.role
                        and results[f.name][n][0] is not None):
                    moved[f.name] = bytes_moved(a.tsunagu, store, state, f, addrs)
        finally:
            for w in procs:
                w.kill()
                w.wait()
    # A failed run is reported as such; answers that came back must agree.
    agree = all(r[n][1] == r["alone"][1] for r in results.values() for n in counts
                if r[n][0] is not None)
    head = ["query", "alone ms"] + [f"{n} worker{'s' if n > 1 else ''}" for n in counts] + [
        f"kB moved ({max(counts)} workers)", "MB scanned"]
    rows = []
    for name, r in results.items():
        alone = r["alone"][0]
        cells = [name, f"{alone:.0f}"]
        for n in counts:
            ms, out = r[n]
            if ms is None:
                cells.append("failed")
                continue
            mark = "" if out == r["alone"][1] else " (differs)"
            cells.append(f"{ms:.0f} ({ms / alone:.2f}x){mark}")
        cells.append(f"{moved[name][0] / 1e3:.1f}" if name in moved else "")
        cells.append(f"{moved[name][1] / 1e6:.1f}" if name in moved else "")
        rows.append(cells)
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        for r in [head] + rows:
            print("  ".join(r))
    print(f"{a.persons} persons; answers {'all agree' if agree else 'DIFFER'}", file=sys.stderr)
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
