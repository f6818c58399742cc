"""Drives HEPop's Flight SQL port with Apache Arrow's ADBC Flight SQL driver,
as Grafana's Flight SQL data source and ADBC users do, and prints what it saw
as JSON for crates/hepop/tests/it/flight.rs to check.

usage: client.py grpc://127.0.0.1:PORT TOKEN CALL_ID
"""
import json
import sys

import adbc_driver_flightsql.dbapi as flight
import adbc_driver_manager
from adbc_driver_flightsql import DatabaseOptions

uri, token, call_id = sys.argv[1:4]
seen = {}


def failure(f):
    try:
        f()
        return None
    except Exception as e:  # the driver's error, as a user would read it
        return f"{type(e).__name__}: {e}"


def bearer():
    return flight.connect(uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"})


with bearer() as conn, conn.cursor() as cur:
    cur.execute("SELECT count(*) AS n FROM hep_1")
    seen["count"] = cur.fetchone()[0]
    # A prepared statement with a parameter, bound by the driver (DoPut).
    cur.execute(
        "SELECT method, status FROM hep_1 WHERE call_id = $1 ORDER BY time", parameters=(call_id,)
    )
    seen["flow"] = [m if m is not None else str(s) for m, s in cur.fetchall()]
    cur.execute("SELECT call_id FROM hep_1 WHERE call_id = $1 LIMIT 1", parameters=("no-such-call",))
    seen["no_rows"] = cur.fetchall()
    # What Grafana's data source and ADBC's catalog calls ask (GetSqlInfo, GetTables …).
    info = conn.adbc_get_info()
    seen["vendor_name"] = info.get("vendor_name")
    seen["vendor_version"] = info.get("vendor_version")
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    seen["tables"] = sorted(
        t["table_name"]
        for c in objects
        for s in c["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    )
    seen["hep_1_columns"] = conn.adbc_get_table_schema("hep_1").names
    seen["write_refused"] = failure(lambda: cur.execute("CREATE TABLE x AS SELECT 1"))
    seen["hostile"] = failure(
        lambda: cur.execute(
            "SELECT count(*) FROM generate_series(1, 100000000000) a CROSS JOIN generate_series(1, 1000) b"
        )
    )

# Basic credentials in the handshake, the password a token.
with flight.connect(
    uri,
    db_kwargs={
        adbc_driver_manager.DatabaseOptions.USERNAME.value: "grafana",
        adbc_driver_manager.DatabaseOptions.PASSWORD.value: token,
    },
) as conn, conn.cursor() as cur:
    cur.execute("SELECT 41 + 1 AS answer")
    seen["basic"] = cur.fetchone()[0]


def anonymous():
    with flight.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchall()


def wrong_token():
    with flight.connect(uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer not-a-token-0123456789"}) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchall()


seen["anonymous"] = failure(anonymous)
seen["wrong_token"] = failure(wrong_token)
print(json.dumps(seen))
