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
//!
//! Step 1 is `plan`, 2 `merge_job`, 3 `commit`, 4 and retention `clean_up`;
//! `report` is what a run says it did; this file runs them over a sweep's partitions, then mirrors the result to
//! the Delta tables and builds the call records.
mod clean_up;
mod commit;
mod merge_job;
mod plan;
mod report;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStore;
use object_store::path::Path;

pub use clean_up::clean_up;
use clean_up::{delete_if_present, expire};
use commit::run_job;
pub use commit::{JobDone, finish};
pub use merge_job::{Merged, write_outputs};
pub use plan::{CompactionConfig, ConfigError, Job, plan};
pub use report::{CompactionReport, RunError, Step, Sweep, UnknownSweep};

use crate::catalog::{PartitionListing, contents, days, file_name, list_day, list_partition_in};
use crate::delta::{PartitionMirror, PublicTable, is_conflict};
use crate::paths::{BundleHour, MICROS_PER_HOUR, Partition, Root, TypeSet, date_prefix};
use crate::schema::SIP_TYPE;
use crate::spans::Frontier;
use crate::{LakeError, Result};

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
            report.errors.push(RunError::new(Step::List, "lake", e));
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
            Err(e) => {
                report
                    .errors
                    .push(RunError::new(Step::OpenTable, Root::Table(t).prefix(), e))
            }
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
                Err(e) => {
                    report
                        .errors
                        .push(RunError::new(Step::Retention, Root::Table(t).prefix(), e))
                }
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
            Err(e) => report
                .errors
                .push(RunError::new(Step::Retention, "hours", e)),
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
            Err(e) => report
                .errors
                .push(RunError::new(Step::Retention, Root::Calls.prefix(), e)),
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
            Err(e) => {
                report
                    .errors
                    .push(RunError::new(Step::OpenTable, Root::Table(t).prefix(), e))
            }
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
                report.errors.push(RunError::new(Step::Compaction, p, e));
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
                .push(RunError::new(Step::Mirror, Root::Table(t).prefix(), e));
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
        report.call_hours_too_large = calls.hours_too_large;
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
                Err(e) => {
                    report
                        .errors
                        .push(RunError::new(Step::Checkpoint, Root::Table(t).prefix(), e))
                }
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
                Err(e) => report.errors.push(RunError::new(Step::CleanUp, p, e)),
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
            Err(e) => report.errors.push(RunError::new(Step::CleanUp, path, e)),
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
                            report.errors.push(RunError::new(Step::Compaction, p, e));
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
                            .push(RunError::new(Step::List, root.prefix(), e)),
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
                            report
                                .errors
                                .push(RunError::new(Step::List, date_prefix(t, day), e));
                            continue;
                        }
                    };
                    for (p, listing) in hours {
                        match listing {
                            _ if oldest_kept.is_some_and(|h| p.hour < h) => {}
                            Ok(l) => keep(l, report),
                            Err(e) => {
                                failed.push(p);
                                report.errors.push(RunError::new(Step::Compaction, p, e));
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
                        crate::quarantine::move_file(store, &path, &reason).await?;
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
