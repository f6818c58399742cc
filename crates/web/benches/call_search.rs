//! A search by caller over days of calls, answered from the call records
//! (`/api/v1/calls` through the router `hepop serve` and the query function
//! use), cold and warm; what building the records costs; and their size
//! beside the SIP rows'. bench/call-search.sh runs the three steps, each its
//! own process:
//!
//!   cargo bench -p web --bench call_search -- generate <dir> <hours> <messages per hour>
//!   cargo bench -p web --bench call_search -- build <dir> <hours>
//!   cargo bench -p web --bench call_search -- search <dir> <hours> <messages per hour>
//!   cargo bench -p web --bench call_search -- emit <hours> <messages per hour> <queries.json>
//!
//! `emit` writes the search as the query function's bench (functions'
//! `query_s3`) asks it over LocalStack S3.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use futures::TryStreamExt;
use hep::sample::Call;
use lake::compact::{CompactionConfig, Sweep, run};
use lake::engine::{QueryEngine, QueryLimits};
use lake::paths::MICROS_PER_HOUR;
use lake::writer::{WriteBuffer, WriterConfig};
use object_store::ObjectStore;
use tower::ServiceExt;
use web::{ApiState, ResponseLimit, router};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The first hour written: 2025-11-01T00:00Z.
const FIRST_HOUR: i64 = 1_761_955_200_000_000;
/// Seven SIP messages per generated call.
const PER_CALL: u64 = 7;

async fn generate(store: Arc<dyn ObjectStore>, hours: i64, per_hour: u64) {
    let calls = per_hour / PER_CALL;
    let step = MICROS_PER_HOUR / calls as i64;
    let started = Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    for h in 0..hours {
        let mut buf = WriteBuffer::new(WriterConfig {
            max_age: Duration::from_secs(3600),
            ..Default::default()
        });
        for i in 0..calls {
            let n = h as u64 * calls + i;
            for m in Call::new(21, n).sip_flow(FIRST_HOUR + h * MICROS_PER_HOUR + i as i64 * step) {
                buf.append(&m);
            }
            if i % 1000 == 999 || i == calls - 1 {
                for f in buf.take_due(Instant::now(), i == calls - 1) {
                    while inflight.len() >= 2 {
                        inflight.join_next().await;
                    }
                    let store = store.clone();
                    inflight.spawn(async move { f.write(&store).await.unwrap() });
                }
            }
        }
    }
    while inflight.join_next().await.is_some() {}
    println!(
        "generated {} calls ({} SIP messages) over {hours} hours in {:.1} s",
        calls * hours as u64,
        calls * hours as u64 * PER_CALL,
        started.elapsed().as_secs_f64()
    );
}

/// When every generated hour's records have settled.
fn settled(hours: i64) -> i64 {
    FIRST_HOUR + (hours + 4) * MICROS_PER_HOUR
}

/// Bytes of the data files under `prefix` (logs and markers left out).
async fn data_bytes(store: &Arc<dyn ObjectStore>, prefix: &str) -> u64 {
    store
        .list(Some(&prefix.into()))
        .try_filter(|m| {
            let name = m.location.as_ref();
            futures::future::ready(name.ends_with(".parquet") && !name.contains("/_"))
        })
        .try_fold(0, |n, m| futures::future::ready(Ok(n + m.size)))
        .await
        .unwrap()
}

async fn build(store: Arc<dyn ObjectStore>, hours: i64) {
    let cfg = CompactionConfig {
        grace: Duration::ZERO,
        retention: None,
        // Room for a build of four hours of a million messages (324 MB of
        // Parquet, 1.46 GB at the peak): the default allows a quarter of it.
        memory_bytes: 2 << 30,
        ..Default::default()
    };
    let (mut built, mut records, mut secs) = (0, 0, 0.0);
    loop {
        let t = Instant::now();
        let r = run(&store, &cfg, settled(hours), Sweep::Full, None).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        println!(
            "run: {} jobs, {} rows merged, {} hours of records built ({} records), {:.1} s",
            r.jobs,
            r.rows,
            r.call_hours_built,
            r.call_records,
            t.elapsed().as_secs_f64()
        );
        secs += t.elapsed().as_secs_f64();
        built += r.call_hours_built;
        records += r.call_records;
        assert_eq!(r.call_hours_too_large, 0, "{r:?}");
        if r.jobs == 0 && r.call_hours_built == 0 {
            break;
        }
    }
    let (sip, calls) = (
        data_bytes(&store, "hep_1").await,
        data_bytes(&store, "calls").await,
    );
    println!(
        "{built} hour builds, {records} records; compaction and records {secs:.1} s; \
         SIP rows {:.1} MB, records {:.2} MB ({:.1} % of the SIP rows)",
        sip as f64 / 1e6,
        calls as f64 / 1e6,
        100.0 * calls as f64 / sip as f64
    );
}

/// The search: one caller from the middle of the span, over all of it.
fn search_uri(hours: i64, per_hour: u64) -> String {
    let calls = per_hour / PER_CALL;
    let caller = Call::new(21, calls * hours as u64 / 2).caller;
    format!(
        "/api/v1/calls?from={}&to={}&caller={}",
        FIRST_HOUR / 1000,
        (FIRST_HOUR + hours * MICROS_PER_HOUR) / 1000,
        caller.replace('+', "%2B")
    )
}

async fn search(store: Arc<dyn ObjectStore>, hours: i64, per_hour: u64) {
    let uri = search_uri(hours, per_hour);
    let app = || {
        let engine = Arc::new(QueryEngine::new(store.clone(), QueryLimits::default()).unwrap());
        router(ApiState {
            engine,
            response_limit: ResponseLimit::Unbounded,
        })
    };
    let ask = |app: axum::Router| {
        let uri = uri.clone();
        async move {
            let t = Instant::now();
            let r = app
                .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            let rows = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
            (
                t.elapsed().as_secs_f64() * 1000.0,
                rows.as_array().unwrap().len(),
            )
        }
    };
    let mut cold = Vec::new();
    for _ in 0..5 {
        cold.push(ask(app()).await);
    }
    let warm_app = app();
    ask(warm_app.clone()).await;
    let mut warm = Vec::new();
    for _ in 0..7 {
        warm.push(ask(warm_app.clone()).await);
    }
    let median = |v: &mut Vec<(f64, usize)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let ((c, n), (w, _)) = (median(&mut cold), median(&mut warm));
    println!(
        "search by caller over {hours} h of {per_hour} msgs/h: cold {c:.1} ms, warm {w:.1} ms (medians of 5 and 7), {n} row(s)"
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open = |dir: &str| lake::store::open(dir).unwrap();
    let num = |s: &str| s.parse::<u64>().expect("a number");
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["generate", dir, hours, per_hour] => {
            rt.block_on(generate(open(dir), num(hours) as i64, num(per_hour)))
        }
        ["build", dir, hours] => rt.block_on(build(open(dir), num(hours) as i64)),
        ["search", dir, hours, per_hour] => {
            rt.block_on(search(open(dir), num(hours) as i64, num(per_hour)))
        }
        ["emit", hours, per_hour, file] => {
            let path = search_uri(num(hours) as i64, num(per_hour));
            let name = format!("search by caller, {hours} h of {per_hour}/h");
            let queries = serde_json::json!([{ "name": name, "path": path }]);
            std::fs::write(file, queries.to_string()).unwrap();
        }
        _ => eprintln!(
            "usage: generate <dir> <hours> <msgs per hour> | build <dir> <hours> | \
             search <dir> <hours> <msgs per hour> | emit <hours> <msgs per hour> <queries.json>"
        ),
    }
}
