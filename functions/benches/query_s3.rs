//! The query set of bench/query-vs-duckdb.sh through the query function's
//! router over LocalStack S3: the lake directory is copied to a new bucket,
//! then each query runs on a fresh router (cold: the first query after
//! start, nothing cached) and again RUNS-1 times (warm: median).
//!
//!   LOCALSTACK_ENDPOINT=http://127.0.0.1:4566 cargo bench -p functions --bench query_s3 -- <lake dir> <queries.json> [runs]
//!
//! bench/query-vs-duckdb.sh runs it when LOCALSTACK_ENDPOINT is set.
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tower::ServiceExt;

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn query(router: &lake::http::Router, sql: &str) -> (Duration, String) {
    let t = Instant::now();
    let req = Request::get(format!("/query?q={}", urlencode(sql)))
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(status.is_success(), "{status}: {body}");
    (t.elapsed(), body)
}

/// LocalStack accepts an unsigned PUT of a bucket.
async fn create_bucket(endpoint: &str, bucket: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
    let req = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    resp.starts_with("HTTP/1.1 200")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (dir, queries) = match args.as_slice() {
        [d, q, ..] => (d.clone(), q.clone()),
        _ => panic!("usage: query_s3 <lake dir> <queries.json> [runs]"),
    };
    let runs: usize = args.get(2).map_or(7, |r| r.parse().unwrap());
    let queries: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&queries).unwrap()).unwrap();
    let endpoint = std::env::var("LOCALSTACK_ENDPOINT")
        .expect("LOCALSTACK_ENDPOINT (start LocalStack: tests/localstack/start.sh)");
    // SAFETY: set before any other thread exists.
    unsafe {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ] {
            std::env::set_var(k, v);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let bucket = format!("query-s3-{}", chrono::Utc::now().timestamp() % 1_000_000);
        assert!(
            create_bucket(&endpoint, &bucket).await,
            "creating bucket {bucket}"
        );
        let s3 = lake::store::open(&format!("s3://{bucket}/lake")).unwrap();
        let local = lake::store::open(&dir).unwrap();
        let t = Instant::now();
        let objects: Vec<_> = local.list(None).try_collect().await.unwrap();
        let bytes: u64 = futures::stream::iter(objects)
            .map(|m| {
                let (local, s3) = (local.clone(), s3.clone());
                async move {
                    let b = local.get(&m.location).await.unwrap().bytes().await.unwrap();
                    s3.put(&m.location, PutPayload::from_bytes(b))
                        .await
                        .unwrap();
                    m.size
                }
            })
            .buffer_unordered(4)
            .fold(0, |a, n| async move { a + n })
            .await;
        println!(
            "copied {:.0} MB to s3://{bucket}/lake in {:.0} s",
            bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        println!(
            "{:36} {:>9} {:>9}  rows",
            "query (LocalStack S3)", "cold ms", "warm ms"
        );
        for q in &queries {
            let (name, sql) = (q["name"].as_str().unwrap(), q["sql"].as_str().unwrap());
            // A new router is a new engine: nothing cached, as after a cold start.
            let router =
                functions::query_router(s3.clone(), Default::default(), &Default::default())
                    .unwrap();
            let (cold, body) = query(&router, sql).await;
            let mut warm = Vec::new();
            for _ in 1..runs {
                warm.push(query(&router, sql).await.0);
            }
            warm.sort();
            let rows = serde_json::from_str::<Vec<serde_json::Value>>(&body).map_or(0, |v| v.len());
            println!(
                "{name:36} {:9.1} {:9.1}  {rows}",
                ms(cold),
                ms(warm[warm.len() / 2])
            );
        }
    });
}
