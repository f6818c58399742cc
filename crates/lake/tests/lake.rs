mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lake::engine::{QueryEngine, QueryError, QueryLimits};
use lake::http::{ApiState, router};
use lake::writer::{WriteBuffer, WriterConfig};
use object_store::ObjectStore;
use serde_json::Value;
use support::{Instrumented, Op, micros, sip};
use tower::ServiceExt;

struct Lake {
    _dir: tempfile::TempDir,
    inst: Arc<Instrumented>,
    store: Arc<dyn ObjectStore>,
}

fn lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instrumented::new(lake::store::open(dir.path().to_str().unwrap()).unwrap());
    let store: Arc<dyn ObjectStore> = inst.clone();
    Lake {
        _dir: dir,
        inst,
        store,
    }
}

/// Writes `msgs` as one file per partition.
async fn write(store: &Arc<dyn ObjectStore>, msgs: &[hep::HepMessage]) {
    let mut buf = WriteBuffer::new(WriterConfig::default());
    for m in msgs {
        buf.append(m);
    }
    for f in buf.take_due(Instant::now(), true) {
        f.write(store).await.unwrap();
    }
}

fn engine(store: &Arc<dyn ObjectStore>) -> QueryEngine {
    QueryEngine::new(store.clone(), QueryLimits::default()).unwrap()
}

async fn count(e: &QueryEngine, sql: &str) -> i64 {
    let r = e.query(sql).await.unwrap();
    let b = &r.batches[0];
    b.column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[tokio::test]
async fn write_then_query_sip_fields() {
    let l = lake();
    let t = now() - 1_000_000;
    let msgs: Vec<_> = (0..7).map(|s| sip(1, s, t + s as i64)).collect();
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    let r = e
        .query("SELECT method, status, call_id, cseq_num, cseq_method, from_user, from_tag, to_user, to_tag, ruri_user, ruri_domain, user_agent FROM hep_1 ORDER BY time")
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 7);
    let json: Value =
        serde_json::from_slice(&lake::http::render(&r, lake::http::Format::Json).unwrap()).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows[0]["method"], "INVITE");
    assert_eq!(rows[0]["status"], Value::Null);
    assert_eq!(rows[0]["ruri_user"], "bob1");
    assert_eq!(rows[0]["ruri_domain"], "example.com");
    assert_eq!(rows[0]["to_tag"], Value::Null);
    assert_eq!(rows[2]["status"], 180);
    assert_eq!(rows[2]["to_tag"], "to1");
    assert_eq!(rows[5]["method"], "BYE");
    assert_eq!(rows[5]["cseq_num"], 2);
    for r in rows {
        assert_eq!(r["call_id"], "call-1@10.0.0.1");
        assert_eq!(r["from_user"], "alice1");
        assert_eq!(r["from_tag"], "from1");
        assert_eq!(r["to_user"], "bob1");
        assert_eq!(r["user_agent"], "test-ua");
    }
}

#[tokio::test]
async fn row_json_has_the_seed_shape() {
    let l = lake();
    let mut m = sip(7, 0, micros("2025-01-26T18:44:07.120"));
    m.src_ip = Some("192.168.1.1".parse().unwrap());
    m.dst_ip = Some("192.168.1.2".parse().unwrap());
    m.correlation_id = Some("067d3@127.0.0.1".into());
    write(&l.store, &[m]).await;
    let r = engine(&l.store)
        .query("SELECT * FROM hep_1 WHERE time >= '2025-01-26T18:00:00'")
        .await
        .unwrap();
    let json: Value =
        serde_json::from_slice(&lake::http::render(&r, lake::http::Format::Json).unwrap()).unwrap();
    let row = &json[0];
    assert_eq!(row["capture_id"], 2001);
    assert_eq!(row["capture_pass"], "myHep");
    assert_eq!(row["correlation_id"], "067d3@127.0.0.1");
    assert_eq!(row["src_ip"], "192.168.1.1");
    assert_eq!(row["dst_ip"], "192.168.1.2");
    assert_eq!(row["src_port"], 5060);
    assert_eq!(row["dst_port"], 5060);
    assert_eq!(row["ip_family"], 2);
    assert_eq!(row["protocol"], 17);
    assert_eq!(row["proto_type"], 1);
    assert_eq!(row["type"], 1);
    assert_eq!(row["time"], "2025-01-26T18:44:07.120");
    assert_eq!(row["time_sec"], 1737917047);
    assert_eq!(row["time_usec"], 120000);
    assert_eq!(row["node_name"], "node-a");
    assert_eq!(row["vlan"], Value::Null);
    assert!(
        row["payload"]
            .as_str()
            .unwrap()
            .starts_with("INVITE sip:bob7@example.com SIP/2.0\r\n")
    );
}

#[tokio::test]
async fn no_time_condition_means_last_ten_minutes() {
    let l = lake();
    let t = now();
    let msgs = vec![
        sip(1, 0, t - 30_000_000),
        sip(2, 0, t - 9 * 60_000_000),
        sip(3, 0, t - 11 * 60_000_000),
        sip(4, 0, t - 3 * 3_600_000_000),
    ];
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    assert_eq!(count(&e, "SELECT count(*) FROM hep_1").await, 2);
    // Selecting columns without `time` still applies the window.
    assert_eq!(
        e.query("SELECT call_id FROM hep_1")
            .await
            .unwrap()
            .num_rows(),
        2
    );
    assert_eq!(
        count(&e, "SELECT count(*) FROM hep_1 WHERE call_id LIKE 'call-%'").await,
        2
    );
    // Any condition on time replaces the window.
    let since = chrono::DateTime::from_timestamp_micros(t - 4 * 3_600_000_000)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S");
    assert_eq!(
        count(
            &e,
            &format!("SELECT count(*) FROM hep_1 WHERE time >= '{since}'")
        )
        .await,
        4
    );
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM hep_1 WHERE time > now() - interval '1 hour'"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn time_conditions_prune_partitions_before_listing_or_reading() {
    let l = lake();
    let mut msgs = vec![];
    for (i, hour) in [
        "2025-02-07T19",
        "2025-02-08T18",
        "2025-02-08T19",
        "2025-02-08T20",
    ]
    .iter()
    .enumerate()
    {
        for k in 0..5 {
            msgs.push(sip(
                i * 10 + k,
                k,
                micros(&format!("{hour}:{:02}:00", 10 + k)),
            ));
        }
    }
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    let touched = |ops: &[Op], hour: &str| {
        ops.iter().any(|op| match op {
            Op::Get(p) | Op::List(p) | Op::ListDelim(p) => p.contains(hour),
            _ => false,
        })
    };
    for (sql, expected) in [
        (
            "SELECT count(*) FROM hep_1 WHERE time >= '2025-02-08T19:00:00' AND time < '2025-02-08T20:00:00'",
            5,
        ),
        (
            "SELECT count(*) FROM hep_1 WHERE time BETWEEN '2025-02-08T19:05:00' AND '2025-02-08T19:59:59'",
            5,
        ),
        (
            "SELECT count(*) FROM hep_1 WHERE time BETWEEN '2025-02-08T19:11:00' AND '2025-02-08T19:12:00'",
            2,
        ),
        // INVITE and the three responses whose CSeq says INVITE.
        (
            "SELECT count(*) FROM hep_1 WHERE '2025-02-08T19:00:00' <= time AND time <= '2025-02-08T19:30:00' AND payload LIKE '%INVITE%' OR false",
            4,
        ),
    ] {
        l.inst.take_ops();
        let n = count(&e, sql).await;
        let ops = l.inst.take_ops();
        assert_eq!(n, expected, "{sql}");
        assert!(touched(&ops, "date=2025-02-08/hour=19"), "{sql}: {ops:?}");
        for other in [
            "date=2025-02-08/hour=18",
            "date=2025-02-08/hour=20",
            "date=2025-02-07",
        ] {
            assert!(!touched(&ops, other), "{sql} touched {other}: {ops:?}");
        }
    }
    assert_eq!(count(&e, "SELECT count(*) FROM hep_1 WHERE time >= '2025-02-08T19:00:00' AND time < '2025-02-08T20:00:00'").await, 5);
    // Lower bound only: everything from 18:00 on, nothing of the 7th read.
    l.inst.take_ops();
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM hep_1 WHERE time > '2025-02-08T18:00:00'"
        )
        .await,
        15
    );
    assert!(!touched(&l.inst.take_ops(), "date=2025-02-07"));
    // Empty range reads nothing at all.
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM hep_1 WHERE time > '2025-02-09' AND time < '2025-02-08'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn sql_features_work() {
    let l = lake();
    let t = now() - 60_000_000;
    let msgs: Vec<_> = (0..10)
        .flat_map(|c| (0..7).map(move |s| sip(c, s, t + (c * 7 + s) as i64 * 1000)))
        .collect();
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    assert_eq!(
        count(&e, "SELECT count(*) FROM hep_1 WHERE method = 'INVITE'").await,
        10
    );
    let r = e.query("SELECT call_id, count(*) AS n, min(time) AS first FROM hep_1 GROUP BY call_id ORDER BY n DESC, call_id LIMIT 3 OFFSET 1").await.unwrap();
    assert_eq!(r.num_rows(), 3);
    let json: Value =
        serde_json::from_slice(&lake::http::render(&r, lake::http::Format::Json).unwrap()).unwrap();
    assert_eq!(json[0]["call_id"], "call-1@10.0.0.1");
    assert_eq!(json[0]["n"], 7);
    assert_eq!(count(&e, "SELECT count(DISTINCT call_id) FROM hep_1 WHERE status >= 200 AND payload LIKE '%SIP/2.0 2%'").await, 10);
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM (SELECT src_ip FROM hep_1 ORDER BY time DESC LIMIT 5)"
        )
        .await,
        5
    );
    let r = e
        .query("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'hep_%'")
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 1);
}

#[tokio::test]
async fn refuses_anything_but_reads() {
    let l = lake();
    write(&l.store, &[sip(1, 0, now())]).await;
    let e = engine(&l.store);
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'",
        "CREATE VIEW v AS SELECT * FROM hep_1",
        "DROP TABLE hep_1",
        "INSERT INTO hep_1 SELECT * FROM hep_1",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('https://example.com/x.csv')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT 1; SELECT 2",
        "SELEC nonsense",
        "SELECT nope FROM hep_1",
        "SELECT * FROM hep_99",
        "",
    ] {
        match e.query(sql).await {
            Err(err) => assert!(err.is_user_error(), "{sql}: {err}"),
            Ok(_) => panic!("{sql} was accepted"),
        }
    }
}

#[tokio::test]
async fn too_many_rows_and_too_slow_end_with_clear_errors() {
    let l = lake();
    let t = now();
    write(
        &l.store,
        &(0..50).map(|i| sip(i, 0, t - i as i64)).collect::<Vec<_>>(),
    )
    .await;
    let small = QueryEngine::new(
        l.store.clone(),
        QueryLimits {
            max_rows: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        small.query("SELECT * FROM hep_1").await,
        Err(QueryError::TooManyRows(10))
    ));
    assert_eq!(
        small
            .query("SELECT * FROM hep_1 LIMIT 10")
            .await
            .unwrap()
            .num_rows(),
        10
    );
    let slow = QueryEngine::new(
        l.store.clone(),
        QueryLimits {
            timeout: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let r = slow
        .query("SELECT count(*) FROM generate_series(1, 10000000000) a")
        .await;
    assert!(matches!(r, Err(QueryError::Timeout(_))), "{:?}", r.err());
    assert!(started.elapsed() < Duration::from_secs(5));
    let tight = QueryEngine::new(
        l.store.clone(),
        QueryLimits {
            memory_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let r = tight.query("SELECT a.value, b.value FROM generate_series(1, 3000000) a, generate_series(1, 2) b ORDER BY a.value DESC LIMIT 1").await;
    assert!(
        matches!(r, Err(QueryError::ResourcesExhausted(_))),
        "{:?}",
        r.err()
    );
}

async fn http(app: axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn http_api_shapes_and_errors() {
    let l = lake();
    let t = now() - 1000;
    write(&l.store, &[sip(1, 0, t), sip(1, 1, t + 1)]).await;
    let app = router(ApiState {
        engine: Arc::new(engine(&l.store)),
        response_limit: lake::http::ResponseLimit::Unbounded,
    });

    let (s, b) = http(
        app.clone(),
        get("/query?q=SELECT%20call_id,status%20FROM%20hep_1%20ORDER%20BY%20time"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"call_id": "call-1@10.0.0.1", "status": null}, {"call_id": "call-1@10.0.0.1", "status": 100}])
    );

    let (s, b) = http(
        app.clone(),
        post("/query", r#"{"query": "SELECT count(*) AS n FROM hep_1"}"#),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"[{"n":2}]"#));
    let (s, b) = http(
        app.clone(),
        post(
            "/api/v3/query_sql",
            r#"{"db": "hep", "q": "select count(*) as n from hep_1"}"#,
        ),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"[{"n":2}]"#));
    let (s, b) = http(
        app.clone(),
        post(
            "/query",
            r#"{"query": "SELECT status FROM hep_1 ORDER BY time", "format": "ndjson"}"#,
        ),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, "{\"status\":null}\n{\"status\":100}\n")
    );
    let (s, b) = http(
        app.clone(),
        get("/query?format=csv&q=SELECT%20status,method%20FROM%20hep_1%20ORDER%20BY%20time"),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, "status,method\n,INVITE\n100,\n")
    );
    let (s, b) = http(
        app.clone(),
        get("/query?q=SELECT%20*%20FROM%20hep_1%20WHERE%20false"),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));

    for req in [
        get("/query"),
        get("/query?q=SELEC"),
        get("/query?q=DROP%20TABLE%20hep_1"),
        get("/query?q=SELECT%201&format=xml"),
        post("/query", "not json"),
        post("/query", r#"{"nothing": 1}"#),
        post("/api/v3/query_sql", r#"{"db": "hep"}"#),
    ] {
        let (s, b) = http(app.clone(), req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert!(!v["error"].as_str().unwrap().is_empty());
    }

    // A response over the size limit is refused whole, never truncated.
    let tiny = router(ApiState {
        engine: Arc::new(engine(&l.store)),
        response_limit: lake::http::ResponseLimit::Body(100),
    });
    let (s, b) = http(tiny, get("/query?q=SELECT%20payload%20FROM%20hep_1")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.contains("response limit"), "{b}");
}

/// Time bounds are applied by the scan itself, and only to the hours they cut:
/// every form of bound, at and around an hour's edges, counts exactly the rows
/// a plain comparison does (rows of hours wholly inside are not filtered).
#[tokio::test]
async fn time_bounds_hold_exactly_at_hour_edges() {
    let l = lake();
    let edge = micros("2025-02-08T19:00:00");
    let hour = 3_600_000_000;
    let times: Vec<i64> = [
        -hour - 1,
        -hour,
        -hour / 2,
        -2,
        -1,
        0,
        1,
        hour / 2,
        hour - 1,
        hour,
        hour + 1,
        2 * hour + 5,
    ]
    .iter()
    .map(|d| edge + d)
    .collect();
    let msgs: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, t)| sip(i, 0, *t))
        .collect();
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    let iso = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    let n = |f: &dyn Fn(i64) -> bool| times.iter().filter(|t| f(**t)).count() as i64;
    for (a, b) in [
        (edge - hour, edge + hour),
        (edge, edge + hour),
        (edge - 1, edge + 1),
        (edge + 1, edge + hour - 1),
        (edge - hour - 1, edge + 2 * hour + 5),
        (edge + hour / 2, edge + hour / 2),
    ] {
        let (sa, sb) = (iso(a), iso(b));
        for (sql, expected) in [
            (
                format!("time >= '{sa}' AND time < '{sb}'"),
                n(&|t| t >= a && t < b),
            ),
            (
                format!("time > '{sa}' AND time <= '{sb}'"),
                n(&|t| t > a && t <= b),
            ),
            (
                format!("time BETWEEN '{sa}' AND '{sb}'"),
                n(&|t| t >= a && t <= b),
            ),
            (
                format!("'{sb}' > time AND '{sa}' <= time"),
                n(&|t| t >= a && t < b),
            ),
            (format!("time = '{sa}'"), n(&|t| t == a)),
            // Not a plain bound: DataFusion filters it, the scan keeps the hours.
            (
                format!("time >= '{sa}' AND time < '{sb}' AND (time < '{sa}' OR src_port = 5060)"),
                n(&|t| t >= a && t < b),
            ),
        ] {
            let got = count(&e, &format!("SELECT count(*) FROM hep_1 WHERE {sql}")).await;
            assert_eq!(got, expected, "{sql}");
        }
    }
    // Selecting columns without `time` while an edge hour is filtered by it.
    let r = e
        .query(&format!(
            "SELECT src_port FROM hep_1 WHERE time >= '{}' AND time < '{}'",
            iso(edge - 1),
            iso(edge + hour + 1)
        ))
        .await
        .unwrap();
    assert_eq!(
        r.num_rows() as i64,
        n(&|t| t >= edge - 1 && t < edge + hour + 1)
    );
    assert_eq!(r.schema.fields().len(), 1);
}
