//! Which files to merge: a pure function of a partition's listing, the
//! configuration and the time, so it is tested without a store.
use std::time::Duration;

use object_store::ObjectMeta;

use crate::catalog::{PartitionListing, file_name};
use crate::paths::{BundleHour, FileName, Partition};
use crate::spans::Frontier;

/// Why a [`CompactionConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A running job's outputs would be deleted as orphans.
    #[error("orphan_after ({orphan_after:?}) must exceed job_timeout ({job_timeout:?})")]
    OrphanBeforeTimeout {
        orphan_after: Duration,
        job_timeout: Duration,
    },
    #[error("file targets must be at least 1 KiB")]
    TargetTooSmall,
    #[error("the job size (--compact-max-job-bytes) must be at least the target file size")]
    JobSmallerThanTarget,
    #[error("a job must be allowed at least 2 files")]
    TooFewJobFiles,
    #[error("compaction memory (--compact-memory-mb) must be at least 16 MiB")]
    TooLittleMemory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionConfig {
    /// Outputs of closed hours are cut at about this size.
    pub target_file_bytes: u64,
    /// Young files (the open hour's included) are merged into files of about this size.
    pub young_file_bytes: u64,
    /// A file is young-merged once it is this old: writers' files settle first.
    pub young_after: Duration,
    /// An hour is closed this long after it ends (late packets still arrive).
    pub close_after: Duration,
    /// Replaced files stay this long after the commit, for queries that
    /// listed them before it. Must exceed the query timeout.
    pub grace: Duration,
    /// One job reads at most this many bytes of input, so it finishes in
    /// bounded time (at least `target_file_bytes`, so any two small files pair).
    pub max_job_bytes: u64,
    /// ...and at most this many files (each open input holds a row group in memory).
    pub max_job_files: usize,
    /// Memory a job may use (peak RSS of the compactor with the binaries' allocator, mimalloc).
    pub memory_bytes: u64,
    /// A job that has run this long gives up instead of committing...
    pub job_timeout: Duration,
    /// ...so outputs no log entry names, this old, belong to no running job and are deleted.
    pub orphan_after: Duration,
    /// Hours further back than this are visited only by a full sweep.
    pub recent_hours: i64,
    /// Whole hours older than this are deleted (None keeps everything).
    pub retention: Option<Duration>,
    /// A Kinesis ingest file this old is settled whatever the frontier says:
    /// no record stays in the stream longer (the stream's retention, 7 days by
    /// default, and a margin). It matters for a shard that stopped (resharded).
    pub kinesis_retry_horizon: Duration,
    /// A call record holds its messages up to this many hours after the
    /// hour its call began in (`calls`); an hour's records are built once
    /// those hours are closed.
    pub call_follow_hours: i64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 << 20,
            young_file_bytes: 16 << 20,
            young_after: Duration::from_secs(120),
            close_after: Duration::from_secs(600),
            grace: Duration::from_secs(300),
            max_job_bytes: 1 << 30,
            max_job_files: 32,
            memory_bytes: 512 << 20,
            job_timeout: Duration::from_secs(20 * 60),
            orphan_after: Duration::from_secs(3600),
            recent_hours: 3,
            retention: Some(Duration::from_secs(30 * 86_400)),
            kinesis_retry_horizon: Duration::from_secs(8 * 86_400),
            call_follow_hours: 2,
        }
    }
}

impl CompactionConfig {
    /// How call records are built under this configuration.
    pub fn calls(&self) -> crate::calls::CallsConfig {
        let micros = |d: Duration| d.as_micros() as i64;
        crate::calls::CallsConfig {
            follow_hours: self.call_follow_hours,
            close_after_micros: micros(self.close_after),
            grace_micros: micros(self.grace),
            max_source_bytes: self.memory_bytes / 4,
        }
    }

    /// Why this configuration is unsafe or useless, if it is.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.orphan_after <= self.job_timeout {
            return Err(ConfigError::OrphanBeforeTimeout {
                orphan_after: self.orphan_after,
                job_timeout: self.job_timeout,
            });
        }
        if self.target_file_bytes < 1024 || self.young_file_bytes < 1024 {
            return Err(ConfigError::TargetTooSmall);
        }
        if self.max_job_bytes < self.target_file_bytes {
            // Any two files under half the target must fit one job, or small files could never pair.
            return Err(ConfigError::JobSmallerThanTarget);
        }
        if self.max_job_files < 2 {
            return Err(ConfigError::TooFewJobFiles);
        }
        if self.memory_bytes < 16 << 20 {
            return Err(ConfigError::TooLittleMemory);
        }
        Ok(())
    }

    /// Retention in whole days, 0 for none: how settings spell it.
    pub fn retention_days(&self) -> u64 {
        self.retention.map_or(0, |r| r.as_secs() / 86_400)
    }

    /// `days` of retention, 0 keeping everything.
    pub fn with_retention_days(self, days: u64) -> Self {
        Self {
            retention: (days > 0).then(|| Duration::from_secs(days * 86_400)),
            ..self
        }
    }

    pub fn is_closed(&self, p: Partition, now_micros: i64) -> bool {
        p.end_micros() + self.close_after.as_micros() as i64 <= now_micros
    }
}

fn is_bundle(f: &ObjectMeta) -> bool {
    BundleHour::parse(&f.location).is_some()
}

/// One merge: these files of one partition into files of about `target_file_bytes`.
#[derive(Debug, Clone)]
pub struct Job {
    pub partition: Partition,
    pub inputs: Vec<ObjectMeta>,
    pub target_file_bytes: u64,
}

impl Job {
    pub fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|f| f.size).sum()
    }
}

/// The jobs a partition needs now, oldest inputs first. Files under half
/// the tier's target are merged: in an open hour (tier 1) the young files,
/// once settled, into young-size files; in a closed hour (tier 2) every
/// small file into target-size files. Each job is bounded in bytes and
/// files; a huge hour converges over several jobs and runs. A Kinesis
/// ingest file waits until its records are settled (`frontier`): until then a
/// later attempt may supersede it, which a merged copy of its rows could not be.
pub fn plan(
    listing: &PartitionListing,
    cfg: &CompactionConfig,
    now_micros: i64,
    frontier: &Frontier,
) -> Vec<Job> {
    let closed = cfg.is_closed(listing.partition, now_micros);
    let target = if closed {
        cfg.target_file_bytes
    } else {
        cfg.young_file_bytes
    };
    let settled = now_micros - cfg.young_after.as_micros() as i64;
    let retries_end = now_micros - cfg.kinesis_retry_horizon.as_micros() as i64;
    let final_rows = |f: &ObjectMeta| {
        FileName::parse(file_name(f)).is_none_or(|name| frontier.settled(&name, retries_end))
    };
    // A bundle is rewritten whatever its size, even alone: Delta readers
    // cannot take one table's row group of it (`crate::delta`).
    let mut candidates: Vec<ObjectMeta> = listing
        .visible()
        .iter()
        .filter(|f| {
            (f.size < target / 2 || is_bundle(f))
                && (closed || f.last_modified.timestamp_micros() <= settled)
                && final_rows(f)
        })
        .cloned()
        .collect();
    candidates.sort_by(|a, b| (a.last_modified, &a.location).cmp(&(b.last_modified, &b.location)));
    let mut jobs = Vec::new();
    let mut current: Vec<ObjectMeta> = Vec::new();
    let mut bytes = 0;
    for f in candidates {
        if !current.is_empty()
            && (bytes + f.size > cfg.max_job_bytes || current.len() >= cfg.max_job_files)
        {
            jobs.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += f.size;
        current.push(f);
    }
    jobs.push(current);
    jobs.into_iter()
        .filter(|inputs| inputs.len() >= 2 || inputs.iter().any(is_bundle))
        .map(|inputs| Job {
            partition: listing.partition,
            inputs,
            target_file_bytes: target,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::catalog::Snapshot;
    use crate::paths::{FileName, MICROS_PER_HOUR};

    const HOUR: i64 = 490_000;

    fn listing(files: &[(u64, i64)]) -> PartitionListing {
        let partition = Partition {
            hep_type: 1,
            hour: HOUR,
        };
        let files = files
            .iter()
            .enumerate()
            .map(|(i, &(size, modified))| ObjectMeta {
                location: partition.file(&FileName::Server {
                    writer: "w".into(),
                    micros: modified,
                    seq: i as u64,
                }),
                last_modified: DateTime::from_timestamp_micros(modified).unwrap(),
                size,
                e_tag: None,
                version: None,
            })
            .collect();
        PartitionListing::new(partition, files, vec![], vec![], Snapshot::default())
    }

    fn sizes(jobs: &[Job]) -> Vec<Vec<u64>> {
        jobs.iter()
            .map(|j| j.inputs.iter().map(|f| f.size).collect())
            .collect()
    }

    #[test]
    fn open_hour_merges_settled_small_files_only() {
        let cfg = CompactionConfig::default();
        let start = HOUR * MICROS_PER_HOUR;
        let now = start + 30 * 60_000_000;
        let young = cfg.young_after.as_micros() as i64;
        // Two settled small, one settled too big for tier 1, one not settled.
        let l = listing(&[
            (1000, now - young - 2),
            (2000, now - young - 1),
            (cfg.young_file_bytes, now - young - 3),
            (10, now - young + 1),
        ]);
        assert_eq!(
            sizes(&plan(&l, &cfg, now, &Frontier::default())),
            vec![vec![1000, 2000]]
        );
        assert_eq!(
            plan(&l, &cfg, now, &Frontier::default())[0].target_file_bytes,
            cfg.young_file_bytes
        );
        // One small file alone is left alone.
        assert!(plan(&listing(&[(1000, start)]), &cfg, now, &Frontier::default()).is_empty());
    }

    #[test]
    fn ingest_attempts_wait_until_their_records_are_settled() {
        let cfg = CompactionConfig::default();
        let start = HOUR * MICROS_PER_HOUR;
        let now = start + 2 * MICROS_PER_HOUR;
        let attempt = |first: u32, last: u32, started: i64| {
            FileName::kinesis_batch("s", &first.to_string(), &last.to_string(), started)
        };
        let partition = listing(&[]).partition;
        let files = [attempt(1, 5, start), attempt(6, 9, start + 1)]
            .iter()
            .map(|n| ObjectMeta {
                location: partition.file(n),
                last_modified: DateTime::from_timestamp_micros(start).unwrap(),
                size: 100,
                e_tag: None,
                version: None,
            })
            .collect();
        let l = PartitionListing::new(partition, files, vec![], vec![], Snapshot::default());
        let mut frontier = Frontier::default();
        l.observe(&mut frontier);
        assert!(
            plan(&l, &cfg, now, &frontier).is_empty(),
            "6..=9 may come again: only 1..=5 is settled, and one file makes no job"
        );
        frontier.observe(&attempt(10, 12, start + 2).to_string());
        assert_eq!(sizes(&plan(&l, &cfg, now, &frontier)), vec![vec![100, 100]]);
        // Past the stream's retention nothing comes again, whatever the frontier.
        let later = start + cfg.kinesis_retry_horizon.as_micros() as i64 + 2;
        assert_eq!(
            sizes(&plan(&l, &cfg, later, &Frontier::default())),
            vec![vec![100, 100]]
        );
    }

    #[test]
    fn closed_hour_jobs_are_bounded_in_bytes_and_files() {
        let cfg = CompactionConfig {
            max_job_bytes: 10_000,
            target_file_bytes: 10_000,
            max_job_files: 3,
            ..Default::default()
        };
        let start = HOUR * MICROS_PER_HOUR;
        let now = start + 2 * MICROS_PER_HOUR;
        let files: Vec<(u64, i64)> = [4000, 4000, 4000, 1, 1, 1, 1, 4999, 5000]
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, start + i as i64))
            .collect();
        let jobs = plan(&listing(&files), &cfg, now, &Frontier::default());
        assert_eq!(
            sizes(&jobs),
            vec![vec![4000, 4000], vec![4000, 1, 1], vec![1, 1, 4999]],
            "5000 is not under half the target"
        );
        assert!(jobs.iter().all(|j| j.input_bytes() <= cfg.max_job_bytes
            && j.target_file_bytes == cfg.target_file_bytes));
    }

    #[test]
    fn unsafe_settings_are_refused() {
        let d = CompactionConfig::default();
        assert_eq!(d.check(), Ok(()));
        let orphan = CompactionConfig {
            orphan_after: d.job_timeout,
            ..d.clone()
        };
        assert!(matches!(
            orphan.check(),
            Err(ConfigError::OrphanBeforeTimeout { .. })
        ));
        let one_file = CompactionConfig {
            max_job_files: 1,
            ..d.clone()
        };
        assert_eq!(one_file.check(), Err(ConfigError::TooFewJobFiles));
        let small_job = CompactionConfig {
            max_job_bytes: d.target_file_bytes - 1,
            ..d.clone()
        };
        assert_eq!(small_job.check(), Err(ConfigError::JobSmallerThanTarget));
        let small_memory = CompactionConfig {
            memory_bytes: 1 << 20,
            ..d
        };
        assert_eq!(small_memory.check(), Err(ConfigError::TooLittleMemory));
    }
}
