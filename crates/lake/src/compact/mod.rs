//! Merges small files into few large ones, bounded in memory and time, and
//! deletes expired hours.
//!
//! Protocol, per partition (each step one atomic object PUT or DELETE):
//! 1. plan jobs from a listing ([`plan`]): young files of any hour into
//!    young-size files, small files of closed hours into target-size files;
//! 2. stream-merge a job's inputs into outputs `c-<id>-<n>.parquet`: no log
//!    entry names them, so no reader sees them;
//! 3. commit: append log entry `n + 1` (create-if-absent) holding the new
//!    snapshot, if every input is still visible in entry `n`; from then on
//!    readers take the outputs and not the inputs. If another compactor
//!    appended first, validate again against its entry or give up;
//! 4. a grace period later (longer than any query), delete the inputs; later
//!    runs delete old log entries and outputs of jobs that never committed.
//!
//! A crash between any two steps leaves every row visible exactly once, and
//! re-running finishes the job. See ARCHITECTURE.md for why.
mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::errors::ParquetError;
use tokio::runtime::Handle;

pub use plan::{CompactionConfig, Job, plan};

use crate::catalog::{
    PartitionListing, Snapshot, contents, days, file_name, hours, list_day, list_partition_in,
};
use crate::delta::{PartitionMirror, PublicTable, is_conflict};
use crate::merge::{BatchSource, SortedMerge};
use crate::parquet_io::{EncodeOptions, StoreReader, properties};
use crate::paths::{
    BundleHour, FileName, MICROS_PER_HOUR, MarkerName, Partition, Quarantined, Root, TypeSet,
    bundle_row_group, date_prefix, job_started_micros, new_job_id,
};
use crate::schema::{SIP_TYPE, SortKey, conform, schema_for};
use crate::spans::Frontier;
use crate::{LakeError, Result};

/// Which hours a run visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// The open hour and the `recent_hours` before it: what ingest is writing
    /// now. Listed directly: no directory LIST.
    Recent,
    /// Every hour (late data into old hours): run now and then.
    Full,
}

/// What a run did; errors are per partition and never stop the run.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompactionReport {
    pub partitions: usize,
    pub jobs: usize,
    /// Jobs another compactor overtook (their outputs are discarded).
    pub conflicts: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub rows: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Replaced files, old log entries and abandoned outputs removed.
    pub deleted: usize,
    /// Unreadable files moved under `_quarantine/lake/`.
    pub quarantined: usize,
    pub expired_hours: usize,
    pub expired_objects: usize,
    /// Commits to the Delta tables (the lake's public face, `crate::delta`).
    pub delta_commits: usize,
    /// Delta commits another commit overtook (mirrored again from the new state).
    pub delta_conflicts: usize,
    pub delta_files_added: usize,
    pub delta_files_removed: usize,
    /// Checkpoints written (every full sweep, and every 50 commits).
    pub delta_checkpoints: usize,
    /// Log entries older than the log's retention removed after a checkpoint.
    pub delta_log_entries_removed: usize,
    /// How far the Delta tables are behind HEPop's own view after the run:
    /// the age of the oldest file HEPop reads that they may not hold yet (s).
    pub delta_lag_secs: u64,
    /// Hours of call records built (`calls`), the records they hold, and
    /// record files deleted.
    pub call_hours_built: usize,
    pub call_records: usize,
    pub call_files_deleted: usize,
    /// `<partition>: <error>` for every partition that failed.
    pub errors: Vec<String>,
}

/// The run's clock: the time it was given, advanced by the time it has taken.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base_micros: i64,
    started: Instant,
}

impl Clock {
    fn new(base_micros: i64) -> Self {
        Self {
            base_micros,
            started: Instant::now(),
        }
    }
    fn now(&self) -> i64 {
        self.base_micros + self.started.elapsed().as_micros() as i64
    }
}

fn micros(d: std::time::Duration) -> i64 {
    d.as_micros() as i64
}

/// How long a run compacts a partition from the listing it took first (LISTs are billed).
const REUSE_LISTING_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// One compaction run over the lake: retention, then every partition of
/// the sweep. Stops starting jobs at `deadline`.
pub async fn run(
    store: &Arc<dyn ObjectStore>,
    cfg: &CompactionConfig,
    now_micros: i64,
    sweep: Sweep,
    deadline: Option<Instant>,
) -> CompactionReport {
    let clock = Clock::new(now_micros);
    let mut report = CompactionReport::default();
    let (tables, sets) = match contents(store).await {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!("listing tables: {e}"));
            return report;
        }
    };
    // Each table's Delta table. One that cannot be read is mirrored by no
    // one this run, and its retired files and expired hours stay.
    let mut public: HashMap<u8, PublicTable> = HashMap::new();
    for &t in &tables {
        match PublicTable::open(store, t).await {
            Ok(pt) => {
                public.insert(t, pt);
            }
            Err(e) => report
                .errors
                .push(format!("{}: {e}", Root::Table(t).prefix())),
        }
    }
    let mut oldest_kept = None;
    if let Some(retention) = cfg.retention {
        // Hour h has expired when (h + 1) hours <= now - retention.
        let kept = (now_micros - micros(retention)).div_euclid(MICROS_PER_HOUR);
        // Delta stops naming an hour's files before they are deleted.
        let mut roots = Vec::new();
        for &t in &tables {
            let Some(pt) = public.get_mut(&t) else {
                continue;
            };
            match mirror(pt, |pt| pt.expiring(kept), clock, &mut report).await {
                Ok(()) => roots.push(Root::Table(t)),
                Err(e) => report
                    .errors
                    .push(format!("retention of {}: {e}", Root::Table(t).prefix())),
            }
        }
        let roots = roots
            .into_iter()
            .chain(sets.iter().map(|&s| Root::Bundles(s)));
        match expire(store, roots, kept - 1).await {
            Ok((hours, objects)) => {
                report.expired_hours = hours;
                report.expired_objects = objects;
            }
            Err(e) => report.errors.push(format!("retention: {e}")),
        }
        // The records of expired hours too, Delta first. A recent run deletes
        // the hours Delta held (no directory LIST); a full sweep every expired
        // directory, with files a crashed build left.
        let calls = async {
            let hours = crate::calls::expire(store, kept, clock.now()).await?;
            if sweep == Sweep::Full {
                expire(store, std::iter::once(Root::Calls), kept - 1).await
            } else {
                crate::calls::delete_hours(store, &hours).await
            }
        };
        match calls.await {
            Ok((_, objects)) => report.call_files_deleted += objects,
            Err(e) => report.errors.push(format!("retention of calls: {e}")),
        }
        oldest_kept = Some(kept);
    }
    // Every partition is listed before any is compacted: the listings show how
    // far each Kinesis shard's checkpoint has moved (which ingest files are settled).
    let now_hour = now_micros.div_euclid(MICROS_PER_HOUR);
    // `failed`: partitions that could not be listed or compacted (each reported once).
    let (listings, frontier, mut failed) = list_sweep(
        store,
        (&tables, &sets),
        sweep,
        cfg.recent_hours,
        now_hour,
        oldest_kept,
        &mut report,
    )
    .await;
    let retired_bundles = retired_bundles(&listings, cfg, clock.now());
    // Files Delta names, or named less than a grace period ago: kept.
    let mut pinned = HashMap::new();
    for (&t, pt) in &public {
        match pt.pinned(clock.now(), micros(cfg.grace)).await {
            Ok(p) => {
                pinned.insert(t, p);
            }
            Err(e) => report
                .errors
                .push(format!("{}: {e}", Root::Table(t).prefix())),
        }
    }
    let run = Run {
        store,
        cfg,
        clock,
        deadline,
        frontier,
        sets: &sets,
    };
    let retries_end = clock.now() - micros(cfg.kinesis_retry_horizon);
    // Per partition, the listing its mirror is worked out from, with the attempts seen up to it.
    let mut mirrored: Vec<Listed> = Vec::new();
    let mut compacted = Vec::new();
    for (listing, listed_at, before) in listings {
        let p = listing.partition;
        let listed_at_micros = clock.now() - micros(listed_at.elapsed());
        // A listing taken long ago (a long run) is taken again rather than trusted;
        // so is one whose plan or whose Delta files depend on attempts seen
        // after it was taken: a retry that superseded one of its files may have
        // landed meanwhile. Taken again, it is read with every attempt seen.
        let now = clock.now();
        let inputs = |f: &Frontier| -> Vec<Path> {
            plan(&listing, cfg, now, f)
                .into_iter()
                .flat_map(|j| j.inputs.into_iter().map(|m| m.location))
                .collect()
        };
        let publishable = |f: &Frontier| PartitionMirror::publishable(&listing, f, retries_end);
        let trusted = listed_at.elapsed() < REUSE_LISTING_FOR
            && inputs(&before) == inputs(&run.frontier)
            && publishable(&before) == publishable(&run.frontier);
        let mut seen = before;
        listing.observe(&mut seen);
        let fresh = trusted.then_some((listing, seen, listed_at_micros));
        let keep = pinned
            .get(&p.hep_type)
            .map(|by| by.get(&p).unwrap_or(&NONE));
        match run.compact_partition(p, fresh, keep, &mut report).await {
            Ok(outcome) => {
                if outcome.compacted {
                    compacted.push(p);
                }
                mirrored.extend(outcome.after);
            }
            // Delta keeps its state of the partition until a run gets through it.
            Err(e) => {
                failed.push(p);
                tracing::warn!(partition = %p, error = %e, "compaction of partition failed");
                report.errors.push(format!("{p}: {e}"));
            }
        }
    }
    for (&t, pt) in public.iter_mut() {
        let of_table: Vec<_> = mirrored
            .iter()
            .filter(|(l, _, _)| l.partition.hep_type == t)
            .collect();
        let changes = |pt: &PublicTable| -> Result<Vec<PartitionMirror>> {
            let held = pt.held()?;
            let none = HashMap::new();
            Ok(of_table
                .iter()
                .map(|(l, seen, at)| {
                    PartitionMirror::of(
                        l,
                        seen,
                        *at,
                        retries_end,
                        held.get(&l.partition).unwrap_or(&none),
                    )
                })
                .collect())
        };
        if let Err(e) = mirror(pt, changes, clock, &mut report).await {
            report
                .errors
                .push(format!("mirroring {}: {e}", Root::Table(t).prefix()));
        }
    }
    if tables.contains(&SIP_TYPE) {
        // A full sweep without errors listed every hour with SIP rows.
        let complete = sweep == Sweep::Full && report.errors.is_empty();
        let after = mirrored.iter().map(|(l, _, _)| l.clone());
        let sources = crate::calls::SourceListings::new(
            after,
            failed.iter().copied(),
            tables.iter().copied(),
            complete,
        );
        let calls = build_calls(store, cfg, &sets, sweep, now_hour, sources, clock).await;
        report.call_hours_built = calls.hours_built;
        report.call_records = calls.records;
        report.call_files_deleted += calls.deleted;
        report.errors.extend(calls.errors);
    }
    if sweep == Sweep::Full {
        for (&t, pt) in &public {
            match pt.checkpoint().await {
                Ok(removed) => {
                    report.delta_checkpoints += 1;
                    report.delta_log_entries_removed += removed;
                }
                Err(e) => report
                    .errors
                    .push(format!("checkpoint of {}: {e}", Root::Table(t).prefix())),
            }
        }
    }
    if cfg.grace.is_zero() {
        // Nothing may still be reading the inputs (the CLI's --grace-secs 0):
        // delete them now that Delta no longer names them.
        for p in compacted {
            let Some(pt) = public.get(&p.hep_type) else {
                continue;
            };
            let deleted = async {
                let keep = pt.pinned(clock.now(), 0).await?;
                let after = list_partition_in(store, p, &[]).await?;
                clean_up(
                    store,
                    &after,
                    cfg,
                    clock.now(),
                    Some(keep.get(&p).unwrap_or(&NONE)),
                )
                .await
            };
            match deleted.await {
                Ok(n) => report.deleted += n,
                Err(e) => report.errors.push(format!("{p}: {e}")),
            }
        }
    }
    report.delta_lag_secs = mirrored
        .iter()
        .filter_map(|(l, seen, at)| {
            PartitionMirror::of(l, seen, *at, retries_end, &HashMap::new()).oldest_unpublished
        })
        .min()
        .map_or(0, |oldest| {
            ((clock.now() - oldest).max(0) / 1_000_000) as u64
        });
    for path in retired_bundles {
        match delete_if_present(store, &path).await {
            Ok(d) => report.deleted += d as usize,
            Err(e) => report.errors.push(format!("{path}: {e}")),
        }
    }
    report
}

/// Builds the call records of the hours that settled since the last run
/// or, in a full sweep, of every hour whose SIP rows changed, from the
/// partitions as this run left them (`after`).
async fn build_calls(
    store: &Arc<dyn ObjectStore>,
    cfg: &CompactionConfig,
    sets: &[TypeSet],
    sweep: Sweep,
    now_hour: i64,
    sources: crate::calls::SourceListings,
    clock: Clock,
) -> crate::calls::CallsReport {
    let builds = match sweep {
        Sweep::Recent => crate::calls::Builds::Settling {
            from_hour: now_hour - cfg.recent_hours - cfg.call_follow_hours - 1,
        },
        Sweep::Full => crate::calls::Builds::Changed,
    };
    crate::calls::build(store, sets, &cfg.calls(), sources, builds, || clock.now()).await
}

static NONE: std::sync::LazyLock<HashSet<String>> = std::sync::LazyLock::new(HashSet::new);

/// Commits the changes `changes` works out from a Delta table's state; when
/// another commit came first, reads the table again and works them out anew.
async fn mirror(
    pt: &mut PublicTable,
    changes: impl Fn(&PublicTable) -> Result<Vec<PartitionMirror>>,
    clock: Clock,
    report: &mut CompactionReport,
) -> Result<()> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let c = changes(pt)?;
        match pt.commit(&c, clock.now()).await {
            Ok(done) => {
                report.delta_commits += done.version.is_some() as usize;
                report.delta_files_added += done.added;
                report.delta_files_removed += done.removed;
                return Ok(());
            }
            Err(e) if is_conflict(&e) && attempt < ATTEMPTS => {
                report.delta_conflicts += 1;
                pt.reload().await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A partition's listing, the Kinesis attempts seen up to it, and when it was taken (µs).
type Listed = (PartitionListing, Frontier, i64);

/// What compacting a partition did, and the partition as it then stands.
#[derive(Default)]
struct Outcome {
    compacted: bool,
    after: Option<Listed>,
}

/// Bundles every table they hold has retired a grace period ago, in the
/// listings of this run: a table's clean-up never deletes a bundle, since
/// other tables may still read it. A table whose partition this run did not
/// list keeps the bundle.
fn retired_bundles(
    listings: &[(PartitionListing, Instant, Frontier)],
    cfg: &CompactionConfig,
    now: i64,
) -> Vec<Path> {
    let grace = micros(cfg.grace);
    // Per partition, the names its table retired a grace period ago.
    let due: std::collections::HashMap<Partition, HashSet<&str>> = listings
        .iter()
        .map(|(l, _, _)| (l.partition, l.snapshot.retired_by(now - grace)))
        .collect();
    let mut out = std::collections::BTreeSet::new();
    for (l, _, _) in listings {
        for f in &l.files {
            let Some(b) = BundleHour::parse(&f.location) else {
                continue;
            };
            let everywhere = b.types.types().all(|hep_type| {
                due.get(&Partition {
                    hep_type,
                    hour: b.hour,
                })
                .is_some_and(|names| names.contains(file_name(f)))
            });
            if everywhere {
                out.insert(f.location.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// Lists the partitions a sweep visits (those that can be read, each counted in
/// `report`), each with when it was listed and the Kinesis frontier the
/// listings before it showed; the frontier they all show; and the partitions
/// that could not be listed.
async fn list_sweep(
    store: &Arc<dyn ObjectStore>,
    (tables, sets): (&[u8], &[TypeSet]),
    sweep: Sweep,
    recent_hours: i64,
    now_hour: i64,
    oldest_kept: Option<i64>,
    report: &mut CompactionReport,
) -> (
    Vec<(PartitionListing, Instant, Frontier)>,
    Frontier,
    Vec<Partition>,
) {
    let mut failed = Vec::new();
    let mut listings = Vec::new();
    let mut frontier = Frontier::default();
    let mut keep = |l: PartitionListing, report: &mut CompactionReport| {
        report.partitions += 1;
        let before = frontier.clone();
        l.observe(&mut frontier);
        listings.push((l, Instant::now(), before));
    };
    for &t in tables {
        match sweep {
            // The hours are known: no directory LISTs (billed like PUTs on S3). Hours
            // ahead of the clock (capture times up to an hour ahead) wait for a full sweep.
            Sweep::Recent => {
                for hour in now_hour - recent_hours..=now_hour {
                    let p = Partition { hep_type: t, hour };
                    match list_partition_in(store, p, sets).await {
                        Ok(l) => keep(l, report),
                        Err(e) => {
                            failed.push(p);
                            report.errors.push(format!("{p}: {e}"));
                        }
                    }
                }
            }
            // A LIST per day, not per hour: a month of hours in 30.
            Sweep::Full => {
                let mut all_days = Vec::new();
                let roots = std::iter::once(Root::Table(t)).chain(
                    sets.iter()
                        .filter(|s| s.contains(t))
                        .map(|&s| Root::Bundles(s)),
                );
                for root in roots {
                    match days(store, root).await {
                        Ok(d) => all_days.extend(d),
                        Err(e) => report
                            .errors
                            .push(format!("listing {}: {e}", root.prefix())),
                    }
                }
                all_days.sort_unstable();
                all_days.dedup();
                let kept = |day: i64| oldest_kept.is_none_or(|h| day * 24 + 23 >= h);
                for day in all_days.into_iter().filter(|&d| kept(d)) {
                    let hours = match list_day(store, t, day, sets).await {
                        Ok(h) => h,
                        Err(e) => {
                            let hour = |h| Partition {
                                hep_type: t,
                                hour: day * 24 + h,
                            };
                            failed.extend((0..24).map(hour));
                            report.errors.push(format!("{}: {e}", date_prefix(t, day)));
                            continue;
                        }
                    };
                    for (p, listing) in hours {
                        match listing {
                            _ if oldest_kept.is_some_and(|h| p.hour < h) => {}
                            Ok(l) => keep(l, report),
                            Err(e) => {
                                failed.push(p);
                                report.errors.push(format!("{p}: {e}"));
                            }
                        }
                    }
                }
            }
        }
    }
    (listings, frontier, failed)
}

/// What every partition of one run shares.
struct Run<'a> {
    store: &'a Arc<dyn ObjectStore>,
    cfg: &'a CompactionConfig,
    clock: Clock,
    /// No job starts after it.
    deadline: Option<Instant>,
    /// How far each Kinesis shard's checkpoint has moved, from every listing of the run.
    frontier: Frontier,
    /// The lake's bundle type sets: a partition is listed with its bundles.
    sets: &'a [TypeSet],
}

impl Run<'_> {
    /// Compacts one partition as far as its plan goes. Safe to run again at
    /// any time. `keep`: names its clean-up must not delete (Delta still names
    /// them); None when the Delta table could not be read: delete none.
    async fn compact_partition(
        &self,
        p: Partition,
        mut listed: Option<Listed>,
        keep: Option<&HashSet<String>>,
        report: &mut CompactionReport,
    ) -> Result<Outcome> {
        let Run {
            store,
            cfg,
            clock,
            deadline,
            ref frontier,
            sets,
        } = *self;
        let mut outcome = Outcome::default();
        // A quarantined input changes the plan: list and plan again.
        for _ in 0..4 {
            let (listing, seen, listed_at) = match listed.take() {
                Some(l) => l,
                None => {
                    let at = clock.now();
                    let l = list_partition_in(store, p, sets).await?;
                    let mut seen = frontier.clone();
                    l.observe(&mut seen);
                    (l, seen, at)
                }
            };
            let mut files = listing.files.clone();
            report.deleted += clean_up(store, &listing, cfg, clock.now(), keep).await?;
            let mut replan = false;
            // The entry this run last saw or wrote: the next commit tries to extend it without listing.
            let mut base = listing.snapshot.clone();
            let mut jobs: std::collections::VecDeque<Job> =
                plan(&listing, cfg, clock.now(), frontier).into();
            while let Some(job) = jobs.pop_front() {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                match run_job(store, &job, cfg, clock, Some(&base)).await {
                    Ok(Some(done)) => {
                        outcome.compacted = true;
                        files.extend(done.written.iter().cloned());
                        // Inputs that did not fit the memory budget form the next job.
                        if job.inputs.len() - done.inputs >= 2 {
                            jobs.push_front(Job {
                                inputs: job.inputs[done.inputs..].to_vec(),
                                ..job
                            });
                        }
                        report.jobs += 1;
                        report.files_in += done.inputs;
                        report.files_out += done.outputs;
                        report.rows += done.rows;
                        report.bytes_in += done.bytes_in;
                        report.bytes_out += done.bytes_out;
                        base = done.snapshot;
                    }
                    Ok(None) => {
                        // Overtaken: this listing is stale.
                        report.conflicts += 1;
                        break;
                    }
                    Err(LakeError::Unreadable { path, reason }) => {
                        tracing::warn!(%path, %reason, "unreadable file moved to quarantine");
                        quarantine(store, &path, &reason).await?;
                        report.quarantined += 1;
                        replan = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            // The partition as this run left it: what it listed, and what it wrote.
            let after =
                PartitionListing::new(p, files, listing.log.clone(), listing.legacy.clone(), base);
            outcome.after = Some((after, seen, listed_at));
            if !replan {
                break;
            }
        }
        Ok(outcome)
    }
}

/// What one committed job did.
#[derive(Debug, Clone, Default)]
pub struct JobDone {
    pub inputs: usize,
    pub outputs: usize,
    pub rows: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub snapshot: Snapshot,
    /// The outputs as stored (their time is the commit's, near enough for a listing).
    pub written: Vec<ObjectMeta>,
}

/// Merges and commits one job; None when another compactor overtook it.
async fn run_job(
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    cfg: &CompactionConfig,
    clock: Clock,
    base: Option<&Snapshot>,
) -> Result<Option<JobDone>> {
    let merged = write_outputs(store, job, cfg, clock.now()).await?;
    finish(store, &merged, cfg, clock.now(), base).await
}

/// Commits what [`write_outputs`] wrote, or discards it when overtaken or
/// too old. `base`: the entry the job was planned from, if known (saves a LIST).
pub async fn finish(
    store: &Arc<dyn ObjectStore>,
    merged: &Merged,
    cfg: &CompactionConfig,
    now_micros: i64,
    base: Option<&Snapshot>,
) -> Result<Option<JobDone>> {
    let inputs: Vec<String> = merged
        .inputs
        .iter()
        .map(|f| file_name(f).to_owned())
        .collect();
    let outputs: Vec<String> = merged.outputs.iter().map(|(n, _)| n.to_string()).collect();
    let committed = if now_micros - merged.started_micros >= micros(cfg.job_timeout) {
        // Another run may already take its outputs for abandoned ones.
        tracing::warn!(partition = %merged.partition, "compaction job ran out of time; not committing");
        None
    } else {
        commit(store, merged.partition, &inputs, &outputs, now_micros, base).await?
    };
    match committed {
        Some(snapshot) => Ok(Some(JobDone {
            inputs: inputs.len(),
            outputs: outputs.len(),
            rows: merged.rows,
            bytes_in: merged.inputs.iter().map(|f| f.size).sum(),
            bytes_out: merged.outputs.iter().map(|(_, b)| b).sum(),
            snapshot,
            written: merged
                .outputs
                .iter()
                .map(|(name, size)| ObjectMeta {
                    location: merged.partition.file(name),
                    last_modified: chrono::DateTime::from_timestamp_micros(now_micros)
                        .unwrap_or_default(),
                    size: *size,
                    e_tag: None,
                    version: None,
                })
                .collect(),
        })),
        None => {
            // Certainly not committed: no entry names these outputs.
            for (name, _) in &merged.outputs {
                delete_if_present(store, &merged.partition.file(name)).await?;
            }
            Ok(None)
        }
    }
}

/// Appends the log entry that replaces `inputs` by `outputs`, if every
/// input is still visible. None: another compactor took an input first.
/// First tries to extend `base` directly: if that entry's successor does not
/// exist yet, `base` is the newest (a stale `base` whose successor was
/// cleaned up yields an entry below the newest, which readers ignore: the
/// outputs stay invisible and are deleted as abandoned, nothing is lost).
async fn commit(
    store: &Arc<dyn ObjectStore>,
    p: Partition,
    inputs: &[String],
    outputs: &[String],
    now_micros: i64,
    base: Option<&Snapshot>,
) -> Result<Option<Snapshot>> {
    let mut base = base;
    for _ in 0..8 {
        let listed;
        let snapshot = match base.take() {
            Some(s) => s,
            None => {
                // The snapshot alone: the partition's bundles do not matter here.
                listed = list_partition_in(store, p, &[]).await?.snapshot;
                &listed
            }
        };
        let retired = snapshot.retired_set();
        if !inputs.iter().all(|i| snapshot.admits(&retired, i)) {
            return Ok(None);
        }
        let next = snapshot.next(inputs, outputs, now_micros);
        let json = serde_json::to_vec(&next).expect("snapshot serialises");
        match store
            .put_opts(
                &p.marker(&MarkerName::Log(next.seq)),
                json.into(),
                PutMode::Create.into(),
            )
            .await
        {
            Ok(_) => return Ok(Some(next)),
            // Another compactor appended entry `seq` first: validate against it.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

async fn delete_if_present(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<bool> {
    match store.delete(path).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Step 4: deletes inputs whose grace period is over (and late rewrites of
/// them), outputs no entry names that no running job can still commit, and
/// log entries older than the newest once it has been in force for a grace period.
pub async fn clean_up(
    store: &Arc<dyn ObjectStore>,
    l: &PartitionListing,
    cfg: &CompactionConfig,
    now: i64,
    keep: Option<&HashSet<String>>,
) -> Result<usize> {
    let grace = micros(cfg.grace);
    let s = &l.snapshot;
    let due = s.retired_by(now - grace);
    let retired = s.retired_set();
    let mut deleted = 0;
    // Bundles are other tables' too: a run deletes them (`retired_bundles`).
    for f in l
        .files
        .iter()
        .filter(|f| Partition::parse(&f.location).is_some())
    {
        let name = file_name(f);
        // An output no entry names whose job is older than any job may run:
        // that job gave up or crashed (ids of the first protocol carry no
        // start time: the store's clock stands in).
        let abandoned = FileName::parse(name)
            .and_then(|n| {
                n.job_id()
                    .map(|id| job_started_micros(id).unwrap_or(f.last_modified.timestamp_micros()))
            })
            .is_some_and(|started| now - started > micros(cfg.orphan_after))
            && !s.live.contains(name)
            && !retired.contains(name);
        let due = due.contains(name) && keep.is_some_and(|k| !k.contains(name));
        if due || abandoned {
            deleted += delete_if_present(store, &f.location).await? as usize;
        }
    }
    if let Some((newest, _)) = l.log.last()
        && s.committed_micros + grace <= now
    {
        let old = l
            .log
            .iter()
            .filter(|(seq, _)| seq < newest)
            .map(|(_, m)| m)
            .chain(&l.legacy);
        for m in old {
            deleted += delete_if_present(store, &m.location).await? as usize;
        }
    }
    Ok(deleted)
}

/// Moves an unreadable file aside, with the reason beside it.
async fn quarantine(store: &Arc<dyn ObjectStore>, path: &Path, reason: &str) -> Result<()> {
    let to = Quarantined::LakeFile {
        original: path.clone(),
        reason: false,
    }
    .path();
    match store.copy(path, &to).await {
        Ok(()) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let why = Quarantined::LakeFile {
        original: path.clone(),
        reason: true,
    }
    .path();
    store
        .put(&why, format!("{reason}\n").into_bytes().into())
        .await?;
    delete_if_present(store, path).await?;
    Ok(())
}

/// Deletes every hour of `roots` (tables and bundles) up to `last_expired`
/// (hours since the epoch): data files first, the log last. Returns (hours,
/// objects) deleted.
async fn expire(
    store: &Arc<dyn ObjectStore>,
    roots: impl Iterator<Item = Root>,
    last_expired: i64,
) -> Result<(usize, usize)> {
    let (mut expired, mut objects) = (0, 0);
    for root in roots {
        for hour in hours(store, root, None, Some(last_expired)).await? {
            let mut all: Vec<Path> = store
                .list(Some(&root.hour_prefix(hour)))
                .map_ok(|m| m.location)
                .try_collect()
                .await?;
            // Markers last: a crash half-way leaves an hour that is still consistent.
            all.sort_by_key(|path| path.as_ref().contains(crate::paths::COMPACTIONS_DIR));
            let n = all.len();
            let locations = futures::stream::iter(all.into_iter().map(Ok)).boxed();
            store
                .delete_stream(locations)
                .try_collect::<Vec<_>>()
                .await?;
            objects += n;
            expired += 1;
        }
    }
    Ok((expired, objects))
}

/// What [`write_outputs`] merged and wrote: not visible until [`finish`]ed.
#[derive(Debug)]
pub struct Merged {
    pub partition: Partition,
    /// When the job started (µs, the compactor's clock): it is in the outputs' names.
    pub started_micros: i64,
    pub inputs: Vec<ObjectMeta>,
    pub outputs: Vec<(FileName, u64)>,
    pub rows: usize,
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> LakeError {
    LakeError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    }
}

/// A store failure is worth retrying; anything else about a file means it cannot be read.
fn classify(path: &Path, e: ParquetError) -> LakeError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store_error) => LakeError::Store(*store_error),
            Err(other) => unreadable(path, other),
        },
        e => unreadable(path, e),
    }
}

/// One input file as a stream of batches in the current schema.
struct ParquetInput {
    path: Path,
    stream: ParquetRecordBatchStream<StoreReader>,
    schema: arrow::datatypes::SchemaRef,
    handle: Handle,
}

impl BatchSource for ParquetInput {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.handle.block_on(self.stream.next()) {
            None => Ok(None),
            Some(Ok(b)) => conform(&b, &self.schema)
                .map(Some)
                .map_err(|e| unreadable(&self.path, e)),
            Some(Err(e)) => Err(classify(&self.path, e)),
        }
    }
}

/// Files being written for one job, cut at the job's target size.
struct Outputs {
    store: Arc<dyn ObjectStore>,
    partition: Partition,
    id: String,
    target: u64,
    handle: Handle,
    current: Option<(FileName, AsyncArrowWriter<BufWriter>)>,
    done: Vec<(FileName, u64)>,
}

/// Bytes a multipart upload buffers per part (S3 needs at least 5 MiB).
const UPLOAD_PART_BYTES: usize = 8 << 20;

impl Outputs {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.current.is_none() {
            let name = FileName::compacted(&self.id, self.done.len() as u32);
            let upload = BufWriter::with_capacity(
                self.store.clone(),
                self.partition.file(&name),
                UPLOAD_PART_BYTES,
            )
            .with_max_concurrency(2);
            let props = properties(
                self.partition.hep_type,
                EncodeOptions::COMPACT.row_group_rows,
                EncodeOptions::COMPACT,
            )?;
            let w = AsyncArrowWriter::try_new(
                upload,
                schema_for(self.partition.hep_type),
                Some(props),
            )?;
            self.current = Some((name, w));
        }
        let (_, w) = self.current.as_mut().expect("opened above");
        self.handle.block_on(w.write(batch))?;
        if (w.bytes_written() + w.in_progress_size()) as u64 >= self.target {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((name, mut w)) = self.current.take() {
            self.handle.block_on(w.finish())?;
            self.done.push((name, w.bytes_written() as u64));
        }
        Ok(())
    }

    /// Best effort after a failure: outputs no entry names are invisible anyway.
    fn discard(&mut self) {
        self.current = None;
        for (name, _) in self.done.drain(..) {
            let _ = self
                .handle
                .block_on(self.store.delete(&self.partition.file(&name)));
        }
    }
}

/// Memory an open input holds while its row group is read: the compressed
/// column chunks, each column's decoded dictionary, current decompressed
/// page and decompression context. Measured with heaptrack on ingest files
/// (10 M messages, 20 inputs a job): about the compressed size plus a
/// quarter of the plain size plus 128 KiB a column.
fn input_cost(g: &parquet::file::metadata::RowGroupMetaData) -> u64 {
    g.compressed_size().max(0) as u64
        + g.total_byte_size().max(0) as u64 / 4
        + g.num_columns() as u64 * (128 << 10)
}

/// The sorted runs of an input, each read as one merge source: a compacted
/// file is sorted throughout (None: the whole file); an ingest file is
/// sorted within each row group, a time slice (see `parquet_io::time_slices`).
/// Ingest files written before time slices were sorted throughout, so each
/// of their row groups is a sorted run too.
/// A bundle holds one run of the table: its row group.
fn sorted_runs(
    f: &ObjectMeta,
    md: &parquet::file::metadata::ParquetMetaData,
    hep_type: u8,
) -> Vec<Option<usize>> {
    if let Some((row_group, _)) = bundle_row_group(&f.location, hep_type) {
        return vec![Some(row_group)];
    }
    match f.location.filename().and_then(FileName::parse) {
        Some(FileName::Compacted { .. }) => vec![None],
        _ => (0..md.num_row_groups()).map(Some).collect(),
    }
}

/// Opens the job's inputs, as many as fit the memory budget (at least
/// two), streams their merge into outputs, and returns what it merged.
pub async fn write_outputs(
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    cfg: &CompactionConfig,
    now_micros: i64,
) -> Result<Merged> {
    // The budget bounds the process's RSS; allocators keep about 40% more than
    // the live heap (measured with mimalloc), so the merge aims at 60% of it.
    let (store, job, memory) = (store.clone(), job.clone(), cfg.memory_bytes * 3 / 5);
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || merge_blocking(store, job, memory, now_micros, handle))
        .await
        .map_err(|e| LakeError::Other(format!("compaction task: {e}")))?
}

fn merge_blocking(
    store: Arc<dyn ObjectStore>,
    job: Job,
    memory: u64,
    started_micros: i64,
    handle: Handle,
) -> Result<Merged> {
    let schema = schema_for(job.partition.hep_type);
    // Open inputs (see `input_cost`) take half the budget, their decoded
    // batches an eighth; the rest is the output: a compression context per
    // column (~2 MiB at zstd 9), the row group being encoded, upload buffers.
    let mut opened = Vec::new();
    let (mut held, mut row_bytes) = (0u64, 0u64);
    for f in &job.inputs {
        let mut reader = StoreReader::new(store.clone(), f.location.clone(), f.size);
        let meta = handle
            .block_on(ArrowReaderMetadata::load_async(
                &mut reader,
                ArrowReaderOptions::default(),
            ))
            .map_err(|e| classify(&f.location, e))?;
        let md = meta.metadata().clone();
        let runs = sorted_runs(f, &md, job.partition.hep_type);
        // A run holds one row group at a time; an ingest file's runs are all open at once.
        let costs = runs.iter().map(|run| match run {
            Some(g) => input_cost(md.row_group(*g)),
            None => md.row_groups().iter().map(input_cost).max().unwrap_or(0),
        });
        let cost: u64 = costs.sum();
        if opened.len() >= 2 && held + cost > memory / 2 {
            break;
        }
        let rows = md.file_metadata().num_rows().max(1) as u64;
        let uncompressed: u64 = md
            .row_groups()
            .iter()
            .map(|g| g.total_byte_size().max(0) as u64)
            .sum();
        held += cost;
        // Arrow arrays take about twice Parquet's plain size (offsets, validity).
        row_bytes += runs.len() as u64 * 2 * uncompressed.div_ceil(rows);
        opened.push((f.clone(), reader, meta, runs));
    }
    let batch_rows = ((memory / 8) / row_bytes.max(1)).clamp(256, 8192) as usize;
    let mut inputs = Vec::with_capacity(opened.len());
    let mut sources: Vec<Box<dyn BatchSource>> = Vec::new();
    for (f, reader, meta, runs) in opened {
        for run in runs {
            let builder =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), meta.clone())
                    .with_batch_size(batch_rows);
            let builder = match run {
                Some(g) => builder.with_row_groups(vec![g]),
                None => builder,
            };
            let stream = builder.build().map_err(|e| classify(&f.location, e))?;
            sources.push(Box::new(ParquetInput {
                path: f.location.clone(),
                stream,
                schema: schema.clone(),
                handle: handle.clone(),
            }));
        }
        inputs.push(f);
    }
    let merge = SortedMerge::new(
        schema,
        Box::new(SortKey::of(job.partition.hep_type)),
        sources,
        batch_rows,
    )?;
    let id = new_job_id(started_micros, uuid::Uuid::new_v4().as_u64_pair().0);
    let mut out = Outputs {
        store,
        partition: job.partition,
        id,
        target: job.target_file_bytes,
        handle,
        current: None,
        done: Vec::new(),
    };
    let mut rows = 0;
    let result = (|| {
        for batch in merge {
            let batch = batch?;
            rows += batch.num_rows();
            out.write(&batch)?;
        }
        out.close()
    })();
    if let Err(e) = result {
        out.discard();
        return Err(e);
    }
    Ok(Merged {
        partition: job.partition,
        started_micros,
        inputs,
        outputs: std::mem::take(&mut out.done),
        rows,
    })
}
