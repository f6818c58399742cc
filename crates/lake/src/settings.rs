//! The lake's settings as flags and `HEPOP_*` variables: one clap struct per
//! concern, flattened by `hepop` and parsed by the Lambdas from their
//! environment alone, so both read every setting by the same rule. Each
//! default comes from the config struct it fills.
use std::sync::LazyLock;
use std::time::Duration;

use hep::TimeWindow;

use crate::compact::CompactionConfig;
use crate::engine::QueryLimits;
use crate::rows::{AlegHeaders, parse_aleg_headers};

/// A setting that parsed but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Compaction(#[from] crate::compact::ConfigError),
    #[error("--aleg-headers: {0}")]
    AlegHeaders(String),
    #[error("{flag} must be at least {min}")]
    TooSmall { flag: &'static str, min: u64 },
}

static COMPACTION: LazyLock<CompactionConfig> = LazyLock::new(CompactionConfig::default);
static TIME: LazyLock<TimeWindow> = LazyLock::new(TimeWindow::default);
static QUERY: LazyLock<QueryLimits> = LazyLock::new(QueryLimits::default);

/// How files are merged and how long hours are kept.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Target size of compacted files of closed hours, bytes.
    #[arg(long = "compact-target-bytes", visible_alias = "target-bytes", env = "HEPOP_COMPACT_TARGET_BYTES", default_value_t = COMPACTION.target_file_bytes)]
    pub target_bytes: u64,
    /// Young files (the current hour's too) are merged into files of this size, bytes.
    #[arg(long = "compact-young-bytes", env = "HEPOP_COMPACT_YOUNG_BYTES", default_value_t = COMPACTION.young_file_bytes)]
    pub young_bytes: u64,
    /// A file is merged with other young ones once it is this old.
    #[arg(long = "compact-young-after-secs", env = "HEPOP_COMPACT_YOUNG_AFTER_SECS", default_value_t = COMPACTION.young_after.as_secs())]
    pub young_after_secs: u64,
    /// How long replaced files stay after a compaction (must exceed the query timeout; 0 only with no server querying).
    #[arg(long = "compact-grace-secs", visible_alias = "grace-secs", env = "HEPOP_COMPACT_GRACE_SECS", default_value_t = COMPACTION.grace.as_secs())]
    pub grace_secs: u64,
    /// An hour is closed (merged into target-size files) this long after it ends.
    #[arg(long = "compact-close-after-secs", visible_alias = "close-after-secs", env = "HEPOP_COMPACT_CLOSE_AFTER_SECS", default_value_t = COMPACTION.close_after.as_secs())]
    pub close_after_secs: u64,
    /// One compaction job reads at most this many bytes (bounds its duration).
    #[arg(long = "compact-max-job-bytes", env = "HEPOP_COMPACT_MAX_JOB_BYTES", default_value_t = COMPACTION.max_job_bytes)]
    pub max_job_bytes: u64,
    /// Memory one compaction job may use, MiB.
    #[arg(long = "compact-memory-mb", env = "HEPOP_COMPACT_MEMORY_MB", default_value_t = COMPACTION.memory_bytes >> 20)]
    pub memory_mb: u64,
    /// Hours before the current one a recent sweep visits (older ones: the full sweep).
    #[arg(long = "compact-recent-hours", env = "HEPOP_COMPACT_RECENT_HOURS", default_value_t = COMPACTION.recent_hours as u64)]
    pub recent_hours: u64,
    /// Delete hours older than this many days (0 keeps everything).
    #[arg(long = "retention-days", env = "HEPOP_RETENTION_DAYS", default_value_t = COMPACTION.retention_days())]
    pub retention_days: u64,
}

impl CompactionSettings {
    pub fn config(&self) -> Result<CompactionConfig, SettingsError> {
        let cfg = CompactionConfig {
            target_file_bytes: self.target_bytes,
            young_file_bytes: self.young_bytes,
            young_after: Duration::from_secs(self.young_after_secs),
            grace: Duration::from_secs(self.grace_secs),
            close_after: Duration::from_secs(self.close_after_secs),
            max_job_bytes: self.max_job_bytes,
            memory_bytes: self.memory_mb << 20,
            recent_hours: self.recent_hours.min(24 * 366) as i64,
            ..CompactionConfig::default()
        }
        .with_retention_days(self.retention_days);
        cfg.check()?;
        Ok(cfg)
    }
}

/// How captured messages become rows: which capture times are believed, and
/// where a B leg names its A leg.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// Capture times older than this before arrival are replaced by the arrival time (original kept in `original_time`).
    #[arg(long = "max-capture-age-secs", env = "HEPOP_MAX_CAPTURE_AGE_SECS", default_value_t = (TIME.max_age_micros / 1_000_000) as u64)]
    pub max_age_secs: u64,
    /// ...and capture times further ahead of arrival than this.
    #[arg(long = "max-capture-ahead-secs", env = "HEPOP_MAX_CAPTURE_AHEAD_SECS", default_value_t = (TIME.max_ahead_micros / 1_000_000) as u64)]
    pub max_ahead_secs: u64,
    /// Keep every capture time as sent (importing old captures).
    #[arg(long = "accept-any-time", env = "HEPOP_ACCEPT_ANY_TIME")]
    pub accept_any: bool,
    /// SIP headers that carry the A leg's Call-ID in a B leg, first preferred, comma-separated (stored in `aleg_id`; empty: none).
    #[arg(long = "aleg-headers", env = "HEPOP_ALEG_HEADERS", default_value_t = hep::sip::DEFAULT_ALEG_HEADERS.join(","))]
    pub aleg_headers: String,
}

impl CaptureSettings {
    pub fn window(&self) -> TimeWindow {
        // Clamped so the microseconds fit an i64 (about 292,000 years).
        let micros = |secs: u64| secs.min(i64::MAX as u64 / 1_000_000) as i64 * 1_000_000;
        TimeWindow {
            max_age_micros: micros(self.max_age_secs),
            max_ahead_micros: micros(self.max_ahead_secs),
            accept_any: self.accept_any,
        }
    }

    pub fn aleg_headers(&self) -> Result<AlegHeaders, SettingsError> {
        parse_aleg_headers(&self.aleg_headers).map_err(SettingsError::AlegHeaders)
    }
}

/// Limits on what one query, and all of them together, may take.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct QuerySettings {
    /// A query running longer is cancelled (answered with an error).
    #[arg(long, env = "HEPOP_QUERY_TIMEOUT_SECS", default_value_t = QUERY.timeout.as_secs())]
    pub query_timeout_secs: u64,
    /// A result with more rows is refused.
    #[arg(long, env = "HEPOP_QUERY_MAX_ROWS", default_value_t = QUERY.max_rows)]
    pub query_max_rows: usize,
    /// Memory pool for sorts, joins, aggregates and what string functions build, MiB.
    #[arg(long, env = "HEPOP_QUERY_MEMORY_MB", default_value_t = QUERY.memory_bytes >> 20)]
    pub query_memory_mb: usize,
    /// Queries running at once; one more is answered 429 with Retry-After.
    #[arg(long, env = "HEPOP_QUERY_CONCURRENCY", default_value_t = QUERY.max_concurrent)]
    pub query_concurrency: usize,
    /// Threads of the query pool, apart from ingest (0: one per core, at a lower priority).
    #[arg(long, env = "HEPOP_QUERY_THREADS", default_value_t = QUERY.threads)]
    pub query_threads: usize,
    /// Largest response body, MiB (encoded size); bigger results get a 400 that says how to page.
    #[arg(long, env = "HEPOP_MAX_RESPONSE_MB", default_value_t = 64)]
    pub max_response_mb: usize,
}

impl QuerySettings {
    /// The limits, with queries without a time condition reaching `default_ahead` past now.
    pub fn limits(&self, default_ahead: Duration) -> Result<QueryLimits, SettingsError> {
        at_least("--query-concurrency", self.query_concurrency as u64, 1)?;
        at_least("--query-timeout-secs", self.query_timeout_secs, 1)?;
        at_least("--query-max-rows", self.query_max_rows as u64, 1)?;
        at_least("--query-memory-mb", self.query_memory_mb as u64, 16)?;
        at_least("--max-response-mb", self.max_response_mb as u64, 1)?;
        Ok(QueryLimits {
            timeout: Duration::from_secs(self.query_timeout_secs),
            max_rows: self.query_max_rows,
            memory_bytes: self.query_memory_mb << 20,
            default_ahead,
            max_concurrent: self.query_concurrency,
            threads: self.query_threads,
            ..Default::default()
        })
    }

    pub fn max_response_bytes(&self) -> usize {
        self.max_response_mb << 20
    }
}

fn at_least(flag: &'static str, value: u64, min: u64) -> Result<(), SettingsError> {
    if value < min {
        return Err(SettingsError::TooSmall { flag, min });
    }
    Ok(())
}

/// One setting of a command as the README's tables list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingRow {
    /// `--flag`, or empty for a setting read only from the environment.
    pub flag: String,
    pub env: String,
    /// As clap shows it, `off` for a switch, empty when there is none.
    pub default: String,
    /// Its help, on one line.
    pub help: String,
}

/// Every setting `cmd` reads from the environment, in declaration order:
/// what its documentation must list.
pub fn setting_rows(cmd: &clap::Command) -> Vec<SettingRow> {
    cmd.get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            let default = if matches!(a.get_action(), clap::ArgAction::SetTrue) {
                "off".to_owned()
            } else {
                a.get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            Some(SettingRow {
                flag: a.get_long().map(|l| format!("--{l}")).unwrap_or_default(),
                env,
                default,
                help: help.trim_end_matches('.').replace('|', "\\|"),
            })
        })
        .collect()
}

/// `rows` as a Markdown table: flag, variable, default (with its size or
/// duration spelled out), meaning.
pub fn markdown_table(rows: &[SettingRow]) -> String {
    let mut out = String::from("| flag | env | default | |\n|---|---|---|---|\n");
    for r in rows {
        let code = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("`{s}`")
            }
        };
        let default = match spelled_out(&r.flag, &r.default) {
            Some(s) => format!("{} ({s})", code(&r.default)),
            None if r.default.is_empty() => "none".to_owned(),
            None => code(&r.default),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            code(&r.flag),
            code(&r.env),
            default,
            r.help
        ));
    }
    out
}

/// The table a document keeps for `command` between
/// `<!-- settings: <command> -->` and `<!-- /settings -->`, if it has one.
pub fn documented_table<'a>(doc: &'a str, command: &str) -> Option<&'a str> {
    let start = format!("<!-- settings: {command} -->\n");
    let from = doc.find(&start)? + start.len();
    let len = doc[from..].find("<!-- /settings -->")?;
    Some(&doc[from..from + len])
}

/// A byte count in MiB/GiB, seconds in hours/days: how a reader checks a default.
fn spelled_out(flag: &str, value: &str) -> Option<String> {
    let n: u64 = value.parse().ok()?;
    if flag.ends_with("-bytes") && n >= 1 << 20 {
        return Some(if n.is_multiple_of(1 << 30) {
            format!("{} GiB", n >> 30)
        } else {
            format!("{} MiB", n >> 20)
        });
    }
    if flag.ends_with("-secs") && n >= 3600 && n.is_multiple_of(3600) {
        let hours = n / 3600;
        return Some(match hours {
            1 => "1 hour".into(),
            h if h.is_multiple_of(24) => format!("{} days", h / 24),
            h => format!("{h} hours"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct All {
        #[command(flatten)]
        compaction: CompactionSettings,
        #[command(flatten)]
        capture: CaptureSettings,
        #[command(flatten)]
        query: QuerySettings,
    }

    #[test]
    fn defaults_are_the_config_structs_defaults() {
        let all = All::try_parse_from(["t"]).unwrap();
        assert_eq!(
            all.compaction.config().unwrap(),
            CompactionConfig::default()
        );
        assert_eq!(all.capture.window(), TimeWindow::default());
        assert_eq!(
            all.capture.aleg_headers().unwrap(),
            crate::rows::default_aleg_headers()
        );
        let d = QueryLimits::default();
        let limits = all.query.limits(d.default_ahead).unwrap();
        assert_eq!(
            (limits.timeout, limits.max_rows, limits.memory_bytes),
            (d.timeout, d.max_rows, d.memory_bytes)
        );
        assert_eq!(
            (limits.max_concurrent, limits.threads),
            (d.max_concurrent, d.threads)
        );
    }

    #[test]
    fn a_setting_that_cannot_work_is_refused_by_name() {
        let all = All::try_parse_from(["t", "--query-memory-mb", "8", "--aleg-headers", "X CID"])
            .unwrap();
        let e = all.query.limits(Duration::ZERO).unwrap_err();
        assert_eq!(e.to_string(), "--query-memory-mb must be at least 16");
        let e = all.capture.aleg_headers().unwrap_err();
        assert!(e.to_string().starts_with("--aleg-headers: "), "{e}");
        let all = All::try_parse_from(["t", "--compact-max-job-bytes", "1024"]).unwrap();
        assert!(matches!(
            all.compaction.config(),
            Err(SettingsError::Compaction(_))
        ));
        // Malformed numbers stop at parsing, naming the flag.
        let e = All::try_parse_from(["t", "--retention-days=a month"]).unwrap_err();
        assert!(e.to_string().contains("--retention-days"), "{e}");
    }

    #[test]
    fn rows_list_flag_variable_default_and_meaning() {
        let rows = setting_rows(&All::command());
        let young = rows
            .iter()
            .find(|r| r.env == "HEPOP_COMPACT_YOUNG_BYTES")
            .unwrap();
        assert_eq!(young.flag, "--compact-young-bytes");
        assert_eq!(young.default, (16u64 << 20).to_string());
        assert_eq!(
            young.help,
            "Young files (the current hour's too) are merged into files of this size, bytes"
        );
        let table = markdown_table(std::slice::from_ref(young));
        assert!(
            table.contains(
                "| `--compact-young-bytes` | `HEPOP_COMPACT_YOUNG_BYTES` | `16777216` (16 MiB) |"
            ),
            "{table}"
        );
        assert_eq!(
            spelled_out("--max-capture-age-secs", "604800").unwrap(),
            "7 days"
        );
        assert_eq!(spelled_out("--x-secs", "3600").unwrap(), "1 hour");
        assert_eq!(spelled_out("--x-secs", "120"), None);
        // Every setting has a variable: the Lambdas have no flags.
        let settings = All::command();
        let args = settings.get_arguments().filter(|a| a.get_id() != "help");
        assert_eq!(rows.len(), args.count());
    }
}
