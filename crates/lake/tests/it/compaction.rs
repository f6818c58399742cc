//! Compaction: every row visible exactly once through any interleaving of
//! writes, compactions, crashes and time; bounded jobs; quarantine; retention.
use crate::support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array};
use hep::HepMessage;
use lake::catalog::list_partition;
use lake::compact::{CompactionConfig, Sweep, finish, plan, run, write_outputs};
use lake::paths::{BundleHour, FileName, MICROS_PER_HOUR, Partition, Quarantined};
use lake::rows::default_aleg_headers;
use lake::spans::Frontier;
use lake::writer::{BUNDLE_MAX_ROWS, files_bundled_up_to, files_named};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use proptest::prelude::*;
use support::{Instrumented, Op, micros, sip, write as write_server};

pub(crate) const SHARD: &str = "shardId-000000000000";
/// The shard of files named per record (the first ingest): not the model's stream.
const LEGACY_SHARD: &str = "shardId-000000000009";

/// A SIP message identified by its capture id.
pub(crate) fn msg(id: i64, time: i64) -> HepMessage {
    let mut m = sip(id as usize / 7, id as usize % 7, time);
    m.capture_id = id as u32;
    m
}

/// Writes `msgs` as Kinesis record `seq` would be: the name is the record's identity.
async fn write_record(store: &Arc<dyn ObjectStore>, seq: u64, msgs: &[HepMessage]) {
    for f in files_named(
        msgs,
        &FileName::kinesis(LEGACY_SHARD, &seq.to_string()),
        &default_aleg_headers(),
    ) {
        f.write(store).await.unwrap();
    }
}

/// Capture ids of every row a reader sees in `p`, sorted (duplicates kept).
pub(crate) async fn visible_ids(store: &Arc<dyn ObjectStore>, p: Partition) -> Vec<i64> {
    let l = list_partition(store, p).await.unwrap();
    let mut ids = Vec::new();
    for f in l.visible() {
        for b in lake::parquet_io::read_table_rows(store, &f.location, p.hep_type)
            .await
            .unwrap()
        {
            let c = b
                .column(b.schema().index_of("capture_id").unwrap())
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone();
            ids.extend(c.values().iter().copied());
        }
    }
    ids.sort_unstable();
    ids
}

pub(crate) fn capture_ids(batches: &[arrow::array::RecordBatch]) -> Vec<i64> {
    let mut ids = Vec::new();
    for b in batches {
        let c = b.column(b.schema().index_of("capture_id").unwrap());
        ids.extend(
            c.as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .iter()
                .copied(),
        );
    }
    ids
}

/// The rows of a table's Delta snapshot, as delta-rs lists its files
/// (empty when there is no table yet).
pub(crate) async fn delta_ids(store: &Arc<dyn ObjectStore>, hep_type: u8) -> Vec<i64> {
    let Some(t) = lake::delta::PublicTable::load(store, hep_type)
        .await
        .unwrap()
    else {
        return vec![];
    };
    let mut ids = Vec::new();
    for (p, files) in t.held().unwrap() {
        for name in files.keys() {
            let path = p.file(&FileName::parse(name).unwrap());
            let rows = lake::parquet_io::read_table_rows(store, &path, hep_type)
                .await
                .unwrap();
            ids.extend(capture_ids(&rows));
        }
    }
    ids.sort_unstable();
    ids
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(crate) fn instrumented() -> (Arc<Instrumented>, Arc<dyn ObjectStore>) {
    let inst = Instrumented::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = inst.clone();
    (inst, store)
}

pub(crate) fn on_disk() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = lake::store::open(dir.path().to_str().unwrap()).unwrap();
    (dir, store)
}

/// Hours `base` and the next, three small files each.
async fn two_hours_of_small_files(
    store: &Arc<dyn ObjectStore>,
    base: i64,
) -> (Partition, Partition) {
    let (p, q) = (
        Partition::for_micros(1, base),
        Partition::for_micros(1, base + MICROS_PER_HOUR),
    );
    for part in [p, q] {
        for f in 0..3 {
            let msgs: Vec<_> = (0..10)
                .map(|i| msg(f * 100 + i, part.start_micros() + i))
                .collect();
            write_server(store, &msgs).await;
        }
    }
    (p, q)
}

pub(crate) fn no_retention() -> CompactionConfig {
    CompactionConfig {
        retention: None,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_and_keeps_every_row_once() {
    let (_dir, store) = on_disk();
    let base = micros("2025-02-08T19:00:00");
    let p = Partition::for_micros(1, base);
    let mut expected = Vec::new();
    for f in 0..12 {
        let msgs: Vec<_> = (0..20)
            .map(|i| msg(f * 100 + i, base + (f * 20 + i) * 1_000_000))
            .collect();
        expected.extend(msgs.iter().map(|m| m.capture_id as i64));
        write_server(&store, &msgs).await;
    }
    expected.sort_unstable();
    let cfg = CompactionConfig {
        target_file_bytes: 64 << 20,
        ..no_retention()
    };
    let t = now();
    let r = run(&store, &cfg, t, Sweep::Full, None).await;
    assert_eq!(
        (r.jobs, r.files_in, r.files_out, r.rows, r.errors.len()),
        (1, 12, 1, 240, 0)
    );
    let l = list_partition(&store, p).await.unwrap();
    assert_eq!(
        (l.files.len(), l.visible().len()),
        (13, 1),
        "inputs kept for the grace period, not visible"
    );
    assert_eq!(visible_ids(&store, p).await, expected);
    // Again within the grace period: nothing to do, nothing deleted.
    let r = run(&store, &cfg, t, Sweep::Full, None).await;
    assert_eq!((r.jobs, r.deleted), (0, 0));
    // After it, the inputs go. The grace runs from the commit, which a loaded
    // machine makes seconds after `t`: well past it, not one second.
    let r = run(&store, &cfg, t + 600_000_000, Sweep::Full, None).await;
    assert_eq!((r.jobs, r.deleted), (0, 12));
    assert_eq!(list_partition(&store, p).await.unwrap().files.len(), 1);
    assert_eq!(visible_ids(&store, p).await, expected);
}

/// The case: a compaction writes a full output and a small one; a late call
/// arrives; the next compaction merges the small output with it. Every row stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_after_a_split_compaction_keeps_every_row() {
    let (_dir, store) = on_disk();
    let base = micros("2025-05-01T10:00:00");
    let p = Partition::for_micros(1, base);
    for f in 0..7 {
        let msgs: Vec<_> = (0..3000)
            .map(|i| msg(f * 3000 + i, base + (f * 3000 + i) * 100_000))
            .collect();
        write_server(&store, &msgs).await;
    }
    let cfg = CompactionConfig {
        target_file_bytes: 600_000,
        grace: Duration::ZERO,
        ..no_retention()
    };
    let t = now();
    let r = run(&store, &cfg, t, Sweep::Full, None).await;
    assert!(r.files_out >= 2, "{r:?}");
    assert_eq!(visible_ids(&store, p).await.len(), 21_000);
    let l = list_partition(&store, p).await.unwrap();
    assert!(
        l.visible()
            .iter()
            .any(|f| f.size < cfg.target_file_bytes / 2),
        "a small output to merge again: {:?}",
        l.visible().iter().map(|f| f.size).collect::<Vec<_>>()
    );

    write_server(
        &store,
        &(0..7)
            .map(|i| msg(100_000 + i, base + 10 + i))
            .collect::<Vec<_>>(),
    )
    .await;
    let r = run(&store, &cfg, t, Sweep::Full, None).await;
    assert!(r.jobs >= 1 && r.errors.is_empty(), "{r:?}");
    let ids = visible_ids(&store, p).await;
    assert_eq!(ids.len(), 21_007);
    let mut expected: Vec<i64> = (0..21_000).chain(100_000..100_007).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_store_write_leaves_every_row_once() {
    let base = micros("2025-03-01T10:00:00");
    let p = Partition::for_micros(1, base);
    let cfg = CompactionConfig {
        target_file_bytes: 1 << 20,
        grace: Duration::ZERO,
        ..no_retention()
    };
    let mut crash_at = 0;
    loop {
        let (inst, store) = instrumented();
        for f in 0..6 {
            write_record(
                &store,
                f,
                &(0..30)
                    .map(|i| msg(f as i64 * 100 + i, base + i))
                    .collect::<Vec<_>>(),
            )
            .await;
        }
        let expected = visible_ids(&store, p).await;
        assert_eq!(expected.len(), 180);
        inst.fail_at(crash_at);
        let r = run(&store, &cfg, now(), Sweep::Full, None).await;
        let writes = inst.writes();
        inst.fail_at(usize::MAX);
        assert_eq!(
            visible_ids(&store, p).await,
            expected,
            "after a crash at write {crash_at}"
        );
        // Recovery, with abandoned outputs old enough to go.
        for _ in 0..4 {
            let r = run(&store, &cfg, now() + 2 * MICROS_PER_HOUR, Sweep::Full, None).await;
            assert!(r.errors.is_empty(), "{r:?}");
            assert_eq!(
                visible_ids(&store, p).await,
                expected,
                "recovering from a crash at write {crash_at}"
            );
        }
        let l = list_partition(&store, p).await.unwrap();
        assert_eq!(
            l.files.len(),
            l.visible().len(),
            "nothing invisible left behind (crash at {crash_at})"
        );
        if r.errors.is_empty() {
            assert!(crash_at >= writes, "a failed write must be reported");
            break;
        }
        crash_at += 1;
    }
    assert!(
        crash_at >= 5,
        "outputs, log entry and deletes were all crash-tested ({crash_at} writes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_record_written_after_compaction_stays_invisible() {
    let (_inst, store) = instrumented();
    let base = micros("2025-04-01T08:00:00");
    let p = Partition::for_micros(1, base);
    let record = |k: i64| {
        (0..7)
            .map(|s| msg(k * 10 + s, base + k * 1000 + s))
            .collect::<Vec<_>>()
    };
    for k in 0..3 {
        write_record(&store, k as u64, &record(k)).await;
    }
    let cfg = CompactionConfig {
        target_file_bytes: 64 << 20,
        grace: Duration::ZERO,
        ..no_retention()
    };
    let t = now();
    run(&store, &cfg, t, Sweep::Full, None).await;
    write_record(&store, 1, &record(1)).await;
    assert_eq!(
        visible_ids(&store, p).await.len(),
        21,
        "the rewritten record is still retired"
    );
    // More data, a second compaction over the first one's output, and more late retries.
    write_record(&store, 3, &record(3)).await;
    let r = run(&store, &cfg, t, Sweep::Full, None).await;
    assert_eq!(r.jobs, 1, "{r:?}");
    write_record(&store, 0, &record(0)).await;
    write_record(&store, 3, &record(3)).await;
    assert_eq!(visible_ids(&store, p).await.len(), 28);
    // Clean-up removes the stray copies.
    run(&store, &cfg, now(), Sweep::Full, None).await;
    let l = list_partition(&store, p).await.unwrap();
    assert_eq!(l.files.len(), 1, "{:?}", l.files);
    assert_eq!(
        l.log.len(),
        1,
        "older log entries go once the newest is past its grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compactors_never_commit_the_same_rows_twice() {
    let (_inst, store) = instrumented();
    let base = micros("2025-06-01T00:00:00");
    let p = Partition::for_micros(1, base);
    for k in 0..8 {
        write_record(
            &store,
            k,
            &(0..10)
                .map(|i| msg(k as i64 * 100 + i, base + i))
                .collect::<Vec<_>>(),
        )
        .await;
    }
    let expected = visible_ids(&store, p).await;
    let cfg = no_retention();
    let t = now();
    // Both plan from the same listing and merge; the first to commit wins.
    let l = list_partition(&store, p).await.unwrap();
    let (a, b) = (
        plan(&l, &cfg, t, &Frontier::default()).remove(0),
        plan(&l, &cfg, t, &Frontier::default()).remove(0),
    );
    let ma = write_outputs(&store, &a, &cfg, t).await.unwrap();
    let mb = write_outputs(&store, &b, &cfg, t).await.unwrap();
    assert!(finish(&store, &mb, &cfg, t, None).await.unwrap().is_some());
    assert_eq!(visible_ids(&store, p).await, expected);
    assert!(
        finish(&store, &ma, &cfg, t, Some(&l.snapshot))
            .await
            .unwrap()
            .is_none(),
        "overtaken"
    );
    assert_eq!(visible_ids(&store, p).await, expected);
    for (name, _) in &ma.outputs {
        assert!(
            store.head(&p.file(name)).await.is_err(),
            "the loser's outputs are discarded"
        );
    }
    // Whole runs at once, on fresh data.
    for k in 8..20 {
        write_record(
            &store,
            k,
            &(0..10)
                .map(|i| msg(k as i64 * 100 + i, base + i))
                .collect::<Vec<_>>(),
        )
        .await;
    }
    let expected = visible_ids(&store, p).await;
    let cfg = CompactionConfig {
        max_job_files: 3,
        ..cfg
    };
    let (ra, rb) = tokio::join!(
        run(&store, &cfg, t, Sweep::Full, None),
        run(&store, &cfg, t, Sweep::Full, None)
    );
    assert!(
        ra.errors.is_empty() && rb.errors.is_empty(),
        "{ra:?} {rb:?}"
    );
    assert!(ra.jobs + rb.jobs > 0);
    assert_eq!(visible_ids(&store, p).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_hour_converges_over_bounded_jobs() {
    let (_dir, store) = on_disk();
    let base = micros("2025-07-01T12:00:00");
    let p = Partition::for_micros(1, base);
    for f in 0..20 {
        write_server(
            &store,
            &(0..500)
                .map(|i| msg(f * 1000 + i, base + f * 1000 + i))
                .collect::<Vec<_>>(),
        )
        .await;
    }
    let expected = visible_ids(&store, p).await;
    let total: u64 = list_partition(&store, p)
        .await
        .unwrap()
        .files
        .iter()
        .map(|f| f.size)
        .sum();
    // Jobs of at most 4 files and half the bytes.
    let bound = total / 2;
    let cfg = CompactionConfig {
        max_job_files: 4,
        max_job_bytes: bound,
        target_file_bytes: bound,
        grace: Duration::ZERO,
        ..no_retention()
    };
    let mut runs = 0;
    loop {
        let r = run(&store, &cfg, now(), Sweep::Full, None).await;
        assert!(r.errors.is_empty(), "{r:?}");
        assert!(
            r.files_in <= r.jobs * 4 && r.bytes_in <= r.jobs as u64 * bound,
            "{r:?}"
        );
        assert_eq!(visible_ids(&store, p).await, expected);
        runs += 1;
        if r.jobs == 0 {
            break;
        }
        assert!(runs < 10, "does not converge");
    }
    let small = list_partition(&store, p)
        .await
        .unwrap()
        .visible()
        .iter()
        .filter(|f| f.size < bound / 2)
        .count();
    assert!(small <= 1, "no two small files left to merge");
    assert!(runs >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_hour_merges_settled_young_files() {
    let (_dir, store) = on_disk();
    let t = now();
    let p = Partition::for_micros(1, t);
    for f in 0..5 {
        write_server(
            &store,
            &(0..50).map(|i| msg(f * 100 + i, t - i)).collect::<Vec<_>>(),
        )
        .await;
    }
    // Not settled yet: nothing happens.
    let cfg = no_retention();
    let r = run(&store, &cfg, now(), Sweep::Recent, None).await;
    let expected = visible_ids(&store, p).await;
    // Same partition unless the hour just turned; then the first run saw the new one.
    if Partition::for_micros(1, now()) == p {
        assert_eq!(r.jobs, 0);
    }
    let later = now() + cfg.young_after.as_micros() as i64 + 1;
    let r = run(&store, &cfg, later, Sweep::Recent, None).await;
    assert_eq!((r.jobs, r.files_in), (1, 5), "{r:?}");
    let l = list_partition(&store, p).await.unwrap();
    assert_eq!(l.visible().len(), 1);
    assert!(
        FileName::parse(l.visible()[0].location.filename().unwrap())
            .unwrap()
            .job_id()
            .is_some()
    );
    assert_eq!(visible_ids(&store, p).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_is_quarantined_and_blocks_nothing() {
    let (_dir, store) = on_disk();
    let base = micros("2025-08-01T05:00:00");
    let (p, q) = two_hours_of_small_files(&store, base).await;
    let bad = p.file(&FileName::Server {
        writer: "broken".into(),
        micros: 1,
        seq: 1,
    });
    store
        .put(&bad, b"PAR1 this is not parquet".to_vec().into())
        .await
        .unwrap();
    let cfg = CompactionConfig {
        grace: Duration::ZERO,
        ..no_retention()
    };
    let r = run(&store, &cfg, now(), Sweep::Full, None).await;
    assert_eq!(r.quarantined, 1, "{r:?}");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.jobs, 2, "both hours compacted");
    assert!(store.head(&bad).await.is_err(), "moved away");
    let kept = Quarantined::LakeFile {
        original: bad.clone(),
        reason: false,
    }
    .path();
    assert_eq!(
        store
            .get(&kept)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"PAR1 this is not parquet"
    );
    let why = store
        .get(
            &Quarantined::LakeFile {
                original: bad,
                reason: true,
            }
            .path(),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(!why.is_empty());
    assert_eq!(visible_ids(&store, p).await.len(), 30);
    assert_eq!(list_partition(&store, q).await.unwrap().visible().len(), 1);
    let r = run(&store, &cfg, now(), Sweep::Full, None).await;
    assert_eq!((r.quarantined, r.errors.len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_partition_is_reported_and_the_run_goes_on() {
    let (_dir, store) = on_disk();
    let base = micros("2025-08-02T05:00:00");
    let (p, q) = two_hours_of_small_files(&store, base).await;
    // A log entry nobody can parse: that hour cannot be read safely, the next one can.
    store
        .put(
            &p.marker(&lake::paths::MarkerName::Log(1)),
            b"{not json".to_vec().into(),
        )
        .await
        .unwrap();
    let r = run(&store, &no_retention(), now(), Sweep::Full, None).await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    let e = &r.errors[0];
    assert_eq!(
        (e.step, e.of.as_str()),
        (lake::compact::Step::Compaction, p.to_string().as_str())
    );
    let json = serde_json::to_value(e).unwrap();
    assert_eq!(json["step"], "compaction", "{json}");
    assert_eq!(r.jobs, 1);
    assert_eq!(list_partition(&store, q).await.unwrap().visible().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_whole_expired_hours_only() {
    let (_dir, store) = on_disk();
    let t = now();
    let day = 24 * MICROS_PER_HOUR;
    let cfg = CompactionConfig {
        retention: Some(Duration::from_secs(2 * 86_400)),
        grace: Duration::ZERO,
        ..Default::default()
    };
    // An hour of each of the last 4 days, compacted (so each has a log), and one in hep_5.
    for d in 0..4 {
        let start = t - d * day - 3 * MICROS_PER_HOUR;
        for f in 0..2 {
            write_server(&store, &[msg(d * 10 + f, start)]).await;
        }
    }
    let mut rtcp = sip(1, 1, t - 3 * day);
    rtcp.proto_type = 5;
    write_server(&store, &[rtcp]).await;
    let keep = CompactionConfig {
        retention: None,
        ..cfg.clone()
    };
    run(&store, &keep, t, Sweep::Full, None).await;
    let r = run(&store, &cfg, t, Sweep::Full, None).await;
    // Days 2 and 3 of hep_1, day 3 of hep_5.
    assert_eq!(r.expired_hours, 3, "{r:?}");
    assert!(r.expired_objects >= 5, "{r:?}");
    for d in 0..4 {
        let p = Partition::for_micros(1, t - d * day - 3 * MICROS_PER_HOUR);
        let files = store.list_with_delimiter(Some(&p.prefix())).await.unwrap();
        assert_eq!(
            files.objects.is_empty() && files.common_prefixes.is_empty(),
            d >= 2,
            "day {d}"
        );
    }
    assert_eq!(
        visible_ids(&store, Partition::for_micros(1, t - 3 * MICROS_PER_HOUR))
            .await
            .len(),
        2
    );
}

/// What one ingest attempt does, as Lambda's Kinesis event source mapping sees it.
#[derive(Debug, Clone, Copy)]
enum Attempt {
    /// Writes every file and answers: the checkpoint moves past the batch.
    Ok,
    /// Writes the first `n` of its files, then fails: the batch comes again from the checkpoint.
    Fail(u8),
    /// Writes every file, but its answer is lost (a timeout): treated as a failure.
    AnswerLost,
}

/// One step of the model: what a producer, the mapping, a compactor or the clock does.
#[derive(Debug, Clone)]
enum Step {
    /// `n` more records are put to the shard.
    Put(u8),
    /// The mapping hands the ingest the next `len` records from the checkpoint:
    /// the same batch again, a bisected one, a longer one, or one starting in
    /// the middle of an earlier one.
    /// Its tables' rows of an hour go into one bundle, or a file each.
    Deliver {
        len: u8,
        attempt: Attempt,
        bundle: bool,
    },
    /// A record of the first ingest (one file per record) is written, or written again.
    Record(u8),
    /// A server writer cuts a file of new rows.
    ServerFile(u8),
    /// A whole compaction run; from the `crash`-th store write on, every write fails.
    Run {
        target: u32,
        files: u8,
        crash: Option<u8>,
    },
    /// Another compactor merges a job now...
    Start { target: u32 },
    /// ...and commits it later.
    Commit,
    /// Time passes: a second, a grace period, an hour (closing it), an orphan timeout.
    Advance(u8),
}

fn step() -> impl Strategy<Value = Step> {
    let attempt = prop_oneof![
        3 => Just(Attempt::Ok),
        2 => (0u8..3).prop_map(Attempt::Fail),
        1 => Just(Attempt::AnswerLost),
    ];
    prop_oneof![
        2 => (1u8..6).prop_map(Step::Put),
        4 => (1u8..8, attempt, any::<bool>()).prop_map(|(len, attempt, bundle)| Step::Deliver { len, attempt, bundle }),
        1 => (0u8..10).prop_map(Step::Record),
        1 => (1u8..20).prop_map(Step::ServerFile),
        3 => (1000u32..60_000, 2u8..6, proptest::option::weighted(0.4, 0u8..12)).prop_map(|(target, files, crash)| Step::Run { target, files, crash }),
        1 => (1000u32..60_000).prop_map(|target| Step::Start { target }),
        1 => Just(Step::Commit),
        2 => (0u8..4).prop_map(Step::Advance),
    ]
}

/// Rows of a record of the first ingest (ids 10 000 on), all in the first hour.
fn record_rows(k: u8, base: i64) -> Vec<HepMessage> {
    (0..(3 + k as i64 % 4))
        .map(|j| msg(10_000 + k as i64 * 100 + j, base + k as i64 * 7 + j))
        .collect()
}

/// The model's tables: a stream record's rows go to any of them.
const TYPES: [u8; 3] = [1, 5, 100];

/// Rows of stream record `i` (ids 100 000 on), split over the model's two
/// hours and three tables.
fn stream_rows(i: usize, base: i64) -> Vec<HepMessage> {
    (0..(1 + i as i64 % 4))
        .map(|j| {
            let hour = if (i as i64 + j) % 2 == 0 {
                0
            } else {
                MICROS_PER_HOUR
            };
            let mut m = msg(100_000 + i as i64 * 10 + j, base + hour + i as i64 * 5 + j);
            m.proto_type = TYPES[(i + j as usize / 2) % 3];
            m
        })
        .collect()
}

/// Stream record `i`'s sequence number: sparse, and growing in digits (compared as numbers).
fn sequence(i: usize) -> String {
    (9 + i as u64 * 13).to_string()
}

async fn check_model(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let (inst, store) = instrumented();
    let t0 = now();
    let p = Partition::for_micros(1, t0);
    let hours: Vec<Partition> = TYPES
        .iter()
        .flat_map(|&hep_type| [p.hour, p.hour + 1].map(|hour| Partition { hep_type, hour }))
        .collect();
    let base = p.start_micros() + 1;
    let mut clock = t0;
    // Rows that must be seen exactly once: server files, first-ingest records, acknowledged stream records.
    let mut must: BTreeSet<i64> = BTreeSet::new();
    // Rows that may be seen (at most once): those, and rows of records delivered but not yet acknowledged.
    let mut may: BTreeSet<i64> = BTreeSet::new();
    let (mut put, mut checkpoint) = (0usize, 0usize);
    let mut next_id = 0i64;
    let mut pending = None;
    let cfg = |target: u32, files: u8| CompactionConfig {
        target_file_bytes: target as u64,
        young_file_bytes: target as u64 / 2 + 1024,
        young_after: Duration::ZERO,
        max_job_files: files as usize,
        retention: None,
        ..Default::default()
    };
    let deliver = |from: usize, to: usize, attempt: Attempt, started: i64, bundle: bool| {
        let store = store.clone();
        async move {
            let rows: Vec<HepMessage> = (from..to).flat_map(|i| stream_rows(i, base)).collect();
            let name = FileName::kinesis_batch(SHARD, &sequence(from), &sequence(to - 1), started);
            let bundle_max_rows = if bundle { BUNDLE_MAX_ROWS } else { 0 };
            let files = files_bundled_up_to(&rows, &name, &default_aleg_headers(), bundle_max_rows);
            let n = match attempt {
                Attempt::Fail(n) => (n as usize).min(files.len()),
                Attempt::Ok | Attempt::AnswerLost => files.len(),
            };
            for f in &files[..n] {
                f.write(&store).await.unwrap();
            }
            (rows, n > 0)
        }
    };
    // First sequence numbers of attempts that left a file: an attempt whose
    // last record is below one of them is settled (the checkpoint passed it).
    let mut observed_firsts: Vec<u64> = Vec::new();
    // Whether the step just run was a compaction run that reported no error.
    let mut clean_run;
    let steps_run = steps.iter().cloned().chain(
        // Finally the mapping delivers everything left, and all is acknowledged.
        std::iter::once(Step::Deliver {
            len: u8::MAX,
            attempt: Attempt::Ok,
            bundle: true,
        }),
    );
    for (i, s) in steps_run.enumerate() {
        clean_run = false;
        match &s {
            Step::Put(n) => put += *n as usize,
            Step::Deliver {
                len,
                attempt,
                bundle,
            } => {
                let to = put.min(checkpoint + *len as usize);
                if to > checkpoint {
                    clock += 1; // each attempt starts after the one before
                    let (rows, left_a_file) =
                        deliver(checkpoint, to, *attempt, clock, *bundle).await;
                    if left_a_file {
                        observed_firsts.push(sequence(checkpoint).parse().unwrap());
                    }
                    may.extend(rows.iter().map(|m| m.capture_id as i64));
                    if let Attempt::Ok = attempt {
                        must.extend(rows.iter().map(|m| m.capture_id as i64));
                        checkpoint = to;
                    }
                }
            }
            Step::Record(k) => {
                let rows = record_rows(*k, base);
                must.extend(rows.iter().map(|m| m.capture_id as i64));
                may.extend(rows.iter().map(|m| m.capture_id as i64));
                write_record(&store, *k as u64, &rows).await;
            }
            Step::ServerFile(n) => {
                let rows: Vec<_> = (0..*n as i64).map(|j| msg(next_id + j, base + j)).collect();
                next_id += *n as i64;
                must.extend(rows.iter().map(|m| m.capture_id as i64));
                may.extend(rows.iter().map(|m| m.capture_id as i64));
                write_server(&store, &rows).await;
            }
            Step::Run {
                target,
                files,
                crash,
            } => {
                if let Some(c) = crash {
                    inst.fail_at(*c as usize);
                }
                let r = run(&store, &cfg(*target, *files), clock, Sweep::Full, None).await;
                inst.fail_at(usize::MAX);
                clean_run = r.errors.is_empty();
            }
            Step::Start { target } => {
                let c = cfg(*target, 4);
                let mut frontier = Frontier::default();
                let mut listings = Vec::new();
                for &h in &hours {
                    let l = list_partition(&store, h).await.unwrap();
                    l.observe(&mut frontier);
                    listings.push(l);
                }
                let planned = listings.iter().find_map(|l| {
                    plan(l, &c, clock, &frontier)
                        .into_iter()
                        .next()
                        .map(|j| (j, l))
                });
                if let Some((job, l)) = planned {
                    pending = Some((
                        write_outputs(&store, &job, &c, clock).await.unwrap(),
                        c,
                        l.snapshot.clone(),
                    ));
                }
            }
            Step::Commit => {
                if let Some((merged, c, planned_from)) = pending.take() {
                    // Half the time the committer remembers the entry it planned from (the fast path).
                    let base = (merged.rows % 2 == 0).then_some(planned_from);
                    finish(&store, &merged, &c, clock, base.as_ref())
                        .await
                        .unwrap();
                }
            }
            Step::Advance(a) => {
                let d = cfg(1000, 2);
                clock += match a {
                    0 => 1_000_000,
                    1 => d.grace.as_micros() as i64 + 1,
                    2 => MICROS_PER_HOUR,
                    _ => d.orphan_after.as_micros() as i64 + 1,
                };
            }
        }
        let mut got = Vec::new();
        for &h in &hours {
            got.extend(visible_ids(&store, h).await);
        }
        got.sort_unstable();
        let seen: BTreeSet<i64> = got.iter().copied().collect();
        prop_assert_eq!(
            seen.len(),
            got.len(),
            "a row seen twice after step {} {:?} of {:?}",
            i,
            s,
            steps
        );
        prop_assert!(
            seen.is_subset(&may),
            "a row never written seen after step {} {:?} of {:?}",
            i,
            s,
            steps
        );
        let missing: Vec<_> = must.difference(&seen).collect();
        prop_assert!(
            missing.is_empty(),
            "rows {:?} lost after step {} {:?} of {:?}",
            missing,
            i,
            s,
            steps
        );
        // Delta readers: never a row twice, never one HEPop does not serve.
        let mut public = Vec::new();
        for t in TYPES {
            public.extend(delta_ids(&store, t).await);
        }
        public.sort_unstable();
        let public_set: BTreeSet<i64> = public.iter().copied().collect();
        prop_assert_eq!(
            public_set.len(),
            public.len(),
            "a row twice in Delta after step {} {:?} of {:?}",
            i,
            s,
            steps
        );
        prop_assert!(
            public_set.is_subset(&seen),
            "Delta holds rows HEPop does not serve after step {} {:?} of {:?}",
            i,
            s,
            steps
        );
        if clean_run {
            // Right after a run: exactly HEPop's rows less those inside the lag.
            let settled = |name: &FileName| match name {
                FileName::KinesisBatch { last, started, .. } => {
                    let last: u64 = last.parse().unwrap();
                    *started <= clock - cfg(0, 0).kinesis_retry_horizon.as_micros() as i64
                        || observed_firsts.iter().any(|&first| first > last)
                }
                _ => true,
            };
            let mut lagging = BTreeSet::new();
            for &h in &hours {
                for f in list_partition(&store, h).await.unwrap().visible() {
                    let name = FileName::parse(f.location.filename().unwrap()).unwrap();
                    if BundleHour::parse(&f.location).is_some() || !settled(&name) {
                        let rows =
                            lake::parquet_io::read_table_rows(&store, &f.location, h.hep_type)
                                .await
                                .unwrap();
                        lagging.extend(capture_ids(&rows));
                    }
                }
            }
            let expected: BTreeSet<i64> = seen.difference(&lagging).copied().collect();
            prop_assert_eq!(
                &public_set,
                &expected,
                "Delta is not HEPop's rows less the lag ({:?}) after step {} {:?} of {:?}",
                lagging,
                i,
                s,
                steps
            );
        }
    }
    prop_assert_eq!(checkpoint, put, "the last delivery acknowledges everything");
    // Past the lag (every attempt settled, bundles rewritten): Delta holds exactly HEPop's rows.
    clock += 9 * 24 * MICROS_PER_HOUR;
    for _ in 0..2 {
        let r = run(&store, &cfg(1 << 20, 32), clock, Sweep::Full, None).await;
        prop_assert!(r.errors.is_empty(), "{:?}", r);
        clock += 1_000_000;
    }
    let mut got = Vec::new();
    let mut public = Vec::new();
    for t in TYPES {
        public.extend(delta_ids(&store, t).await);
    }
    for &h in &hours {
        got.extend(visible_ids(&store, h).await);
    }
    got.sort_unstable();
    public.sort_unstable();
    prop_assert_eq!(
        &public,
        &got,
        "Delta and HEPop differ past the lag, after {:?}",
        steps
    );
    prop_assert_eq!(got, must.iter().copied().collect::<Vec<_>>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// After every step of any sequence of writes (server files, Kinesis
    /// batches retried whole, bisected, longer, or from a checkpoint in the
    /// middle, after failures part-way and lost answers), compactions (of any
    /// target size, crashed at any write, overtaken by another compactor), and
    /// clock jumps past grace periods, hours and orphan timeouts, a reader sees
    /// no row twice, every acknowledged row, and nothing never written; once
    /// every record is acknowledged, exactly the rows written. The Delta
    /// tables hold a subset of those rows at every step, exactly them less
    /// the lag after every run, and all of them once every attempt is settled.
    #[test]
    fn every_row_is_visible_exactly_once(steps in proptest::collection::vec(step(), 1..48)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(check_model(steps))?;
    }
}

#[tokio::test]
async fn object_names_come_from_paths() {
    // Files a lake holds are named by lake::paths only: the writer's names parse back.
    let (_dir, store) = on_disk();
    let t = micros("2025-09-09T09:09:09");
    write_server(&store, &[msg(1, t)]).await;
    write_record(&store, 77, &[msg(2, t)]).await;
    let batch = FileName::kinesis_batch(
        SHARD,
        "49590338271490256608559692538361571095921575989136588898",
        "49590338271490256608559692538361571095921575989136588999",
        1_757_408_949_000_000,
    );
    for f in files_named(&[msg(3, t)], &batch, &default_aleg_headers()) {
        f.write(&store).await.unwrap();
    }
    let l = list_partition(&store, Partition::for_micros(1, t))
        .await
        .unwrap();
    let mut kinds: Vec<_> = l
        .files
        .iter()
        .map(|f| FileName::parse(f.location.filename().unwrap()).unwrap())
        .collect();
    kinds.sort();
    assert!(matches!(&kinds[0], FileName::Server { writer, .. } if writer == "hepop"));
    assert_eq!(kinds[1..], [FileName::kinesis(LEGACY_SHARD, "77"), batch]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_memory_budget_merges_fewer_inputs_per_job_and_loses_nothing() {
    let (_dir, store) = on_disk();
    let base = micros("2025-10-01T03:00:00");
    let p = Partition::for_micros(1, base);
    for f in 0..8 {
        write_server(
            &store,
            &(0..50)
                .map(|i| msg(f * 100 + i, base + i))
                .collect::<Vec<_>>(),
        )
        .await;
    }
    let expected = visible_ids(&store, p).await;
    // Each input costs ~4 MiB of decoder state (33 columns): a 16 MiB budget opens two at a time.
    let cfg = CompactionConfig {
        memory_bytes: 16 << 20,
        grace: Duration::ZERO,
        ..no_retention()
    };
    let r = run(&store, &cfg, now(), Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        (r.jobs, r.files_in),
        (4, 8),
        "the plan's one job of 8 went in four jobs of 2: {r:?}"
    );
    assert_eq!(visible_ids(&store, p).await, expected);
}

/// Ingest files are time slices, each sorted by minute, call and time; a
/// call's messages are spread over several slices of several files.
/// Compaction merges every slice as a run of its own: the output is sorted
/// by (minute, call, time) throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_time_slices_merge_into_one_sorted_run() {
    let (_dir, store) = on_disk();
    let base = micros("2025-10-01T05:00:00");
    let p = Partition::for_micros(1, base);
    let calls = 5_000;
    // Step by step: every call's INVITE, then every call's 100 Trying, ...
    for half in 0..2 {
        let msgs: Vec<_> = (0..7 * calls)
            .filter(|id| id % 2 == half)
            .map(|id| msg(id, base + (id % 7) * 20_000_000 + id / 7))
            .collect();
        write_server(&store, &msgs).await;
    }
    for f in list_partition(&store, p).await.unwrap().files {
        let bytes = store.get(&f.location).await.unwrap().bytes().await.unwrap();
        let md = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        assert!(md.num_row_groups() > 1, "several slices in an ingest file");
    }
    let expected = visible_ids(&store, p).await;
    let cfg = CompactionConfig {
        grace: Duration::ZERO,
        ..no_retention()
    };
    let r = run(&store, &cfg, now(), Sweep::Full, None).await;
    assert_eq!(
        (r.jobs, r.files_in, r.files_out, r.errors.len()),
        (1, 2, 1, 0),
        "{r:?}"
    );
    assert_eq!(visible_ids(&store, p).await, expected);
    let out = list_partition(&store, p).await.unwrap().visible()[0]
        .location
        .clone();
    let mut keys = Vec::new();
    for b in lake::parquet_io::read_all(&store, &out).await.unwrap() {
        let call = b.column_by_name("call_id").unwrap().as_string::<i32>();
        let time = b
            .column_by_name("time")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        keys.extend((0..b.num_rows()).map(|i| {
            let t = time.value(i);
            (
                t.div_euclid(lake::schema::SORT_BUCKET_MICROS),
                call.value(i).to_owned(),
                t,
            )
        }));
    }
    assert_eq!(keys.len(), 7 * calls as usize);
    assert!(
        keys.iter()
            .map(|k| k.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1,
        "the calls span several minutes"
    );
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "compaction output sorted by minute, call, then time"
    );
}

/// A file as the first release wrote it: `time_usec` Int32, no `original_time`.
fn first_schema_file(batch: &arrow::array::RecordBatch) -> bytes::Bytes {
    let later = |name: &str| {
        name == lake::schema::ORIGINAL_TIME
            || lake::schema::ADDED_SIP_COLUMNS
                .iter()
                .any(|(n, _)| *n == name)
    };
    let cols: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !later(f.name()))
        .map(|(f, c)| {
            if f.name() == "time_usec" {
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Int32).unwrap();
                (
                    arrow::datatypes::Field::new(
                        f.name(),
                        arrow::datatypes::DataType::Int32,
                        false,
                    ),
                    c,
                )
            } else {
                (f.as_ref().clone(), c.clone())
            }
        })
        .collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(
        cols.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
    ));
    let old = arrow::array::RecordBatch::try_new(
        schema.clone(),
        cols.into_iter().map(|(_, c)| c).collect(),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    w.write(&old).unwrap();
    w.close().unwrap();
    out.into()
}

/// Writes `msgs` as a server file of the first schema (before `original_time`
/// and the correlation columns; `time_usec` Int32).
pub(crate) async fn write_first_schema_file(store: &Arc<dyn ObjectStore>, msgs: &[HepMessage]) {
    let mut buf = lake::writer::WriteBuffer::new(Default::default());
    for m in msgs {
        buf.append(m);
    }
    for f in buf.take_due(std::time::Instant::now(), true) {
        for (_, batch) in &f.tables {
            lake::parquet_io::put(store, &f.path, first_schema_file(batch))
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_the_first_schema_are_queried_and_merged() {
    let (_dir, store) = on_disk();
    let base = (now() / MICROS_PER_HOUR - 3) * MICROS_PER_HOUR;
    let p = Partition::for_micros(1, base);
    let old_msgs: Vec<_> = (0..10).map(|i| msg(i, base + 1000 + i)).collect();
    let old = files_named(
        &old_msgs,
        &FileName::kinesis(SHARD, "1"),
        &default_aleg_headers(),
    )
    .pop()
    .unwrap();
    lake::parquet_io::put(&store, &old.path, first_schema_file(&old.tables[0].1))
        .await
        .unwrap();
    // A new file whose time_usec is past i32's range (HEP carries a u32).
    let mut wide = msg(100, base + 5000);
    wide.time_sec -= 4_000;
    wide.time_usec = 4_000_005_000;
    assert_eq!(Partition::for_micros(1, wide.time_micros()), p);
    write_record(&store, 2, &[wide]).await;

    let engine = lake::engine::QueryEngine::new(store.clone(), Default::default()).unwrap();
    let hour = chrono::DateTime::from_timestamp_micros(base)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let sql = format!(
        "SELECT capture_id, time_usec, original_time IS NULL AS no_original FROM hep_1 \
         WHERE time >= '{hour}' AND time < '{hour}'::timestamp + interval '1 hour' ORDER BY capture_id"
    );
    let rows = |r: lake::engine::QueryResult| {
        let b = arrow::compute::concat_batches(&r.batches[0].schema(), &r.batches).unwrap();
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let usec = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        (0..b.num_rows())
            .map(|i| (ids.value(i), usec.value(i)))
            .collect::<Vec<_>>()
    };
    let mut want: Vec<(i64, i64)> = old_msgs
        .iter()
        .map(|m| (m.capture_id as i64, m.time_usec as i64))
        .collect();
    want.push((100, 4_000_005_000));
    assert_eq!(rows(engine.query(&sql).await.unwrap()), want);

    // As in `hepop serve`: the compactor's writes reach the engine's listing cache.
    let rep = run(
        &engine.watched(store.clone()),
        &no_retention(),
        now(),
        Sweep::Full,
        None,
    )
    .await;
    assert_eq!(
        (rep.files_in, rep.files_out, rep.errors.len()),
        (2, 1, 0),
        "{rep:?}"
    );
    assert_eq!(
        rows(engine.query(&sql).await.unwrap()),
        want,
        "merged into today's schema"
    );
    assert_eq!(visible_ids(&store, p).await.len(), 11);
}

/// A recent run costs one LIST of the tables, one of each table's dates
/// (retention), and one per partition of its hours: no LIST of hour
/// directories (S3 bills LISTs like PUTs, and it runs every few minutes).
/// The hours whose call records settle add, once, a LIST of each of their
/// source hours the run did not list.
#[tokio::test]
async fn a_recent_run_lists_its_hours_directly() {
    let (inst, store) = instrumented();
    let t = now();
    write_server(&store, &[msg(1, t), msg(2, t - MICROS_PER_HOUR)]).await;
    let cfg = CompactionConfig {
        recent_hours: 1,
        ..Default::default()
    };
    inst.take_ops();
    let r = run(&store, &cfg, t, Sweep::Recent, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    let now_hour = t.div_euclid(MICROS_PER_HOUR);
    let settled = lake::calls::last_settled_hour(&cfg.calls(), t);
    let first_source = now_hour - cfg.recent_hours - cfg.call_follow_hours - 2;
    let mut sources: Vec<Partition> = inst
        .take_ops()
        .into_iter()
        .filter_map(|o| match o {
            Op::List(p) => Partition::parse(&p.as_str().into()),
            _ => None,
        })
        .filter(|p| p.hour < now_hour - cfg.recent_hours)
        .collect();
    sources.sort();
    let expected: Vec<Partition> = (first_source..=settled + cfg.call_follow_hours)
        .filter(|h| *h < now_hour - cfg.recent_hours)
        .map(|hour| Partition { hep_type: 1, hour })
        .collect();
    assert_eq!(
        sources, expected,
        "each source hour of the settling records, once"
    );
    // The next run finds them built: it lists what a run always lists.
    let r = run(&store, &cfg, t, Sweep::Recent, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.call_hours_built, 0, "{r:?}");
    let ops = inst.take_ops();
    let delimited: Vec<_> = ops
        .iter()
        .filter(|o| matches!(o, Op::ListDelim(_)))
        .collect();
    let listed = ops
        .iter()
        .filter(|o| matches!(o, Op::List(p) if !p.contains("_delta_log")))
        .count();
    assert_eq!(
        delimited,
        [
            &Op::ListDelim(String::new()),
            &Op::ListDelim("hep_1".into())
        ],
        "the tables, and the dates retention looks at: {ops:?}"
    );
    assert_eq!((listed, r.partitions), (2, 2), "{ops:?}");
    assert_eq!(r.expired_hours, 0);
}

/// A full sweep over a month of hours must not LIST each hour (LISTs are
/// billed like PUTs): one LIST per day finds the hours and their files, and
/// late files in an old hour are still merged.
#[tokio::test]
async fn a_full_sweep_lists_each_day_once() {
    let (inst, store) = instrumented();
    let t = now();
    let hours = 30;
    for k in 0..hours {
        write_server(&store, &[msg(k, t - k * MICROS_PER_HOUR)]).await;
    }
    // Late data: a second small file in an hour long closed.
    let late = t - 20 * MICROS_PER_HOUR;
    write_server(&store, &[msg(100, late)]).await;
    let days: BTreeSet<i64> = (0..hours)
        .map(|k| (t - k * MICROS_PER_HOUR).div_euclid(24 * MICROS_PER_HOUR))
        .collect();
    inst.take_ops();
    let r = run(&store, &CompactionConfig::default(), t, Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    let ops = inst.take_ops();
    // The Delta log's own LISTs are delta-rs's, per table not per hour (docs/COST.md).
    let listed: Vec<_> = ops
        .iter()
        .filter(|o| matches!(o, Op::List(p) if !p.contains("_delta_log")))
        .collect();
    assert_eq!(listed.len(), days.len(), "a LIST per day: {listed:?}");
    assert_eq!(r.partitions, hours as usize);
    assert_eq!((r.jobs, r.files_in), (1, 2), "the late hour merged: {r:?}");
    let p = Partition::for_micros(1, late);
    assert_eq!(list_partition(&store, p).await.unwrap().visible().len(), 1);
}

/// Writes the rows of attempt `first..=last` (started at `started`) as the ingest does.
pub(crate) async fn write_attempt(
    store: &Arc<dyn ObjectStore>,
    (first, last, started): (u64, u64, i64),
    msgs: &[HepMessage],
) -> Vec<object_store::path::Path> {
    let name = FileName::kinesis_batch(SHARD, &first.to_string(), &last.to_string(), started);
    let mut paths = Vec::new();
    for f in files_named(msgs, &name, &default_aleg_headers()) {
        f.write(store).await.unwrap();
        paths.push(f.path.clone());
    }
    paths
}

pub(crate) fn typed(id: i64, time: i64, hep_type: u8) -> HepMessage {
    let mut m = msg(id, time);
    m.proto_type = hep_type;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_read_by_each_of_its_tables_and_deleted_once_all_retired_it() {
    let (_dir, store) = on_disk();
    // A closed hour: compaction merges any two settled small files.
    let base = now() - 3 * MICROS_PER_HOUR;
    let (sip, rtcp) = (
        Partition::for_micros(1, base),
        Partition::for_micros(5, base),
    );
    // Attempt 1..=2: small SIP and RTCP rows of one hour share one object.
    let bundle = write_attempt(
        &store,
        (1, 2, 10),
        &[
            typed(1, base, 1),
            typed(2, base + 1, 1),
            typed(3, base + 2, 5),
        ],
    )
    .await;
    assert_eq!(bundle.len(), 1, "one object for both tables");
    assert!(
        bundle[0].as_ref().starts_with("_bundles/t=1.5/"),
        "{}",
        bundle[0]
    );
    // Attempt 3..=3: SIP alone (a file of hep_1); attempt 4..=4 settles it.
    write_attempt(&store, (3, 3, 20), &[typed(4, base + 3, 1)]).await;
    write_attempt(&store, (4, 4, 30), &[typed(5, base + 4, 100)]).await;
    assert_eq!(visible_ids(&store, sip).await, vec![1, 2, 4]);
    assert_eq!(visible_ids(&store, rtcp).await, vec![3]);
    let tables = lake::catalog::tables(&store).await.unwrap();
    assert_eq!(tables, vec![1, 5, 100], "hep_5 has rows in a bundle only");

    let cfg = no_retention();
    // hep_1 merges the bundle and its file (a compactor that visits hep_1 only).
    let c0 = now();
    let mut frontier = Frontier::default();
    for p in [sip, rtcp, Partition::for_micros(100, base)] {
        list_partition(&store, p)
            .await
            .unwrap()
            .observe(&mut frontier);
    }
    let l = list_partition(&store, sip).await.unwrap();
    let job = plan(&l, &cfg, c0, &frontier).remove(0);
    assert_eq!(job.inputs.len(), 2, "the bundle and hep_1's file");
    let merged = write_outputs(&store, &job, &cfg, c0).await.unwrap();
    finish(&store, &merged, &cfg, c0, None).await.unwrap();
    // A grace period later a run rewrites hep_5's part of the bundle (alone: Delta
    // readers cannot read a row group of it) and must keep it: hep_5 retired it just now.
    let mut clock = c0 + cfg.grace.as_micros() as i64 + 1_000_000;
    let r = run(&store, &cfg, clock, Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.jobs, 1, "hep_5 rewrites the bundle: {r:?}");
    assert!(
        store.head(&bundle[0]).await.is_ok(),
        "hep_5 retired the bundle within the grace period: hep_1's retirement is not enough"
    );
    assert_eq!(visible_ids(&store, sip).await, vec![1, 2, 4]);
    assert_eq!(visible_ids(&store, rtcp).await, vec![3]);
    clock += cfg.grace.as_micros() as i64 + 1_000_000;
    let r = run(&store, &cfg, clock, Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        store.head(&bundle[0]).await.is_err(),
        "every table retired it a grace period ago: deleted"
    );
    assert_eq!(visible_ids(&store, sip).await, vec![1, 2, 4]);
    assert_eq!(visible_ids(&store, rtcp).await, vec![3]);
    assert_eq!(delta_ids(&store, 1).await, vec![1, 2, 4]);
    assert_eq!(delta_ids(&store, 5).await, vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_bundle_hours_too() {
    let (_dir, store) = on_disk();
    let old = now() - 40 * 24 * MICROS_PER_HOUR;
    let paths = write_attempt(&store, (1, 1, 10), &[typed(1, old, 1), typed(2, old, 100)]).await;
    assert!(paths[0].as_ref().starts_with("_bundles/"));
    let cfg = CompactionConfig {
        retention: Some(Duration::from_secs(30 * 24 * 3600)),
        ..Default::default()
    };
    let r = run(&store, &cfg, now(), Sweep::Recent, None).await;
    assert_eq!((r.expired_hours, r.expired_objects), (1, 1), "{r:?}");
    assert!(store.head(&paths[0]).await.is_err());
}

/// The objects `msgs` make as attempt `first..=last` started at `started`, encoded now.
fn encoded_attempt(
    (first, last, started): (u64, u64, i64),
    msgs: &[HepMessage],
) -> Vec<(object_store::path::Path, bytes::Bytes)> {
    let name = FileName::kinesis_batch(SHARD, &first.to_string(), &last.to_string(), started);
    files_named(msgs, &name, &default_aleg_headers())
        .into_iter()
        .map(|f| {
            let [(t, b)] = f.tables.as_slice() else {
                panic!("one table")
            };
            let opts = lake::parquet_io::EncodeOptions::INGEST;
            let bytes = lake::parquet_io::encode(std::slice::from_ref(b), *t, opts).unwrap();
            (f.path, bytes)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_landing_while_a_run_lists_is_not_compacted_beside_the_file_it_replaces() {
    let (inst, store) = instrumented();
    let base = now() - 3 * MICROS_PER_HOUR;
    let sip = Partition::for_micros(1, base);
    // Attempts started a minute ago: within the stream's retention, so only
    // the frontier can settle them.
    let started = |k: i64| now() - 60_000_000 + k;
    write_attempt(&store, (0, 0, started(5)), &[typed(50, base, 5)]).await;
    // Attempt 1..=2 wrote its SIP file, and its answer was lost.
    write_attempt(
        &store,
        (1, 2, started(10)),
        &[typed(1, base + 1, 1), typed(2, base + 2, 1)],
    )
    .await;
    write_server(&store, &[typed(3, base + 3, 1)]).await;
    // While the run lists (after hep_1, before hep_5), the retry of 1..=2 lands
    // in hep_1, and the next attempt, 3..=3, in hep_5: it shows 1..=2 settled.
    let landing: Vec<_> = encoded_attempt(
        (1, 2, started(20)),
        &[typed(1, base + 1, 1), typed(2, base + 2, 1)],
    )
    .into_iter()
    .chain(encoded_attempt(
        (3, 3, started(30)),
        &[typed(4, base + 4, 5)],
    ))
    .collect();
    inst.before_listing("hep_5", move |s| {
        for (path, bytes) in landing {
            futures::executor::block_on(s.put(&path, bytes.into())).unwrap();
        }
    });
    let r = run(&store, &no_retention(), now(), Sweep::Full, None).await;
    assert!(
        r.errors.is_empty() && r.jobs == 1,
        "hep_1 merges two files: {r:?}"
    );
    assert_eq!(
        visible_ids(&store, sip).await,
        vec![1, 2, 3],
        "a listing taken before the retry landed must not decide what to compact"
    );
}
