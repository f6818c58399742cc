"""The calls endpoints on the benchmark hour (bench/query-vs-duckdb.sh runs it
against its server): search by Call-ID, by caller, without a filter, a call's
flow and its PCAP; medians of N, with the rows answered.
  python3 bench/calls.py <queries.json> <http host:port> [runs]"""
import json
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request

queries, http = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 7
sql = [q["sql"] for q in json.load(open(queries))]
call_id = re.search(r"call_id = '([^']+)'", sql[0]).group(1)
caller = re.search(r"from_user = '([^']+)'", sql[1]).group(1)
hour = "from=2025-11-29T10:00:00Z&to=2025-11-29T11:00:00Z"
quoted = urllib.parse.quote(call_id)


def timed(path):
    url = f"http://{http}{path}"
    body = b""
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as r:
            body = r.read()
        if i:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), body


print(f"{'calls endpoint':36} {'ms':>8}  answer")
for name, path in [
    ("search by Call-ID", f"/api/v1/calls?{hour}&call_id={quoted}"),
    ("search by caller", f"/api/v1/calls?{hour}&caller={urllib.parse.quote(caller)}"),
    ("search, no filter (newest 100)", f"/api/v1/calls?{hour}"),
    ("call flow", f"/api/v1/calls/{quoted}?{hour}"),
    ("call PCAP", f"/api/v1/calls/{quoted}/pcap?{hour}"),
]:
    ms, body = timed(path)
    if body[:1] == b"[":
        answer = f"{len(json.loads(body))} calls"
    elif body[:1] == b"{":
        answer = f"{len(json.loads(body)['messages'])} messages"
    else:
        answer = f"{len(body)} bytes"
    print(f"{name:36} {ms:8.1f}  {answer}")
