//! Flags shared by `serve` and `compact`. Every default comes from the
//! library's own config struct, so there is one owner per default.
use std::sync::LazyLock;
use std::time::Duration;

use hep::TimeWindow;
use lake::compact::CompactionConfig;

static COMPACTION: LazyLock<CompactionConfig> = LazyLock::new(CompactionConfig::default);
static TIME: LazyLock<TimeWindow> = LazyLock::new(TimeWindow::default);

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

#[derive(clap::Args, Debug, Clone)]
pub struct CompactionArgs {
    /// Target size of compacted files of closed hours, bytes.
    #[arg(long = "compact-target-bytes", visible_alias = "target-bytes", env = "HEPOP_COMPACT_TARGET_BYTES", default_value_t = COMPACTION.target_file_bytes)]
    pub target_bytes: u64,
    /// Young files (the current hour's too) are merged into files of this size, bytes.
    #[arg(long = "compact-young-bytes", env = "HEPOP_COMPACT_YOUNG_BYTES", default_value_t = COMPACTION.young_file_bytes)]
    pub young_bytes: u64,
    /// A file is merged with other young ones once it is this old.
    #[arg(long = "compact-young-after-secs", env = "HEPOP_COMPACT_YOUNG_AFTER_SECS", default_value_t = secs(COMPACTION.young_after))]
    pub young_after_secs: u64,
    /// How long replaced files stay after a compaction (must exceed the query timeout; 0 only with no server querying).
    #[arg(long = "compact-grace-secs", visible_alias = "grace-secs", env = "HEPOP_COMPACT_GRACE_SECS", default_value_t = secs(COMPACTION.grace))]
    pub grace_secs: u64,
    /// An hour is closed (merged into target-size files) this long after it ends.
    #[arg(long = "compact-close-after-secs", visible_alias = "close-after-secs", env = "HEPOP_COMPACT_CLOSE_AFTER_SECS", default_value_t = secs(COMPACTION.close_after))]
    pub close_after_secs: u64,
    /// One compaction job reads at most this many bytes (bounds its duration).
    #[arg(long = "compact-max-job-bytes", env = "HEPOP_COMPACT_MAX_JOB_BYTES", default_value_t = COMPACTION.max_job_bytes)]
    pub max_job_bytes: u64,
    /// Memory one compaction job may use, MiB.
    #[arg(long = "compact-memory-mb", env = "HEPOP_COMPACT_MEMORY_MB", default_value_t = COMPACTION.memory_bytes >> 20)]
    pub memory_mb: u64,
    /// Delete hours older than this many days (0 keeps everything).
    #[arg(long = "retention-days", env = "HEPOP_RETENTION_DAYS", default_value_t = COMPACTION.retention_days())]
    pub retention_days: u64,
}

impl CompactionArgs {
    pub fn config(&self) -> anyhow::Result<CompactionConfig> {
        let cfg = CompactionConfig {
            target_file_bytes: self.target_bytes,
            young_file_bytes: self.young_bytes,
            young_after: Duration::from_secs(self.young_after_secs),
            grace: Duration::from_secs(self.grace_secs),
            close_after: Duration::from_secs(self.close_after_secs),
            max_job_bytes: self.max_job_bytes,
            memory_bytes: self.memory_mb << 20,
            ..CompactionConfig::default()
        }
        .with_retention_days(self.retention_days);
        cfg.check()
            .map_err(|e| anyhow::anyhow!("compaction settings: {e}"))?;
        Ok(cfg)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct TimeArgs {
    /// Capture times older than this before arrival are replaced by the arrival time (original kept in `original_time`).
    #[arg(long = "max-capture-age-secs", env = "HEPOP_MAX_CAPTURE_AGE_SECS", default_value_t = (TIME.max_age_micros / 1_000_000) as u64)]
    pub max_age_secs: u64,
    /// ...and capture times further ahead of arrival than this.
    #[arg(long = "max-capture-ahead-secs", env = "HEPOP_MAX_CAPTURE_AHEAD_SECS", default_value_t = (TIME.max_ahead_micros / 1_000_000) as u64)]
    pub max_ahead_secs: u64,
    /// Keep every capture time as sent (importing old captures).
    #[arg(long = "accept-any-time", env = "HEPOP_ACCEPT_ANY_TIME")]
    pub accept_any: bool,
}

impl TimeArgs {
    pub fn window(&self) -> TimeWindow {
        TimeWindow {
            max_age_micros: self.max_age_secs as i64 * 1_000_000,
            max_ahead_micros: self.max_ahead_secs as i64 * 1_000_000,
            accept_any: self.accept_any,
        }
    }
}
