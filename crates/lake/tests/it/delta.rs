//! The Delta tables other engines read: exact after crashes at any write,
//! never behind a newer mirror, conflicting mirrors settled by Delta's own
//! check, expired hours removed before they are deleted.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hep::HepMessage;
use lake::catalog::list_partition;
use lake::compact::{CompactionConfig, Sweep, run};
use lake::delta::{EXPIRED, PartitionMirror, PublicTable, app_id, is_conflict};
use lake::paths::{FileName, MICROS_PER_HOUR, Partition};
use lake::rows::default_aleg_headers;
use lake::spans::Frontier;
use lake::writer::files_named;
use object_store::ObjectStore;

use crate::compaction::{
    delta_ids, instrumented, msg, no_retention, now, on_disk, typed, visible_ids, write_attempt,
};
use crate::support::write as write_server;

/// Three server files and a settled Kinesis bundle in a closed hour.
async fn an_hour(store: &Arc<dyn ObjectStore>, base: i64) -> Vec<i64> {
    for f in 0..3 {
        let msgs: Vec<_> = (0..10).map(|i| msg(f * 100 + i, base + i)).collect();
        write_server(store, &msgs).await;
    }
    write_attempt(
        store,
        (1, 2, 10),
        &[typed(900, base, 1), typed(901, base, 5)],
    )
    .await;
    write_attempt(store, (3, 3, 20), &[typed(902, base, 1)]).await;
    // Settles 3..=3.
    write_attempt(store, (4, 4, 30), &[typed(903, base, 100)]).await;
    let mut ids: Vec<i64> = (0..3)
        .flat_map(|f| (0..10).map(move |i| f * 100 + i))
        .collect();
    ids.extend([900, 902]);
    ids.sort_unstable();
    ids
}

/// A crash at any write of a run (data, compaction log, Delta log,
/// checkpoint) leaves every Delta table readable, with no row twice and none
/// HEPop does not serve; the next run makes it exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_write_leaves_the_tables_readable_and_exact() {
    let base = now() - 3 * MICROS_PER_HOUR;
    let p = Partition::for_micros(1, base);
    let mut crashed_at = 0;
    for n in 0.. {
        let (inst, store) = instrumented();
        let expected = an_hour(&store, base).await;
        // A first run (Delta created, files published), more rows, then the crashing run.
        let cfg = CompactionConfig {
            grace: Duration::ZERO,
            ..no_retention()
        };
        run(&store, &cfg, now(), Sweep::Full, None).await;
        write_server(&store, &[msg(500, base + 1)]).await;
        let mut expected = expected;
        expected.push(500);
        expected.sort_unstable();
        inst.fail_at(n);
        let r = run(&store, &cfg, now(), Sweep::Full, None).await;
        let writes = inst.writes();
        inst.fail_at(usize::MAX);
        let public = delta_ids(&store, 1).await;
        let served = visible_ids(&store, p).await;
        assert_eq!(served, expected, "HEPop after a crash at write {n}");
        let mut unique = public.clone();
        unique.dedup();
        assert_eq!(
            unique, public,
            "a row twice in Delta after a crash at write {n}"
        );
        assert!(
            public.iter().all(|id| served.binary_search(id).is_ok()),
            "Delta holds rows HEPop does not serve after a crash at write {n}"
        );
        let r2 = run(&store, &cfg, now(), Sweep::Full, None).await;
        assert!(r2.errors.is_empty(), "after a crash at write {n}: {r2:?}");
        assert_eq!(
            delta_ids(&store, 1).await,
            expected,
            "exact after a crash at write {n}"
        );
        if writes <= n {
            // The run got through without reaching write n: every write has crashed once.
            assert!(r.errors.is_empty(), "{r:?}");
            crashed_at = n;
            break;
        }
    }
    assert!(
        crashed_at >= 5,
        "the run writes data, a log entry and Delta commits: {crashed_at}"
    );
}

/// A mirror worked out from a listing older than the one the table last
/// mirrored leaves the partition alone: it would publish inputs a newer
/// compaction replaced, beside its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_from_an_older_log_entry_changes_nothing() {
    let (_dir, store) = on_disk();
    let base = now() - 3 * MICROS_PER_HOUR;
    let p = Partition::for_micros(1, base);
    let expected = an_hour(&store, base).await;
    // Compactor A lists before B compacts and mirrors.
    let stale = list_partition(&store, p).await.unwrap();
    let mut seen = Frontier::default();
    for t in [1, 5, 100] {
        list_partition(&store, Partition { hep_type: t, ..p })
            .await
            .unwrap()
            .observe(&mut seen);
    }
    let r = run(&store, &no_retention(), now(), Sweep::Full, None).await;
    assert!(r.errors.is_empty() && r.jobs >= 1, "{r:?}");
    assert_eq!(delta_ids(&store, 1).await, expected);
    let mut table = PublicTable::load(&store, 1).await.unwrap().unwrap();
    let held = table.held().unwrap();
    let change = PartitionMirror::of(&stale, &seen, now(), 0, &held[&p]);
    assert!(
        !change.add.is_empty(),
        "the old listing would publish the replaced inputs"
    );
    assert!(table.mirrored_version(p).await.unwrap() > Some(change.version));
    let done = table.commit(&[change], now()).await.unwrap();
    assert_eq!(delta_ids(&store, 1).await, expected);
    assert_eq!((done.stale, done.version), (1, None));
}

/// Two mirrors of one partition from the same log entry: Delta's conflict
/// check stops the second (ConcurrentTransaction), which reads the table
/// again and finds nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mirrors_of_a_partition_conflict_and_the_loser_has_nothing_to_add() {
    let (_dir, store) = on_disk();
    let base = now() - 3 * MICROS_PER_HOUR;
    let p = Partition::for_micros(1, base);
    for f in 0..2 {
        write_server(&store, &[msg(f, base + f)]).await;
    }
    let mut a = PublicTable::open(&store, 1).await.unwrap();
    let mut b = PublicTable::load(&store, 1).await.unwrap().unwrap();
    let l = list_partition(&store, p).await.unwrap();
    let none = HashMap::new();
    let change = PartitionMirror::of(&l, &Frontier::default(), now(), 0, &none);
    assert_eq!(change.add.len(), 2);
    a.commit(std::slice::from_ref(&change), now())
        .await
        .unwrap();
    let lost = b
        .commit(std::slice::from_ref(&change), now())
        .await
        .unwrap_err();
    assert!(is_conflict(&lost), "{lost}");
    b.reload().await.unwrap();
    let again = PartitionMirror::of(&l, &Frontier::default(), now(), 0, &b.held().unwrap()[&p]);
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(delta_ids(&store, 1).await, vec![0, 1]);
}

/// Retention takes an hour out of Delta before deleting its objects, and no
/// mirror puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_an_hour_from_delta_before_deleting_it() {
    let (_dir, store) = on_disk();
    let old = now() - 40 * 24 * MICROS_PER_HOUR;
    let p = Partition::for_micros(1, old);
    write_server(&store, &[msg(1, old)]).await;
    write_server(&store, &[msg(2, now())]).await;
    run(&store, &no_retention(), now(), Sweep::Full, None).await;
    assert_eq!(delta_ids(&store, 1).await, vec![1, 2]);
    let cfg = CompactionConfig {
        retention: Some(Duration::from_secs(30 * 86_400)),
        ..Default::default()
    };
    let r = run(&store, &cfg, now(), Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.expired_hours, 1);
    assert_eq!(delta_ids(&store, 1).await, vec![2]);
    let table = PublicTable::load(&store, 1).await.unwrap().unwrap();
    assert_eq!(
        table.mirrored_version(p).await.unwrap(),
        Some(EXPIRED),
        "{}",
        app_id(p)
    );
}

/// The lag: a Kinesis attempt not yet settled is served by HEPop and not
/// published; once a later attempt settles it, the next run publishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_attempt_waits_and_the_report_says_how_long() {
    let (_dir, store) = on_disk();
    let base = now() - 3 * MICROS_PER_HOUR;
    let p = Partition::for_micros(1, base);
    // Attempts of today: only a later attempt settles them (not the stream's retention).
    let started = now();
    write_attempt(&store, (1, 1, started), &[typed(1, base, 1)]).await;
    // A run 100 s after the write.
    let r = run(
        &store,
        &no_retention(),
        now() + 100_000_000,
        Sweep::Full,
        None,
    )
    .await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(r.delta_lag_secs >= 100, "{r:?}");
    assert_eq!(visible_ids(&store, p).await, vec![1]);
    assert_eq!(
        delta_ids(&store, 1).await,
        Vec::<i64>::new(),
        "a retry may still supersede it"
    );
    assert_eq!(r.delta_files_added, 0);
    write_attempt(&store, (2, 2, started + 1), &[typed(2, base, 1)]).await;
    let r = run(&store, &no_retention(), now(), Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        delta_ids(&store, 1).await,
        vec![1],
        "settled by 2..=2, which is not yet"
    );
    assert_eq!(visible_ids(&store, p).await, vec![1, 2]);
}

/// The attempt that settles a file may be seen only in a partition listed
/// after the file's own: the run lists that partition again and publishes the
/// file at once. Two shards cross over, so one of them is in that case
/// whichever table is listed first. (In the open hour, where the plan of one
/// young file does not tell the two apart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_settled_by_a_later_listed_partition_is_published_in_the_same_run() {
    let (_dir, store) = on_disk();
    let base = now();
    let started = now();
    let attempt = |shard: &str, seq: u64, row: HepMessage| {
        let name = FileName::kinesis_batch(shard, &seq.to_string(), &seq.to_string(), started);
        files_named(&[row], &name, &default_aleg_headers())
    };
    let files = [
        attempt("shardId-a", 1, typed(1, base, 1)),
        attempt("shardId-a", 2, typed(2, base, 5)),
        attempt("shardId-b", 1, typed(3, base, 5)),
        attempt("shardId-b", 2, typed(4, base, 1)),
    ];
    for f in files.iter().flatten() {
        f.write(&store).await.unwrap();
    }
    let r = run(&store, &no_retention(), now(), Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        delta_ids(&store, 1).await,
        vec![1],
        "settled by a's 2 (hep_5)"
    );
    assert_eq!(
        delta_ids(&store, 5).await,
        vec![3],
        "settled by b's 2 (hep_1)"
    );
}

/// A table created before the lake's schema gained columns: the next run adds
/// them to the Delta table, and an outside reader reads old and new files,
/// the old ones' new columns as null (and `time_usec`, Int32 in the first
/// files, as the table's long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_the_lake_gains_are_added_and_old_files_read_them_as_null() {
    let (dir, store) = on_disk();
    let base = now() - 3 * MICROS_PER_HOUR;
    let added: Vec<&str> = ["original_time"]
        .into_iter()
        .chain(lake::schema::ADDED_SIP_COLUMNS.iter().map(|(n, _)| *n))
        .collect();
    let old_columns: Vec<_> = lake::delta::columns(1)
        .unwrap()
        .into_iter()
        .filter(|c| !added.contains(&c.name().as_str()))
        .collect();
    PublicTable::create(&store, 1, old_columns).await.unwrap();
    let msgs = [msg(1, base), msg(2, base + 1), msg(3, base + 2)];
    crate::compaction::write_first_schema_file(&store, &msgs[..2]).await;
    write_server(&store, &msgs[2..]).await;
    // Files of at least half the target are left as they are: Delta gets both schemas' files.
    let cfg = CompactionConfig {
        target_file_bytes: 1024,
        young_file_bytes: 1024,
        ..no_retention()
    };
    let r = run(&store, &cfg, now(), Sweep::Full, None).await;
    assert!(r.errors.is_empty() && r.jobs == 0, "{r:?}");
    let names = PublicTable::load(&store, 1)
        .await
        .unwrap()
        .unwrap()
        .column_names()
        .unwrap();
    for c in &added {
        assert!(names.contains(&c.to_string()), "{c} not added: {names:?}");
    }
    let got = crate::readers::read_delta(dir.path().to_str().unwrap(), "hep_1", None);
    assert_eq!(got["deltalake"], 3, "{got}");
    assert_eq!(got["polars"], 3, "{got}");
    assert_eq!(
        got["nulls"]["via_branch"], 2,
        "the first files' rows: {got}"
    );
    let usec: i64 = msgs.iter().map(|m| m.time_usec as i64).sum();
    assert_eq!(
        got["time_usec_sum"], usec,
        "Int32 in the first files: {got}"
    );
}
