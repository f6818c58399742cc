"""The same SQL through `hepop serve`'s /query and through DuckDB on the same
Parquet files, medians of N runs, and the ratio. Called by
bench/query-vs-duckdb.sh, which builds the lake and starts the server.
  python3 bench/query_vs_duckdb.py <lake dir> <http host:port> [runs]
  python3 bench/query_vs_duckdb.py <lake dir> --emit <file.json>
The second form only writes the queries (for the S3 run of the same set).
Each query runs with every window form of WINDOWS (the hour written six
ways); env WINDOWS="<= HH:59:59,BETWEEN" picks forms, LOOKUPS_ONLY=1 or
SCANS_ONLY=1 part of the queries."""
import json
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request

import duckdb
from deltalake import DeltaTable

lake, http = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 and http != "--emit" else 7
# The hour 2025-11-29T10 as people write it. The first form covers whole
# partitions; the others cut the hour's last second or name it through a function.
WINDOWS = [
    ("< next hour", "time >= '2025-11-29T10:00:00Z' AND time < '2025-11-29T11:00:00Z'"),
    ("<= HH:59:59", "time >= '2025-11-29T10:00:00' AND time <= '2025-11-29T10:59:59'"),
    ("BETWEEN", "time BETWEEN '2025-11-29 10:00:00' AND '2025-11-29 10:59:59'"),
    ("zone +01:00", "time >= '2025-11-29T11:00:00+01:00' AND time <= '2025-11-29T11:59:59+01:00'"),
    ("to_timestamp", "time >= to_timestamp(1764410400) AND time <= to_timestamp(1764413999)"),
    ("date_trunc", "date_trunc('hour', time) = '2025-11-29T10:00:00Z'"),
]
HOUR = WINDOWS[0][1]

db = duckdb.connect()
# DuckDB reads strings without a zone in its session zone: UTC, as HEPop does.
db.execute("SET TimeZone = 'UTC'")
for t in ("hep_1", "hep_5", "hep_100"):
    # Only data files: the compaction log (_compactions/*.json) is not Parquet.
    db.execute(
        f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{lake}/{t}/*/*/*.parquet', hive_partitioning = false)"
    )
# The same tables as outside engines read them: the Delta tables the compactor keeps.
delta = duckdb.connect()
delta.execute("SET TimeZone = 'UTC'")
for t in ("hep_1", "hep_5", "hep_100"):
    delta.register(t, DeltaTable(f"{lake}/{t}").to_pyarrow_dataset())
call_id, from_user = db.execute(
    "SELECT call_id, from_user FROM hep_1 ORDER BY call_id LIMIT 1 OFFSET 123457"
).fetchone()
# RTCP reports and logs carry the call's correlation id (SIP rows have none).
(corr,) = db.execute(
    "SELECT correlation_id FROM hep_5 WHERE correlation_id IS NOT NULL ORDER BY correlation_id LIMIT 1 OFFSET 12345"
).fetchone()


def queries(w):
    return [
        ("call_id lookup", f"SELECT * FROM hep_1 WHERE {w} AND call_id = '{call_id}' ORDER BY time"),
        ("from_user lookup", f"SELECT time, method, status, call_id FROM hep_1 WHERE {w} AND from_user = '{from_user}' ORDER BY time"),
        ("correlation_id across hep_1/5/100",
         f"SELECT time, type, payload FROM hep_1 WHERE {w} AND correlation_id = '{corr}' "
         f"UNION ALL SELECT time, type, payload FROM hep_5 WHERE {w} AND correlation_id = '{corr}' "
         f"UNION ALL SELECT time, type, payload FROM hep_100 WHERE {w} AND correlation_id = '{corr}' ORDER BY time"),
        ("correlation_id in hep_5", f"SELECT time, payload FROM hep_5 WHERE {w} AND correlation_id = '{corr}' ORDER BY time"),
        ("count by method, the hour", f"SELECT method, count(*) AS n FROM hep_1 WHERE {w} GROUP BY method ORDER BY n DESC"),
        ("payload LIKE, the hour", f"SELECT count(*) AS n FROM hep_1 WHERE {w} AND payload LIKE '%Call-ID: {call_id}%'"),
        ("latest 100 rows of the hour", f"SELECT time, method, call_id FROM hep_1 WHERE {w} ORDER BY time DESC LIMIT 100"),
    ]


QUERIES = queries(HOUR)
# LOOKUPS_ONLY=1 / SCANS_ONLY=1 (env) run part of the set.
LOOKUP = {"call_id lookup", "from_user lookup", "correlation_id across hep_1/5/100", "correlation_id in hep_5"}


if http == "--emit":
    with open(sys.argv[3], "w") as f:
        json.dump([{"name": n, "sql": q} for n, q in QUERIES], f, indent=1)
    sys.exit(0)


def hepop(sql):
    url = f"http://{http}/query?" + urllib.parse.urlencode({"q": sql})
    with urllib.request.urlopen(url, timeout=120) as r:
        return json.loads(r.read())


def timed(f, sql):
    # Warm: one untimed run first (metadata, bloom filters and the OS page
    # cache loaded for both); cold figures come from the S3 run.
    out = f(sql)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = f(sql)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def row(name, form, sql):
    h, rows_h = timed(hepop, sql)
    d, rows_d = timed(lambda q: db.execute(q).fetchall(), sql)
    assert len(rows_h) == len(rows_d), f"{name} {form}: HEPop {len(rows_h)} rows, DuckDB {len(rows_d)}"
    print(f"{name:36} {form:14} {h:10.1f} {d:10.1f} {h / d:6.2f}x  {len(rows_h)}", flush=True)
    return h


def wanted(name):
    if os.environ.get("LOOKUPS_ONLY") and name not in LOOKUP:
        return False
    return not (os.environ.get("SCANS_ONLY") and name in LOOKUP)


only = os.environ.get("WINDOWS")  # e.g. WINDOWS="<= HH:59:59,date_trunc"
# A server just started answers its first queries slower (caches, threads and
# allocator warming): the first query's series was 1.5-2x the same query later
# on. One untimed pass of the set first, on both engines, so the first series
# is measured as warm as the rest.
for _, sql in QUERIES:
    hepop(sql)
    db.execute(sql).fetchall()
print(f"{'query':36} {'window':14} {'HEPop ms':>10} {'DuckDB ms':>10} {'ratio':>7}  rows")
first = {}
for form, w in WINDOWS:
    if only and form not in only.split(","):
        continue
    for name, sql in queries(w):
        if wanted(name):
            h = row(name, form, sql)
            first.setdefault(name, h)

# DuckDB on the Delta tables (slow on lookups: no bloom filter or page index
# through the Arrow dataset), the first window form, after the rest: the
# Arrow dataset's threads and memory outlast its queries and slowed the
# measurements that followed them.
print(f"\n{'query':36} {'HEPop ms':>10} {'DuckDB on Delta ms':>19} {'ratio':>7}")
for name, sql in queries(HOUR):
    if name in first:
        dd, rows_dd = timed(lambda q: delta.execute(q).fetchall(), sql)
        print(f"{name:36} {first[name]:10.1f} {dd:19.1f} {first[name] / dd:6.2f}x  {len(rows_dd)}", flush=True)
