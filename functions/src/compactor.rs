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
    #[error(transparent)]
    UnknownSweep(#[from] lake::compact::UnknownSweep),
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

pub async fn handle(
    store: &Arc<dyn ObjectStore>,
    cfg: &CompactionConfig,
    event: &CompactorEvent,
    deadline: Option<Instant>,
) -> Result<CompactionReport, CompactorError> {
    let sweep = match event.sweep.as_deref() {
        None => Sweep::Recent,
        Some(name) => name.parse::<Sweep>()?,
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
