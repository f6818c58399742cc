//! The query set of bench/query-vs-duckdb.sh through the query function's
//! router over LocalStack S3: the lake directory is copied to a new bucket,
//! then each query runs on a fresh router (cold: the first query after
//! start, nothing cached) and again RUNS-1 times (warm: median).
//!
//!   LOCALSTACK_ENDPOINT=http://127.0.0.1:4566 cargo bench -p functions --bench query_s3 -- <lake dir> <queries.json> [runs] [prefix]
//!
//! A query is `{"name", "sql"}` (asked at /query) or `{"name", "path"}` (a
//! GET of that path, such as a call search); `prefix` copies only the
//! objects under it (the tables the queries read). bench/query-vs-duckdb.sh
//! and bench/call-search.sh run it when LOCALSTACK_ENDPOINT is set.
mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use support::{create_bucket, get, localstack, query};

/// The answer to query `q` (see the module's documentation).
async fn answer(router: &web::Router, q: &serde_json::Value) -> (Duration, String) {
    let (t, status, body) = match (q["sql"].as_str(), q["path"].as_str()) {
        (Some(sql), _) => query(router, sql).await,
        (None, Some(path)) => get(router, path).await,
        _ => panic!("a query without sql or path: {q}"),
    };
    assert_eq!(status, 200, "{body}");
    (t, body)
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
        _ => panic!("usage: query_s3 <lake dir> <queries.json> [runs] [prefix]"),
    };
    let runs: usize = args.get(2).map_or(7, |r| r.parse().unwrap());
    let prefix = args
        .get(3)
        .map(|p| object_store::path::Path::from(p.as_str()));
    let queries: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&queries).unwrap()).unwrap();
    let endpoint = localstack();
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
        let objects: Vec<_> = local.list(prefix.as_ref()).try_collect().await.unwrap();
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
            let name = q["name"].as_str().unwrap();
            // A new router is a new engine: nothing cached, as after a cold start.
            let router =
                functions::query_router(s3.clone(), Default::default(), &Default::default())
                    .unwrap();
            let (cold, body) = answer(&router, q).await;
            let mut warm = Vec::new();
            for _ in 1..runs {
                warm.push(answer(&router, q).await.0);
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
