//! Each function's settings: the clap structs `hepop serve` flattens, read
//! here from the environment alone (a Lambda has no command line), so a
//! `HEPOP_*` variable means the same to both, parsed by the same rule.
use std::time::Duration;

use clap::Parser;
use lake::compact::CompactionConfig;
use lake::settings::{CaptureSettings, CompactionSettings, SettingsError};

use crate::ingest::IngestConfig;

/// Where the lake is.
#[derive(clap::Args, Debug, Clone)]
pub struct LakeSettings {
    /// The lake: s3://bucket/prefix (or a directory).
    #[arg(long = "lake", env = "HEPOP_LAKE")]
    pub lake: String,
}

impl LakeSettings {
    pub fn open(&self) -> Result<std::sync::Arc<dyn object_store::ObjectStore>, lake::LakeError> {
        lake::store::open(&self.lake)
    }
}

/// The ingest function's settings.
#[derive(Parser, Debug, Clone)]
#[command(name = "ingest")]
pub struct IngestSettings {
    #[command(flatten)]
    pub lake: LakeSettings,
    #[command(flatten)]
    pub capture: CaptureSettings,
}

impl IngestSettings {
    pub fn config(&self) -> Result<IngestConfig, EnvError> {
        Ok(IngestConfig {
            window: self.capture.window(),
            aleg_headers: self.capture.aleg_headers().map_err(named::<Self>)?,
        })
    }
}

/// The compactor function's settings.
#[derive(Parser, Debug, Clone)]
#[command(name = "compactor")]
pub struct CompactorSettings {
    #[command(flatten)]
    pub lake: LakeSettings,
    #[command(flatten)]
    pub compaction: CompactionSettings,
    /// Retention of the Kinesis stream, hours: an ingest file is settled once no retry of its records can come.
    #[arg(long = "kinesis-retention-hours", env = "HEPOP_KINESIS_RETENTION_HOURS",
          default_value_t = CompactionConfig::default().kinesis_retry_horizon.as_secs() / 3600 - RETRY_MARGIN_HOURS)]
    pub kinesis_retention_hours: u64,
}

/// Past the stream's retention, a day more before no ingest attempt can come again.
const RETRY_MARGIN_HOURS: u64 = 24;

impl CompactorSettings {
    pub fn config(&self) -> Result<CompactionConfig, EnvError> {
        let hours = self.kinesis_retention_hours.min(24 * 366) + RETRY_MARGIN_HOURS;
        Ok(CompactionConfig {
            kinesis_retry_horizon: Duration::from_secs(hours * 3600),
            ..self.compaction.config().map_err(named::<Self>)?
        })
    }
}

/// The query function's settings.
#[derive(Parser, Debug, Clone)]
#[command(name = "query")]
pub struct QuerySettings {
    #[command(flatten)]
    pub lake: LakeSettings,
    #[command(flatten)]
    pub tokens: web::TokenSettings,
}

/// A setting in the environment that cannot be used, named by its variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(String);

/// A function's settings from its environment alone.
pub fn from_env<S: Parser>() -> Result<S, EnvError> {
    let cmd = S::command();
    S::try_parse_from([cmd.get_name()]).map_err(|e| EnvError(by_variable(&cmd, &e.to_string())))
}

fn named<S: Parser>(e: SettingsError) -> EnvError {
    EnvError(by_variable(&S::command(), &e.to_string()))
}

/// clap's message (its first paragraph) with each flag named by its variable:
/// a function is configured by variables only.
fn by_variable(cmd: &clap::Command, message: &str) -> String {
    let mut text = message
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for arg in cmd.get_arguments() {
        if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
            let value = arg
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| format!(" <{v}>"))
                .unwrap_or_else(|| format!(" <{}>", arg.get_id().as_str().to_uppercase()));
            let env = env.to_string_lossy();
            text = text
                .replace(&format!("--{long}{value}"), &env)
                .replace(&format!("--{long}"), &env);
        }
    }
    text
}
