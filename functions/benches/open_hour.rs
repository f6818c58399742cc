//! The open hour on S3 (LocalStack): as many objects as the ingest function
//! writes at 50 000 msgs/s in 10 minutes or a whole hour, then the default
//! query and a Call-ID lookup through the query function's router, before
//! and after young-file compaction.
//!
//!   LOCALSTACK_ENDPOINT=http://127.0.0.1:4566 cargo bench -p functions --bench open_hour -- [minutes=10]
//!
//! The object count is the real one; each object holds one call (10 messages)
//! instead of a record's ~7 300, so the data is scaled down and the figures
//! measure what object counts cost (listing, footers, bloom filters), not volume.
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use hep::sample::Call;
use lake::compact::{CompactionConfig, Sweep};
use lake::paths::FileName;
use support::{create_bucket, localstack, query};

/// Relay records a second at 50 000 msgs/s: a record closes at 4 MiB of raw HEP (~572 bytes a message).
const RECORDS_PER_SEC: f64 = 50_000.0 / ((4 << 20) as f64 / 572.0);

/// The default query's shape (a count over the last 10 minutes) and a Call-ID
/// lookup, both over the data's last 10 minutes (`from`): the bench runs
/// longer than that, so "now" would leave the window empty.
async fn measure(label: &str, router: &web::Router, call_id: &str, from: &str) {
    for (name, sql) in [
        (
            "count of the last 10 min",
            format!("SELECT count(*) AS n FROM hep_1 WHERE time >= '{from}'"),
        ),
        (
            "Call-ID lookup in the last 10 min",
            format!(
                "SELECT time, method, status FROM hep_1 WHERE call_id = '{call_id}' AND time >= '{from}'"
            ),
        ),
    ] {
        let (first, s1, body) = query(router, &sql).await;
        let body: String = body.chars().take(100).collect();
        let (again, s2, _) = query(router, &sql).await;
        println!(
            "{label}: {name}: first {:.0} ms, again {:.0} ms (HTTP {s1}/{s2}) {body}",
            first.as_secs_f64() * 1e3,
            again.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let minutes: f64 = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .map_or(10.0, |m| m.parse().unwrap());
    let endpoint = localstack();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let bucket = format!("open-hour-{}", chrono::Utc::now().timestamp() % 1_000_000);
        assert!(create_bucket(&endpoint, &bucket).await, "creating bucket {bucket}");
        let store = lake::store::open(&format!("s3://{bucket}/lake")).unwrap();
        let records = (RECORDS_PER_SEC * 60.0 * minutes).round() as u64;
        // Records spread over the last `minutes`, as the ingest function names them.
        let now = chrono::Utc::now().timestamp_micros();
        let span = (minutes * 60e6) as i64;
        let t = Instant::now();
        let written = futures::stream::iter(0..records)
            .map(|k| {
                let store = store.clone();
                async move {
                    let at = now - span + (k as i64 * span) / records as i64;
                    let msgs = Call::new(99, k).all(at);
                    let files = lake::writer::files_named(&msgs, &FileName::kinesis_batch("shardId-000000000000", &format!("{k:056}"), &format!("{k:056}"), k as i64), &lake::rows::default_aleg_headers());
                    for f in &files {
                        f.write(&store).await.unwrap();
                    }
                    files.len()
                }
            })
            .buffer_unordered(32)
            .fold(0, |a, n| async move { a + n })
            .await;
        println!("{minutes} min at 50 000 msgs/s: {records} Kinesis records → {written} objects, written in {:.0} s", t.elapsed().as_secs_f64());
        let router = functions::query_router(store.clone(), Default::default(), &Default::default()).unwrap();
        // Every row written, counted over a fixed range: the same before and after compaction.
        let start = chrono::DateTime::from_timestamp_micros(now - span - 1).unwrap().format("%Y-%m-%dT%H:%M:%S%.6f");
        let all = format!("SELECT count(*) AS n FROM hep_1 WHERE time >= '{start}'");
        let (_, _, before) = query(&router, &all).await;
        println!("rows of hep_1 written: {} SIP messages; counted: {before}", records * 7);
        // A call from the last 10 minutes.
        let call_id = Call::new(99, records - records / 20).call_id;
        let last10 = chrono::DateTime::from_timestamp_micros(now - 600_000_000).unwrap().format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
        measure("before compaction", &router, &call_id, &last10).await;

        let cfg = CompactionConfig { young_after: Duration::ZERO, grace: Duration::ZERO, retention: None, ..Default::default() };
        let t = Instant::now();
        let mut jobs = 0;
        loop {
            let r = lake::compact::run(&store, &cfg, chrono::Utc::now().timestamp_micros(), Sweep::Recent, None).await;
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            jobs += r.jobs;
            if r.jobs == 0 {
                break;
            }
        }
        println!("young-file compaction: {jobs} jobs in {:.0} s", t.elapsed().as_secs_f64());
        measure("after compaction", &router, &call_id, &last10).await;
        let (_, _, after) = query(&router, &all).await;
        println!("rows of hep_1 after compaction: {after}");
        assert_eq!(after, format!("[{{\"n\":{}}}]", records * 7), "every row once after compaction");
        let objects = futures::StreamExt::count(store.list(None)).await;
        println!("objects in the lake after compaction: {objects}");
    });
}
