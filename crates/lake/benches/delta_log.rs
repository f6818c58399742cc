//! The size of a Delta table's log after a simulated month at 50 000 msgs/s,
//! as the compactor Lambda's schedule would write it (a run every 10 minutes),
//! for hep_1 (7 of every 10 messages), with the table's real properties
//! (a checkpoint every 50 commits).
//!
//!   cargo bench -p lake --bench delta_log -- [days]
//!
//! No data files are written: each commit holds the add and remove actions a
//! run would (the same constructors `lake::delta` commits with), sized from
//! the figures in docs/PERFORMANCE.md: 55 B a stored SIP message, 16 MiB young
//! outputs, 128 MiB outputs of closed hours, a Kinesis file per shard and 6 s
//! window, of which those under 2 minutes old are published and replaced by
//! the next run.
use std::sync::Arc;
use std::time::Instant;

use lake::delta::{PublicTable, add, remove, time_stats, txn};
use lake::paths::{FileName, Partition};
use object_store::{ObjectMeta, ObjectStore};

const SIP_ROWS_PER_SEC: f64 = 50_000.0 * 0.7;
const BYTES_PER_ROW: f64 = 55.0;
const RUN_SECS: i64 = 600;
const YOUNG_BYTES: f64 = 16.0 * 1048576.0;
const TARGET_BYTES: f64 = 128.0 * 1048576.0;
/// Shards at 50 000 msgs/s of 572 B (one key per 2 MiB/s of raw HEP), each a file per 6 s window.
const SHARDS: i64 = 14;
/// Ingest files younger than this at a run are published as they are, then replaced.
const YOUNG_AFTER_SECS: i64 = 120;

fn meta(p: Partition, name: &FileName, size: u64, at_micros: i64) -> ObjectMeta {
    ObjectMeta {
        location: p.file(name),
        last_modified: chrono::DateTime::from_timestamp_micros(at_micros).unwrap(),
        size,
        e_tag: None,
        version: None,
    }
}

fn dir_size(dir: &std::path::Path) -> (u64, usize, u64, u64) {
    let (mut total, mut files, mut checkpoint, mut commits) = (0, 0, 0, 0);
    let mut newest_checkpoint = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let len = e.metadata().unwrap().len();
        let name = e.file_name().into_string().unwrap();
        total += len;
        files += 1;
        if name.contains(".checkpoint") && name > newest_checkpoint {
            newest_checkpoint = name;
            checkpoint = len;
        } else if name.ends_with(".json") && !name.starts_with('_') {
            commits += len;
        }
    }
    (total, files, checkpoint, commits)
}

#[tokio::main]
async fn main() {
    let days: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = lake::store::open(dir.path().to_str().unwrap()).unwrap();
    let mut table = PublicTable::open(&store, 1).await.unwrap();
    let start = 1_764_547_200_000_000i64; // 2025-12-01T00:00Z
    let runs = days * 86_400 / RUN_SECS;
    let young_per_run =
        (SIP_ROWS_PER_SEC * BYTES_PER_ROW * RUN_SECS as f64 / YOUNG_BYTES).ceil() as i64;
    let rows_per_young = (YOUNG_BYTES / BYTES_PER_ROW) as i64;
    let targets_per_hour = (SIP_ROWS_PER_SEC * BYTES_PER_ROW * 3600.0 / TARGET_BYTES).ceil() as i64;
    let small_per_run = SHARDS * YOUNG_AFTER_SECS / 6;
    let mut published_small: Vec<(Partition, String)> = Vec::new();
    let mut young_of_hour: Vec<(Partition, String)> = Vec::new();
    let (mut actions_total, mut commit_secs) = (0usize, 0f64);
    let began = Instant::now();
    for run in 0..runs {
        let now = start + (run + 1) * RUN_SECS * 1_000_000;
        let now_ms = now / 1000;
        let p = Partition::for_micros(1, now - 1);
        let mut actions = Vec::new();
        // The last run's young ingest files were merged: removed.
        for (q, name) in published_small.drain(..) {
            actions.push(remove(q, &name, now_ms, false));
        }
        // This run's young outputs, and the ingest files too young to merge.
        for i in 0..young_per_run {
            let name = FileName::compacted(&format!("{:016x}{:016x}", now, i), 0);
            let m = meta(p, &name, YOUNG_BYTES as u64, now);
            let range = Some((now - RUN_SECS * 1_000_000, now));
            actions.push(add(p, &m, time_stats(rows_per_young, range), false));
            young_of_hour.push((p, name.to_string()));
        }
        for i in 0..small_per_run {
            let name = FileName::kinesis_batch(
                &format!("shardId-{:012}", i % SHARDS),
                &format!("{}", now + i),
                &format!("{}", now + i),
                now + i,
            );
            let rows = (SIP_ROWS_PER_SEC * 6.0 / SHARDS as f64) as i64;
            let m = meta(p, &name, (rows as f64 * BYTES_PER_ROW) as u64, now);
            actions.push(add(
                p,
                &m,
                time_stats(rows, Some((now - 6_000_000, now))),
                true,
            ));
            published_small.push((p, name.to_string()));
        }
        // Ten minutes after an hour ends, its young outputs become target-size files.
        let closing: std::collections::BTreeSet<Partition> = young_of_hour
            .iter()
            .filter(|(q, _)| q.end_micros() + 600_000_000 <= now)
            .map(|(q, _)| *q)
            .collect();
        for closed in closing {
            let (merged, kept): (Vec<_>, Vec<_>) =
                young_of_hour.drain(..).partition(|(q, _)| *q == closed);
            young_of_hour = kept;
            for (q, name) in merged {
                actions.push(remove(q, &name, now_ms, false));
            }
            for i in 0..targets_per_hour {
                let name = FileName::compacted(&format!("{:016x}{:016x}", now + 1, i), 0);
                let m = meta(closed, &name, TARGET_BYTES as u64, now);
                let rows = (TARGET_BYTES / BYTES_PER_ROW) as i64;
                let range = Some((closed.start_micros(), closed.end_micros() - 1));
                actions.push(add(closed, &m, time_stats(rows, range), false));
            }
            actions.push(txn(closed, 7, now_ms));
        }
        actions.push(txn(p, run % 6 + 1, now_ms));
        actions_total += actions.len();
        let t = Instant::now();
        table.commit_actions(actions).await.unwrap();
        commit_secs += t.elapsed().as_secs_f64();
        if run % 1000 == 999 {
            eprintln!("{} runs, {:.0} s", run + 1, began.elapsed().as_secs_f64());
        }
    }
    let log = dir.path().join("hep_1/_delta_log");
    let (total, files, checkpoint, commits) = dir_size(&log);
    let active = table
        .held()
        .unwrap()
        .values()
        .map(|f| f.len())
        .sum::<usize>();
    let mean_commit = commits as f64 / runs as f64;
    // Kept by the table's properties: the newest checkpoint, and two days of commits.
    let retained = checkpoint as f64 + mean_commit * (2 * 86_400 / RUN_SECS) as f64;
    println!(
        "{days} days at 50 000 msgs/s, hep_1: {runs} commits ({actions_total} actions), {active} files in the table"
    );
    println!(
        "log as simulated (no expiry, all commits kept): {:.1} MB in {files} objects",
        total as f64 / 1e6
    );
    println!(
        "newest checkpoint {:.1} MB; mean commit {:.1} KB; kept with a 2-day log retention: {:.1} MB",
        checkpoint as f64 / 1e6,
        mean_commit / 1e3,
        retained / 1e6
    );
    println!(
        "commit (write + read back): mean {:.1} ms; whole run {:.0} s",
        commit_secs * 1e3 / runs as f64,
        began.elapsed().as_secs_f64()
    );
}
