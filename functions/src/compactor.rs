//! Scheduled compaction: every few minutes the recent hours (young files into
//! mid-size ones, closed hours into target-size ones, retention), daily a
//! full sweep for late data into old hours (the template's schedules). Stops starting jobs well
//! before the invocation's deadline; a job is bounded in bytes, so it ends.
use std::sync::Arc;
use std::time::{Duration, Instant};

use lake::compact::{CompactionConfig, CompactionReport, Sweep};
use object_store::ObjectStore;

/// The scheduler's input: `{"sweep": "full"}` or `{}` / `{"sweep": "recent"}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CompactorEvent {
    #[serde(default)]
    pub sweep: Option<String>,
}

/// Why an invocation failed, as Lambda reports it (`errorType`, `errorMessage`).
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error("unknown sweep {0:?}: use \"recent\" or \"full\"")]
    UnknownSweep(String),
}

impl From<CompactorError> for lambda_runtime::Diagnostic {
    fn from(e: CompactorError) -> Self {
        let error_type = match e {
            CompactorError::UnknownSweep(_) => "UnknownSweep",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// Time kept back from the deadline: the longest job (bounded by max_job_bytes) must fit in it.
pub const JOB_RESERVE: Duration = Duration::from_secs(5 * 60);

/// The compaction settings, from the same variables `hepop serve` reads.
pub fn config_from_env() -> anyhow::Result<CompactionConfig> {
    let d = CompactionConfig::default();
    let num = |k: &str, default: u64| crate::env_number(k, default);
    let secs = |k: &str, default: Duration| num(k, default.as_secs()).map(Duration::from_secs);
    let retention_days = num("HEPOP_RETENTION_DAYS", d.retention_days())?;
    let cfg = CompactionConfig {
        target_file_bytes: num("HEPOP_COMPACT_TARGET_BYTES", d.target_file_bytes)?,
        young_file_bytes: num("HEPOP_COMPACT_YOUNG_BYTES", d.young_file_bytes)?,
        young_after: secs("HEPOP_COMPACT_YOUNG_AFTER_SECS", d.young_after)?,
        close_after: secs("HEPOP_COMPACT_CLOSE_AFTER_SECS", d.close_after)?,
        grace: secs("HEPOP_COMPACT_GRACE_SECS", d.grace)?,
        max_job_bytes: num("HEPOP_COMPACT_MAX_JOB_BYTES", d.max_job_bytes)?,
        memory_bytes: num("HEPOP_COMPACT_MEMORY_MB", d.memory_bytes >> 20)? << 20,
        recent_hours: num("HEPOP_COMPACT_RECENT_HOURS", d.recent_hours as u64)? as i64,
        // Past the stream's retention (and a day) no ingest attempt comes again.
        kinesis_retry_horizon: Duration::from_secs(
            (num(
                "HEPOP_KINESIS_RETENTION_HOURS",
                d.kinesis_retry_horizon.as_secs() / 3600 - 24,
            )? + 24)
                * 3600,
        ),
        ..d
    }
    .with_retention_days(retention_days);
    cfg.check()
        .map_err(|e| anyhow::anyhow!("compaction settings: {e}"))?;
    Ok(cfg)
}

pub async fn handle(
    store: &Arc<dyn ObjectStore>,
    cfg: &CompactionConfig,
    event: &CompactorEvent,
    deadline: Option<Instant>,
) -> Result<CompactionReport, CompactorError> {
    let sweep = match event.sweep.as_deref() {
        Some("full") => Sweep::Full,
        None | Some("recent") => Sweep::Recent,
        Some(other) => return Err(CompactorError::UnknownSweep(other.to_owned())),
    };
    let stop_at = deadline.map(|d| d.checked_sub(JOB_RESERVE).unwrap_or(d));
    let r = lake::compact::run(
        store,
        cfg,
        chrono::Utc::now().timestamp_micros(),
        sweep,
        stop_at,
    )
    .await;
    for e in &r.errors {
        tracing::warn!(error = %e, "partition failed; the run went on");
    }
    tracing::info!(?sweep, report = ?r, "compaction run");
    Ok(r)
}
