//! Compaction at scale: peak memory and messages/s per core for one hour of
//! N messages, written the way `hepop serve` writes them.
//!
//!   cargo bench -p lake --bench compaction -- generate <dir> <messages>
//!   cargo bench -p lake --bench compaction -- compact <dir> [memory MiB]
//!
//! Run each step as its own process (bench/compaction.sh does): the peak
//! RSS printed by `compact` is then the compactor's alone.
use std::sync::Arc;
use std::time::{Duration, Instant};

use hep::sample::Call;
use lake::compact::{CompactionConfig, Sweep, run};
use lake::paths::MICROS_PER_HOUR;
use lake::writer::{WriteBuffer, WriterConfig};
use object_store::ObjectStore;

// The allocator `hepop` and the functions use.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The hour written: 2025-11-29T10:00Z.
const HOUR_START: i64 = 1_764_410_400_000_000;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn generate(store: Arc<dyn ObjectStore>, messages: u64) {
    let calls = messages / 10; // 7 SIP, 2 RTCP, 1 log per call
    let step = MICROS_PER_HOUR / calls as i64;
    let mut buf = WriteBuffer::new(WriterConfig {
        max_age: Duration::from_secs(3600),
        ..Default::default()
    });
    let started = Instant::now();
    let (mut files, mut inflight) = (0, tokio::task::JoinSet::new());
    for i in 0..calls {
        for m in Call::new(11, i).all(HOUR_START + i as i64 * step) {
            buf.append(&m);
        }
        if i % 1000 == 999 || i == calls - 1 {
            for f in buf.take_due(Instant::now(), i == calls - 1) {
                while inflight.len() >= 2 {
                    inflight.join_next().await;
                }
                let store = store.clone();
                inflight.spawn(async move { f.write(&store).await.unwrap() });
                files += 1;
            }
        }
    }
    while inflight.join_next().await.is_some() {}
    println!(
        "generated {} messages in {files} files in {:.1} s",
        calls * 10,
        started.elapsed().as_secs_f64()
    );
}

async fn compact(store: Arc<dyn ObjectStore>, memory_mb: u64) {
    let cfg = CompactionConfig {
        close_after: Duration::ZERO,
        grace: Duration::ZERO,
        retention: None,
        memory_bytes: memory_mb << 20,
        ..Default::default()
    };
    cfg.check().unwrap();
    let now = HOUR_START + 2 * MICROS_PER_HOUR;
    let started = Instant::now();
    let (mut rows, mut runs) = (0, 0);
    loop {
        let t = Instant::now();
        let r = run(&store, &cfg, now, Sweep::Full, None).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        runs += 1;
        if r.jobs == 0 {
            break;
        }
        rows += r.rows;
        println!(
            "run {runs}: {} jobs, {} files → {}, {} rows, {:.0} MB → {:.0} MB, {:.1} s, peak RSS so far {:.0} MB",
            r.jobs,
            r.files_in,
            r.files_out,
            r.rows,
            r.bytes_in as f64 / 1e6,
            r.bytes_out as f64 / 1e6,
            t.elapsed().as_secs_f64(),
            peak_rss_mb()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs();
    println!(
        "compacted {rows} rows (incl. rewrites) in {runs} runs, {secs:.1} s wall, {cpu:.1} s CPU: {:.0} rows/s per CPU-second; peak RSS {:.0} MB (budget {memory_mb} MiB)",
        rows as f64 / cpu.max(0.001),
        peak_rss_mb()
    );
}

/// User + system CPU time of this process.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate", dir, n] => rt.block_on(generate(
            lake::store::open(dir).unwrap(),
            n.parse().unwrap(),
        )),
        ["compact", dir, rest @ ..] => rt.block_on(compact(
            lake::store::open(dir).unwrap(),
            rest.first().map_or(512, |m| m.parse().unwrap()),
        )),
        [] => println!(
            "usage: generate <dir> <messages> | compact <dir> [memory MiB] (see bench/compaction.sh)"
        ),
        other => panic!("unknown arguments {other:?}"),
    }
}
