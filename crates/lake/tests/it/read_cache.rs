//! What a query reads from the store once its caches are warm, counted by
//! the request recorder: a Call-ID lookup in a compacted hour reads only the
//! pages that can hold the call, and lists nothing. The hour has
//! LOOKUP_HOUR_MESSAGES messages (1 000 000 here; bench/query-vs-duckdb.sh runs
//! it with 10 M in release and docs/PERFORMANCE.md has that figure).
use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use hep::sample::Call;
use lake::compact::{CompactionConfig, Sweep};
use lake::engine::{QueryEngine, QueryLimits};
use lake::paths::MICROS_PER_HOUR;
use lake::writer::{WriteBuffer, WriterConfig};
use object_store::ObjectStore;
use support::{Instrumented, Op};

/// 2025-11-29T10:00Z, as the benchmark.
const HOUR_START: i64 = 1_764_410_400_000_000;
const HOUR: &str = "time >= '2025-11-29T10:00:00Z' AND time < '2025-11-29T11:00:00Z'";

fn messages() -> u64 {
    std::env::var("LOOKUP_HOUR_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// An hour of `n` messages written as `hepop serve` writes them, then compacted.
async fn compacted_hour(store: &Arc<dyn ObjectStore>, n: u64) {
    let calls = n / 10; // 7 SIP, 2 RTCP, 1 log per call
    let step = MICROS_PER_HOUR / calls as i64;
    let mut buf = WriteBuffer::new(WriterConfig {
        max_age: Duration::from_secs(3600),
        ..Default::default()
    });
    for i in 0..calls {
        for m in Call::new(11, i).all(HOUR_START + i as i64 * step) {
            buf.append(&m);
        }
        let last = i == calls - 1;
        if i % 1000 == 999 || last {
            for f in buf.take_due(Instant::now(), last) {
                f.write(store).await.unwrap();
            }
        }
    }
    let cfg = CompactionConfig {
        close_after: Duration::ZERO,
        grace: Duration::ZERO,
        retention: None,
        ..Default::default()
    };
    loop {
        let r = lake::compact::run(
            store,
            &cfg,
            HOUR_START + 2 * MICROS_PER_HOUR,
            Sweep::Full,
            None,
        )
        .await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        if r.jobs == 0 {
            break;
        }
    }
}

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(col), &arrow::datatypes::DataType::Utf8).unwrap();
            c.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_call_id_lookup_reads_a_small_fraction_of_the_hour_and_lists_nothing() {
    let n = messages();
    let dir = tempfile::tempdir().unwrap();
    let inst = Instrumented::new(lake::store::open(dir.path().to_str().unwrap()).unwrap());
    let store: Arc<dyn ObjectStore> = inst.clone();
    compacted_hour(&store, n).await;
    let hour_bytes: u64 = {
        let files: Vec<_> =
            futures::TryStreamExt::try_collect::<Vec<_>>(store.list(Some(&"hep_1".into())))
                .await
                .unwrap();
        files
            .iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
            .map(|m| m.size)
            .sum()
    };

    let engine = QueryEngine::new(
        store.clone(),
        QueryLimits {
            // Long enough that nothing expires during the test.
            listing_ttl: Duration::from_secs(600),
            ..Default::default()
        },
    )
    .unwrap();
    let call = Call::new(11, n / 10 / 2 + 7);
    let call_id = call.call_id.clone();
    let sql = format!("SELECT call_id, method FROM hep_1 WHERE {HOUR} AND call_id = '{call_id}'");
    let star = format!("SELECT * FROM hep_1 WHERE {HOUR} AND call_id = '{call_id}'");

    inst.take_ops();
    inst.take_bytes_read();
    let cold = engine.query(&star).await.unwrap();
    let cold_bytes = inst.take_bytes_read();
    let cold_ops = inst.take_ops();
    let warm = engine.query(&star).await.unwrap();
    let warm_bytes = inst.take_bytes_read();
    let warm_ops = inst.take_ops();

    // The right rows, both times: the call's SIP messages and nothing else.
    let expected = call.sip_flow(HOUR_START).len();
    assert_eq!(cold.num_rows(), expected);
    assert_eq!(warm.num_rows(), expected);
    let r = engine.query(&sql).await.unwrap();
    assert!(strings(&r.batches, 0).iter().all(|c| *c == call_id));
    inst.take_ops();
    inst.take_bytes_read();

    if std::env::var("DEBUG_EXPLAIN").is_ok() {
        let r = engine
            .query(&format!("EXPLAIN ANALYZE {star}"))
            .await
            .unwrap();
        println!(
            "{}",
            arrow::util::pretty::pretty_format_batches(&r.batches).unwrap()
        );
    }
    // Warm: no LIST, no compaction log, no footer or bloom filter read again.
    assert!(
        cold_ops
            .iter()
            .any(|o| matches!(o, Op::List(_) | Op::ListDelim(_))),
        "the cold query lists: {cold_ops:?}"
    );
    assert!(
        warm_ops
            .iter()
            .all(|o| matches!(o, Op::Get(p) if p.ends_with(".parquet"))),
        "a warm lookup only reads data pages: {warm_ops:?}"
    );
    assert!(
        warm_bytes < cold_bytes,
        "warm {warm_bytes} B, cold {cold_bytes} B"
    );
    // A small fraction of the hour: the pages of one call in each column.
    let share = warm_bytes as f64 / hour_bytes as f64;
    println!(
        "{n} messages: hour_1 {hour_bytes} B in Parquet; Call-ID lookup (SELECT *) read cold {cold_bytes} B, warm {warm_bytes} B ({:.3}% of the hour) in {} GETs",
        share * 100.0,
        warm_ops.len()
    );
    assert!(
        warm_bytes < 2 << 20 && share < 0.05,
        "warm lookup read {warm_bytes} B of {hour_bytes} B"
    );
}

async fn count(engine: &QueryEngine) -> i64 {
    let r = engine.query("SELECT count(*) FROM hep_1").await.unwrap();
    r.batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

#[tokio::test]
async fn this_process_s_writes_are_seen_at_once_and_others_within_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let store = lake::store::open(dir.path().to_str().unwrap()).unwrap();
    let engine = QueryEngine::new(
        store.clone(),
        QueryLimits {
            listing_ttl: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .unwrap();
    let watched = engine.watched(store.clone());
    let now = chrono::Utc::now().timestamp_micros();
    let write = |store: Arc<dyn ObjectStore>, call: u64| async move {
        let mut buf = WriteBuffer::new(WriterConfig::default());
        for m in Call::new(5, call).sip_flow(now - 1_000_000) {
            buf.append(&m);
        }
        for f in buf.take_due(Instant::now(), true) {
            f.write(&store).await.unwrap();
        }
    };
    let per_call = Call::new(5, 0).sip_flow(now).len() as i64;

    // The first table appears through the watched store: no waiting.
    write(watched.clone(), 0).await;
    assert_eq!(count(&engine).await, per_call);
    write(watched.clone(), 1).await;
    // The listings this count caches are no older than this.
    let listed_at = Instant::now();
    assert_eq!(count(&engine).await, 2 * per_call);

    // A write elsewhere (the ingest Lambda) is not seen while the listing is
    // cached, and is once the TTL has passed.
    write(store.clone(), 2).await;
    let seen = count(&engine).await;
    if listed_at.elapsed() < Duration::from_secs(1) {
        assert_eq!(seen, 2 * per_call, "cached listing reused within the TTL");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if count(&engine).await == 3 * per_call {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other writer's file never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed_at.elapsed() >= Duration::from_secs(1));
}
