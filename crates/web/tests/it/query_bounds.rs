//! Queries stay inside their bounds whatever they compute: the timeout holds
//! under CPU-bound work (the query pool is not the caller's runtime), a query
//! over the concurrency limit gets 429, functions that could allocate
//! gigabytes are refused before they do, and results are encoded whole
//! across batches under the response limit.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lake::engine::{QueryEngine, QueryError, QueryLimits};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::Value;
use tower::ServiceExt;
use web::{ApiState, ResponseLimit, router};

fn engine(limits: QueryLimits) -> Arc<QueryEngine> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    Arc::new(QueryEngine::new(store, limits).unwrap())
}

/// Polls until a query gets a slot again (the runaway one really stopped); fails after 30 s.
async fn slot_freed(e: &QueryEngine) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match e.query("SELECT 1 AS one").await {
            Ok(r) => return assert_eq!(r.num_rows(), 1),
            Err(QueryError::Busy(_)) => {
                assert!(
                    Instant::now() < deadline,
                    "the timed-out query kept its slot"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn cpu_bound_queries_are_answered_within_their_timeout_and_stop() {
    let e = engine(QueryLimits {
        timeout: Duration::from_secs(1),
        max_concurrent: 1,
        threads: 1,
        ..Default::default()
    });
    for sql in [
        "SELECT count(*) FROM generate_series(1, 100000000000)",
        "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b, generate_series(1, 100000) c",
        "SELECT max(length(a.value::varchar || b.value::varchar)) FROM generate_series(1, 1000000) a, generate_series(1, 1000000) b",
    ] {
        let started = Instant::now();
        let r = e.query(sql).await;
        let took = started.elapsed();
        assert!(
            matches!(r, Err(QueryError::Timeout(_))),
            "{sql}: {:?}",
            r.err()
        );
        // The timeout plus a second or two, whatever the query computes.
        assert!(
            took < Duration::from_secs(3),
            "{sql}: answered after {took:?}"
        );
        slot_freed(&e).await;
    }
}

async fn call(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, 1 << 28).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn q(sql: &str) -> String {
    let enc: String = sql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/query?q={enc}")
}

#[tokio::test]
async fn beyond_the_concurrency_limit_a_query_gets_429_with_retry_after() {
    let e = engine(QueryLimits {
        max_concurrent: 1,
        ..Default::default()
    });
    let app = router(ApiState {
        engine: e.clone(),
        response_limit: ResponseLimit::Unbounded,
    });
    let mut slow = Box::pin(e.query("SELECT count(*) FROM generate_series(1, 100000000000)"));
    // One poll takes the only slot.
    assert!(futures::poll!(slow.as_mut()).is_pending());
    let (status, headers, body) = call(&app, &q("SELECT 1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("try again"), "{body}");
    // The waiting caller goes away: its query is cancelled and the slot comes back.
    drop(slow);
    slot_freed(&e).await;
    let (status, _, body) = call(&app, &q("SELECT 1 AS one")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The API over the default limits, with no response limit.
fn unbounded_app() -> axum::Router {
    router(ApiState {
        engine: engine(QueryLimits::default()),
        response_limit: ResponseLimit::Unbounded,
    })
}

/// A 400 whose message names the bytes the query would have taken.
async fn refused_for_its_bytes(app: &axum::Router, sql: &str) {
    let (status, _, body) = call(app, &q(sql)).await;
    let shown = &body[..body.len().min(300)];
    assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {shown}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("bytes"), "{sql}: {msg}");
}

#[tokio::test]
async fn functions_that_could_allocate_gigabytes_are_refused_before_they_do() {
    let app = unbounded_app();
    let sixty_mb = "repeat('x', 60000000)";
    let many: Vec<String> = (0..10)
        .map(|i| format!("length({sixty_mb}) AS l{i}"))
        .collect();
    for sql in [
        "SELECT length(repeat('x', 2000000000))".to_owned(),
        "SELECT length(lpad('x', 2000000000))".into(),
        "SELECT length(rpad('x', 2000000000, 'ab'))".into(),
        "SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 1000)))".into(),
        "SELECT length(regexp_replace(repeat('a', 100000), '', repeat('b', 1000), 'g'))".into(),
        format!(
            "SELECT length(concat({}))",
            ["repeat('a', 30000000)"; 5].join(", ")
        ),
        // 4 GB from two rows, over the 1 GiB pool.
        "SELECT length(repeat(v, 1000000000)) FROM (VALUES ('ab'), ('cd')) t(v)".into(),
        format!("SELECT {}", many.join(", ")),
        // Each step within the pool, the chain not: 200 MB, then 400, then 600 more.
        "SELECT length(v || v || v || v) FROM (SELECT repeat(CAST(value % 2 AS VARCHAR), 50000000) AS v \
            FROM generate_series(1, 4)) t"
            .into(),
        // Doubling in nested calls adds up the same way.
        "SELECT length(concat(concat(concat(v, v), concat(v, v)), v)) FROM (SELECT repeat(v, 100000000) AS v \
            FROM (VALUES ('a'), ('b')) t(v)) u"
            .into(),
    ] {
        refused_for_its_bytes(&app, &sql).await;
    }
    // Ordinary uses give the ordinary answers.
    let (status, _, body) = call(
        &app,
        &q(
            "SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS l, rpad('a', 2) AS p, \
            replace('a-b-c', '-', '::') AS s, regexp_replace('call-42', '[0-9]+', 'N') AS x, \
            concat('sip:', 'alice', '@', 'example.com') AS c, length(repeat('x', 1000000)) AS n",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({"r": "ababab", "l": "007", "p": "a ", "s": "a::b::c", "x": "call-N",
            "c": "sip:alice@example.com", "n": 1000000})
    );
}

#[tokio::test]
async fn constants_repeated_into_columns_are_reserved_in_the_pool() {
    let app = unbounded_app();
    // 1 MB constants over batches of 8192 rows: 8 GB each, over the 1 GiB pool.
    let rows = "FROM generate_series(1, 100000)";
    for sql in [
        format!("SELECT value, repeat('x', 1000000) AS t {rows}"),
        format!(
            "SELECT max(length(CASE WHEN value % 2 = 0 THEN repeat('x', 1000000) ELSE 'y' END)) {rows}"
        ),
        format!("SELECT count(DISTINCT k) FROM (SELECT repeat('k', 1000000) AS k {rows}) s"),
        format!("SELECT max(repeat('x', 1000000)) AS m {rows}"),
        format!("SELECT max(length(nullif(CAST(value AS VARCHAR), repeat('x', 1000000)))) {rows}"),
        // A delimiter stays a literal: it may not be that long.
        format!("SELECT length(string_agg(CAST(value AS VARCHAR), repeat('-', 20000))) {rows}"),
    ] {
        refused_for_its_bytes(&app, &sql).await;
    }
    // Ordinary constants keep their values, headings and NULLs.
    let (status, _, body) = call(
        &app,
        &q(
            "SELECT 'tag' AS t, 'x', value, CASE WHEN value = 2 THEN 'two' END AS c, \
            nullif(CAST(value AS VARCHAR), '1') AS n FROM generate_series(1, 2)",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"t": "tag", "Utf8(\"x\")": "x", "value": 1, "c": null, "n": null},
            {"t": "tag", "Utf8(\"x\")": "x", "value": 2, "c": "two", "n": "2"},
        ])
    );
    let (status, _, body) = call(
        &app,
        &q(
            "SELECT count(*) AS n, max(t) AS m, length(string_agg(t, ',')) AS l, \
            max(length(repeat('ab', 500))) AS r \
            FROM (SELECT 'tag' AS t, value FROM generate_series(1, 20000)) s GROUP BY 'k'",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"n": 20000, "m": "tag", "l": 79999, "r": 1000}])
    );
}

#[tokio::test]
async fn string_concatenation_keeps_the_operators_null_rule_and_column_names() {
    let app = unbounded_app();
    let (status, _, body) = call(
        &app,
        &q("SELECT v || '-' || w, concat(v, w) AS c, 'n' || 1 AS n \
            FROM (VALUES ('a', 'b'), (NULL, 'b'), ('a', NULL)) t(v, w)"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([
            {"t.v || Utf8(\"-\") || t.w": "a-b", "c": "ab", "n": "n1"},
            {"t.v || Utf8(\"-\") || t.w": null, "c": "b", "n": "n1"},
            {"t.v || Utf8(\"-\") || t.w": null, "c": "a", "n": "n1"},
        ])
    );
}

#[tokio::test]
async fn results_across_many_batches_encode_whole_in_every_format() {
    let app = unbounded_app();
    // 20 000 rows: three batches of 8192 at most.
    let sql = "SELECT value AS v, 'r' || value AS s FROM generate_series(1, 20000) ORDER BY value";
    let (status, _, json) = call(&app, &q(sql)).await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 20000);
    assert_eq!(rows[19999], serde_json::json!({"v": 20000, "s": "r20000"}));
    let (_, headers, nd) = call(&app, &format!("{}&format=ndjson", q(sql))).await;
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(nd.lines().count(), 20000);
    assert_eq!(nd.lines().nth(8192).unwrap(), r#"{"v":8193,"s":"r8193"}"#);
    let (_, _, csv) = call(&app, &format!("{}&format=csv", q(sql))).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 20001, "one header, then every row");
    assert_eq!((lines[0], lines[20000]), ("v,s", "20000,r20000"));
    let (_, _, empty) = call(&app, &q("SELECT 1 AS one WHERE false")).await;
    assert_eq!(empty, "[]");
    let (_, _, header_only) = call(
        &app,
        &format!("{}&format=csv", q("SELECT 1 AS one WHERE false")),
    )
    .await;
    assert_eq!(header_only.trim(), "one");
}

#[tokio::test]
async fn the_response_limit_counts_the_encoded_body() {
    let e = engine(QueryLimits::default());
    let sql = "SELECT 'x' || value AS s FROM generate_series(1, 1000)";
    let full = call(
        &router(ApiState {
            engine: e.clone(),
            response_limit: ResponseLimit::Unbounded,
        }),
        &q(sql),
    )
    .await
    .2;
    // Exactly the body's size passes; one byte less is refused whole.
    for (limit, ok) in [(full.len(), true), (full.len() - 1, false)] {
        let app = router(ApiState {
            engine: e.clone(),
            response_limit: ResponseLimit::Body(limit),
        });
        let (status, _, body) = call(&app, &q(sql)).await;
        assert_eq!(status == StatusCode::OK, ok, "limit {limit}: {body}");
        if !ok {
            assert!(body.contains("response limit"), "{body}");
        }
    }
    // Inside a Lambda payload quotes count twice: the same body needs more room.
    let escaped = web::json_escaped_len(full.as_bytes());
    assert!(escaped > full.len());
    for (limit, ok) in [(escaped, true), (full.len(), false)] {
        let app = router(ApiState {
            engine: e.clone(),
            response_limit: ResponseLimit::LambdaPayload(limit),
        });
        let (status, headers, _) = call(&app, &q(sql)).await;
        assert_eq!(status == StatusCode::OK, ok, "lambda limit {limit}");
        if ok {
            assert_eq!(headers["x-lambda-http-content-encoding"], "text");
        }
    }
}

/// A job of several statements (a call flow) is bounded as a whole: each
/// statement is quick, the job is not, and it is cut off at the timeout
/// with its slot given back.
#[tokio::test]
async fn the_timeout_bounds_a_whole_job_not_each_statement() {
    let e = engine(QueryLimits {
        timeout: Duration::from_millis(500),
        max_concurrent: 1,
        ..Default::default()
    });
    let statements = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ran = statements.clone();
    let started = Instant::now();
    let r: Result<(), QueryError> = e
        .job(move |st| async move {
            loop {
                st.query("SELECT count(*) FROM generate_series(1, 1000)", &[])
                    .await?;
                ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .await;
    assert!(matches!(r, Err(QueryError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        statements.load(std::sync::atomic::Ordering::Relaxed) > 1,
        "each statement finished in time"
    );
    slot_freed(&e).await;
}

#[tokio::test]
async fn statement_values_are_bound_as_text_whatever_they_hold() {
    let e = engine(QueryLimits::default());
    let hostile = "x') OR ('1'='1";
    let huge = "y".repeat(2 << 20);
    let r = e
        .job(move |st| async move {
            st.query(
                "SELECT v FROM (VALUES ('a'), ('x'), ('b')) AS t(v) WHERE v IN ($1, $2) OR length($3) = 2097152",
                &[hostile, "b", &huge],
            )
            .await
        })
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 3, "length($3) holds for every row");
    let r = e
        .job(|st| async move {
            st.query(
                "SELECT v FROM (VALUES ('a'), ('x'), ('b')) AS t(v) WHERE v IN ($1, $2)",
                &["x') OR ('1'='1", "b"],
            )
            .await
        })
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 1, "only 'b': the hostile value is one value");
}
