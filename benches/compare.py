"""Tsunagu against DuckDB on the use-case studies of sql/studies/.

For a synthetic store of the given size (written once with `tsunagu
generate`), runs every study

  - on Tsunagu embedded (`tsunagu sql --repeat`), the RWD-function version;
  - on Tsunagu through the wire (`tsunagu serve` + psycopg), the same SQL;
  - on DuckDB (from PyPI, in-process) over the same Parquet files, the
    plain-SQL twin, with the same person linkage as a table built once;

checks that the answers agree, and prints per study the median time of each
(after one warm-up run), the ratio, and peak memory (RSS high-water mark of
the process doing the work). Build the binary first:

    cargo build --release -p tsunagu-cli
    python3 benches/compare.py --persons 100000

usage: compare.py [--persons N] [--runs R] [--work DIR] [--tsunagu BIN]
                  [--memory-limit 4G] [--markdown]
"""

import argparse
import json
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
OPERATIONS = REPO / "benches" / "sql"
PLAIN = REPO / "benches" / "sql" / "plain"

# Saved cohorts the cohort-algebra operation reads: (name, query).
BENCH_COHORTS = [
    ("bench_observed", "SELECT person_id FROM ndb.observation_period"),
    ("bench_dispensed", "SELECT person_id FROM ndb.drug_exposure"),
]

DUCKDB_CHILD = r"""
import json, resource, statistics, sys, time
import duckdb
store, sql, runs, threads = sys.argv[1], open(sys.argv[2]).read(), int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
sources = {"ndb", "dpc", "kaigo"}
import glob, os
parts = []
for s in sorted(sources):
    files = sorted(glob.glob(f"{store}/{s}/*.parquet") + glob.glob(f"{store}/{s}/*/*.parquet"))
    parts.append(f"SELECT DISTINCT '{s}' AS source, person_key FROM read_parquet({files!r}, union_by_name = true) WHERE person_key IS NOT NULL")
t0 = time.perf_counter()
con.execute(f"CREATE TABLE person_keys AS {' UNION ALL '.join(parts)}")
con.execute(f'''CREATE TABLE person_map AS
  SELECT k.source, k.person_key,
         dense_rank() OVER (ORDER BY l.link_key IS NULL, coalesce(l.link_key, k.source || chr(31) || k.person_key)) AS person_id
    FROM person_keys k LEFT JOIN read_parquet('{store}/linkage/*.parquet') l
      ON l.source = k.source AND l.person_key = k.person_key''')
setup = time.perf_counter() - t0
for s in sorted(sources):
    con.execute(f"CREATE SCHEMA {s}")
    # A table is a file, or a folder of files (one per delivery).
    tables = [(os.path.basename(f)[:-len(".parquet")], f) for f in glob.glob(f"{store}/{s}/*.parquet")]
    tables += [(os.path.basename(d.rstrip("/")), d.rstrip("/") + "/*.parquet") for d in glob.glob(f"{store}/{s}/*/")]
    for t, f in sorted(tables):
        con.execute(f'''CREATE VIEW {s}.{t} AS
          SELECT m.person_id, d.* FROM read_parquet('{f}') d
          JOIN person_map m ON m.source = '{s}' AND m.person_key = d.person_key''')
con.execute("CREATE SCHEMA vocab")
for f in sorted(glob.glob(f"{store}/vocab/*.parquet")):
    t = os.path.basename(f)[:-len(".parquet")]
    con.execute(f"CREATE VIEW vocab.{t} AS SELECT * FROM read_parquet('{f}')")
if len(sys.argv) > 5:
    for statement in open(sys.argv[5]).read().split(";"):
        if statement.strip():
            con.execute(statement)
times = []
rows = None
for i in range(runs + 1):
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    if i > 0:
        times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"times": times, "rows": [[str(v) for v in r] for r in rows], "peak": peak, "setup": setup}))
"""


def median_ms(times):
    return statistics.median(times) * 1e3


def normalize(rows):
    """Rows as comparable tuples: numbers rounded to 6 significant digits."""
    out = []
    for r in rows:
        vals = []
        for v in r:
            s = "" if v is None or v in ("None", "NULL") else str(v)
            try:
                f = float(s)
                vals.append(f"{f:.6g}")
            except ValueError:
                vals.append(s)
        out.append(tuple(vals))
    return sorted(out)


def peak_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run_embedded(binary, store, state, study, runs, memory_limit):
    args = [str(binary), "sql", "--store", str(store), "--state", str(state), "--csv",
            "--repeat", str(runs + 1), "--timing", "-f", str(study)]
    if memory_limit:
        args += ["--memory-limit", memory_limit]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise RuntimeError(f"tsunagu sql failed on {study.name}: {err}")
    times = [float(m) / 1e3 for m in re.findall(r"run \d+: ([0-9.]+) ms", err)][1:]
    lines = out.strip().splitlines()
    rows = [l.split(",") for l in lines[1:]]
    return times, rows, usage.ru_maxrss * 1024


# The steward login the wire runs use (a served store needs configured users).
BENCH_USER, BENCH_PASSWORD = "bench", "bench-password"


def start_server(binary, store, state, memory_limit):
    config = Path(state).parent / "bench-server.toml"
    subprocess.run(
        [str(binary), "user", "add", BENCH_USER, "--role", "steward", "--config", str(config)],
        input=BENCH_PASSWORD + "\n", text=True, check=True, stderr=subprocess.DEVNULL,
    )
    args = [str(binary), "serve", "--store", str(store), "--state", str(state), "--config", str(config),
            "--listen", "127.0.0.1:0"]
    if memory_limit:
        args += ["--memory-limit", memory_limit]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in proc.stdout:
        m = re.search(r"listening on [0-9.]+:(\d+)", line)
        if m:
            port = int(m.group(1))
        if line.strip().startswith("psql "):
            break
    if port is None:
        raise RuntimeError("tsunagu serve did not start")
    return proc, port


def run_wire(proc, port, study, runs):
    import psycopg

    sql = study.read_text()
    conninfo = f"host=127.0.0.1 port={port} dbname=tsunagu user={BENCH_USER} password={BENCH_PASSWORD} sslmode=disable"
    reset_peak(proc.pid)
    times = []
    rows = None
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for i in range(runs + 1):
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall()
            if i > 0:
                times.append(time.perf_counter() - t0)
    return times, [[str(v) for v in r] for r in rows], peak_of(proc.pid)


def run_duckdb(store, plain, runs, threads, setup=None):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(DUCKDB_CHILD)
        child = f.name
    try:
        args = [sys.executable, child, str(store), str(plain), str(runs), str(threads)]
        if setup:
            args.append(str(setup))
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"duckdb failed on {plain.name}: {out.stderr[-2000:]}")
        result = json.loads(out.stdout)
        return result["times"], result["rows"], result["peak"]
    finally:
        os.unlink(child)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--persons", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tsunagu-bench")
    p.add_argument("--tsunagu", type=Path, default=REPO / "target" / "release" / "tsunagu")
    p.add_argument("--memory-limit", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--only", default=None, help="run the studies whose name contains this")
    p.add_argument("--operations-only", action="store_true",
                   help="skip the studies: RWD functions against plain SQL only")
    p.add_argument("--plain-only", action="store_true",
                   help="only the plain-SQL queries of benches/sql/plain, on both engines")
    a = p.parse_args()

    if not a.tsunagu.exists():
        sys.exit(f"{a.tsunagu} not found: cargo build --release -p tsunagu-cli")
    store = a.work / f"store-{a.persons}"
    state = a.work / f"state-{a.persons}"
    if not (store / "rwd.toml").exists():
        t0 = time.perf_counter()
        subprocess.run([str(a.tsunagu), "generate", "--persons", str(a.persons), "--seed", "42",
                        "--out", str(store)], check=True)
        print(f"generated {a.persons} persons in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    # First open builds the derived state from scratch; time it once.
    import shutil
    shutil.rmtree(state, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([str(a.tsunagu), "sql", "--store", str(store), "--state", str(state), "SELECT 1"],
                   check=True, capture_output=True)
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([str(a.tsunagu), "sql", "--store", str(store), "--state", str(state), "SELECT 1"],
                   check=True, capture_output=True)
    reopened = time.perf_counter() - t0

    studies = sorted(s for s in STUDIES.glob("*.sql") if not s.name.endswith(".plain.sql"))
    if a.only:
        studies = [s for s in studies if a.only in s.name]
    if a.operations_only or a.plain_only:
        studies = []
    server, port = start_server(a.tsunagu, store, state, a.memory_limit)
    results = []
    try:
        for study in studies:
            plain = study.with_suffix(".plain.sql")
            e_times, e_rows, e_peak = run_embedded(a.tsunagu, store, state, study, a.runs, a.memory_limit)
            p_times, p_rows, _ = run_embedded(a.tsunagu, store, state, plain, a.runs, a.memory_limit)
            w_times, w_rows, w_peak = run_wire(server, port, study, a.runs)
            d_times, d_rows, d_peak = run_duckdb(store, plain, a.runs, a.threads)
            agree = normalize(e_rows) == normalize(d_rows) == normalize(w_rows) == normalize(p_rows)
            results.append({
                "study": study.stem,
                "tsunagu_ms": median_ms(e_times),
                "tsunagu_plain_ms": median_ms(p_times),
                "wire_ms": median_ms(w_times),
                "duckdb_ms": median_ms(d_times),
                "tsunagu_peak_mb": e_peak / 2**20,
                "wire_peak_mb": w_peak / 2**20,
                "duckdb_peak_mb": d_peak / 2**20,
                "agree": agree,
            })
            r = results[-1]
            print(f"{r['study']}: tsunagu {r['tsunagu_ms']:.0f} ms (wire {r['wire_ms']:.0f}), "
                  f"plain {r['tsunagu_plain_ms']:.0f} ms, "
                  f"duckdb {r['duckdb_ms']:.0f} ms, ratio {r['tsunagu_ms'] / r['duckdb_ms']:.2f}, "
                  f"agree {agree}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()

    operations = (run_operations(a, store, state)
                  if (not a.only or a.operations_only) and not a.plain_only else [])
    plain_queries = run_plain(a, store, state) if not a.only and not a.operations_only else []

    if a.markdown:
        print(f"Store: {a.persons} persons; first open {opened:.1f} s, reopen {reopened:.2f} s; "
              f"median of {a.runs} runs after one warm-up; {a.threads} threads.\n")
        print("| study | Tsunagu embedded (ms) | Tsunagu wire (ms) | Tsunagu plain twin (ms) | DuckDB plain twin (ms) | Tsunagu / DuckDB | plain twin: Tsunagu / DuckDB | peak MB Tsunagu | peak MB DuckDB | answers agree |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in results:
            print(f"| {r['study']} | {r['tsunagu_ms']:.0f} | {r['wire_ms']:.0f} | {r['tsunagu_plain_ms']:.0f} | "
                  f"{r['duckdb_ms']:.0f} | {r['tsunagu_ms'] / r['duckdb_ms']:.2f} | "
                  f"{r['tsunagu_plain_ms'] / r['duckdb_ms']:.2f} | {r['tsunagu_peak_mb']:.0f} | "
                  f"{r['duckdb_peak_mb']:.0f} | {'yes' if r['agree'] else 'NO'} |")
        if operations:
            print("\nRWD functions against the plain-SQL formulation, on both engines:\n")
            print("| operation | Tsunagu RWD (ms) | Tsunagu plain SQL (ms) | DuckDB plain SQL (ms) | best plain / Tsunagu RWD | answers agree |")
            print("|---|---:|---:|---:|---:|---|")
            for r in operations:
                best = min(r["tsunagu_plain_ms"], r["duckdb_ms"])
                print(f"| {r['operation']} | {r['tsunagu_ms']:.1f} | {r['tsunagu_plain_ms']:.1f} | "
                      f"{r['duckdb_ms']:.1f} | {best / r['tsunagu_ms']:.1f}x | {'yes' if r['agree'] else 'NO'} |")
        if plain_queries:
            print("\nPlain SQL as written for other engines (benches/sql/plain), the same text on both:\n")
            print("| query | Tsunagu (ms) | DuckDB (ms) | Tsunagu / DuckDB | answers agree |")
            print("|---|---:|---:|---:|---|")
            for r in plain_queries:
                print(f"| {r['query']} | {r['tsunagu_ms']:.0f} | {r['duckdb_ms']:.0f} | "
                      f"{r['tsunagu_ms'] / r['duckdb_ms']:.2f} | {'yes' if r['agree'] else 'NO'} |")
    else:
        print(json.dumps({"persons": a.persons, "open_s": opened, "reopen_s": reopened, "results": results,
                          "operations": operations, "plain": plain_queries}, indent=2))
    if not all(r["agree"] for r in results + operations + plain_queries):
        sys.exit(1)


def run_operations(a, store, state):
    """RWD functions (episodes, bitmaps, is_a) against their plain-SQL
    formulation run on Tsunagu (DataFusion) and on DuckDB."""
    for name, query in BENCH_COHORTS:
        for statement in (f"DROP COHORT IF EXISTS {name}", f"CREATE COHORT {name} AS {query}"):
            subprocess.run([str(a.tsunagu), "sql", "--store", str(store), "--state", str(state), statement],
                           check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        duck_setup = tmp / "setup.sql"
        duck_setup.write_text(";\n".join(f"CREATE TABLE {n} AS SELECT DISTINCT person_id FROM ({q})"
                                          for n, q in BENCH_COHORTS))
        results = []
        for op in sorted(o for o in OPERATIONS.glob("*.sql") if not o.name.endswith(".plain.sql")):
            plain = op.with_suffix(".plain.sql")
            # On Tsunagu the cohorts are read with cohort('name').
            text = plain.read_text()
            for name, _ in BENCH_COHORTS:
                text = re.sub(rf"FROM {name}\b", f"FROM cohort('{name}')", text)
            plain_here = tmp / plain.name
            plain_here.write_text(text)
            e_times, e_rows, _ = run_embedded(a.tsunagu, store, state, op, a.runs, a.memory_limit)
            p_times, p_rows, _ = run_embedded(a.tsunagu, store, state, plain_here, a.runs, a.memory_limit)
            d_times, d_rows, _ = run_duckdb(store, plain, a.runs, a.threads, duck_setup)
            agree = normalize(e_rows) == normalize(p_rows) == normalize(d_rows)
            results.append({
                "operation": op.stem,
                "tsunagu_ms": median_ms(e_times),
                "tsunagu_plain_ms": median_ms(p_times),
                "duckdb_ms": median_ms(d_times),
                "agree": agree,
            })
            r = results[-1]
            print(f"{r['operation']}: tsunagu {r['tsunagu_ms']:.1f} ms, plain on tsunagu "
                  f"{r['tsunagu_plain_ms']:.1f} ms, duckdb {r['duckdb_ms']:.1f} ms, agree {agree}",
                  file=sys.stderr)
    return results


def run_plain(a, store, state):
    """Plain SQL written for other engines, unchanged on both."""
    results = []
    for q in sorted(PLAIN.glob("*.sql")):
        t_times, t_rows, _ = run_embedded(a.tsunagu, store, state, q, a.runs, a.memory_limit)
        d_times, d_rows, _ = run_duckdb(store, q, a.runs, a.threads)
        agree = normalize(t_rows) == normalize(d_rows)
        results.append({"query": q.stem, "tsunagu_ms": median_ms(t_times),
                        "duckdb_ms": median_ms(d_times), "agree": agree})
        r = results[-1]
        print(f"{r['query']}: tsunagu {r['tsunagu_ms']:.0f} ms, duckdb {r['duckdb_ms']:.0f} ms, "
              f"agree {agree}", file=sys.stderr)
    return results


main()
