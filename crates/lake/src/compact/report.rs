//! What a run is asked to visit and what it reports: the sweep, the counts,
//! and each failure it went on past.

/// Which hours a run visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// The open hour and the `recent_hours` before it: what ingest is writing
    /// now. Listed directly: no directory LIST.
    Recent,
    /// Every hour (late data into old hours): run now and then.
    Full,
}

impl std::str::FromStr for Sweep {
    type Err = UnknownSweep;

    /// `recent` or `full`: how schedules and the compactor's events name them.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "recent" => Ok(Sweep::Recent),
            "full" => Ok(Sweep::Full),
            other => Err(UnknownSweep(other.to_owned())),
        }
    }
}

/// A sweep name that is neither `recent` nor `full`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sweep {0:?}: use \"recent\" or \"full\"")]
pub struct UnknownSweep(pub String);

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
    /// Hours whose records were not built: more SIP rows than the memory allows.
    pub call_hours_too_large: usize,
    /// Every step that failed; the run went on past each.
    pub errors: Vec<RunError>,
}

/// One failure of a compaction run: what it was doing, on what, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunError {
    pub step: Step,
    /// The table, partition, hour or object it was about.
    pub of: String,
    pub error: String,
}

impl RunError {
    pub fn new(step: Step, of: impl std::fmt::Display, error: impl std::fmt::Display) -> Self {
        Self {
            step,
            of: of.to_string(),
            error: error.to_string(),
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} of {}: {}", self.step, self.of, self.error)
    }
}

/// The steps of a run, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    List,
    OpenTable,
    Retention,
    Compaction,
    Mirror,
    CallRecords,
    Checkpoint,
    CleanUp,
}
