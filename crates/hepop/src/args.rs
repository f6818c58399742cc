//! Flags shared by `serve` and `compact`. Every default comes from the
//! library's own config struct, so there is one owner per default.
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;

use hep::TimeWindow;
use lake::compact::CompactionConfig;
use web::ApiTokens;

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

static QUERY: LazyLock<lake::engine::QueryLimits> = LazyLock::new(Default::default);

/// Who may use the HTTP API, and over what.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address for the HTTP API. Default: --host when API tokens are set, else 127.0.0.1.
    #[arg(long = "http-host", env = "HTTP_HOST")]
    pub http_host: Option<IpAddr>,
    /// Bearer token the HTTP API requires (every route but /health); repeat or comma-separate to rotate.
    #[arg(
        long = "api-token",
        env = "HEPOP_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<String>,
    /// File of API tokens, one per line (`#` starts a comment).
    #[arg(long = "api-token-file", env = "HEPOP_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// HTTP(S) connections at once; one more is closed at once (counted). Fits in the descriptors HEPop keeps for itself.
    #[arg(long = "http-max-connections", env = "HEPOP_HTTP_MAX_CONNECTIONS", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub http_max_connections: u32,
    /// A request's head must arrive within this; also how long an idle keep-alive connection is kept.
    #[arg(long = "http-header-timeout-secs", env = "HEPOP_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_secs: u64,
    /// A response the client does not read for this long closes the connection.
    #[arg(long = "http-stall-timeout-secs", env = "HEPOP_HTTP_STALL_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_stall_timeout_secs: u64,
    /// Host names the HTTP API answers when it has no token, besides localhost and IP addresses (comma-separated); others get 421.
    #[arg(
        long = "http-allowed-hosts",
        env = "HEPOP_HTTP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub http_allowed_hosts: Vec<String>,
    /// Serve the HTTP API on a non-loopback address with NO token: anyone who reaches the port reads every stored call.
    #[arg(long = "insecure-public-http", env = "HEPOP_INSECURE_PUBLIC_HTTP")]
    pub insecure_public_http: bool,
    /// PEM certificate chain: the HTTP API speaks HTTPS.
    #[arg(
        long = "http-tls-cert",
        env = "HEPOP_HTTP_TLS_CERT",
        requires = "http_tls_key"
    )]
    pub http_tls_cert: Option<PathBuf>,
    /// PEM private key of --http-tls-cert.
    #[arg(
        long = "http-tls-key",
        env = "HEPOP_HTTP_TLS_KEY",
        requires = "http_tls_cert"
    )]
    pub http_tls_key: Option<PathBuf>,
}

impl HttpArgs {
    pub fn tokens(&self) -> anyhow::Result<ApiTokens> {
        let flags = ApiTokens::new(&self.api_tokens).context("--api-token")?;
        let Some(path) = &self.api_token_file else {
            return Ok(flags);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading API token file {}", path.display()))?;
        let file = ApiTokens::parse_file(&text)
            .with_context(|| format!("API token file {}", path.display()))?;
        Ok(flags.merged(&file))
    }

    pub fn allowed_hosts(&self) -> anyhow::Result<web::AllowedHosts> {
        web::AllowedHosts::new(&self.http_allowed_hosts).context("--http-allowed-hosts")
    }

    /// The HTTP API's address: public only with a token, or when insecurity is asked for by name.
    pub fn bind(&self, hep_host: IpAddr, has_tokens: bool) -> anyhow::Result<IpAddr> {
        http_bind(
            hep_host,
            self.http_host,
            has_tokens,
            self.insecure_public_http,
        )
    }

    pub fn tls(&self) -> anyhow::Result<Option<rustls::ServerConfig>> {
        match (&self.http_tls_cert, &self.http_tls_key) {
            (Some(cert), Some(key)) => Ok(Some(listen::tls::server_config(cert, key)?)),
            _ => Ok(None),
        }
    }
}

/// Pure rule behind [`HttpArgs::bind`].
pub fn http_bind(
    hep_host: IpAddr,
    http_host: Option<IpAddr>,
    has_tokens: bool,
    insecure_public: bool,
) -> anyhow::Result<IpAddr> {
    let open = has_tokens || insecure_public;
    let addr = match http_host {
        Some(a) => a,
        None if open => hep_host,
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    anyhow::ensure!(
        open || addr.is_loopback(),
        "refusing to serve the HTTP API on {addr} without an API token: anyone reaching it could read every stored call. \
         Set --api-token or --api-token-file (or HEPOP_API_TOKENS), or pass --insecure-public-http to do it anyway"
    );
    Ok(addr)
}

/// Limits on what one query, and all of them together, may take.
#[derive(clap::Args, Debug, Clone)]
pub struct QueryArgs {
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

impl QueryArgs {
    pub fn limits(&self, default_ahead: Duration) -> anyhow::Result<lake::engine::QueryLimits> {
        anyhow::ensure!(
            self.query_concurrency > 0,
            "--query-concurrency must be more than 0"
        );
        anyhow::ensure!(
            self.query_timeout_secs > 0,
            "--query-timeout-secs must be more than 0"
        );
        anyhow::ensure!(
            self.query_max_rows > 0,
            "--query-max-rows must be more than 0"
        );
        anyhow::ensure!(
            self.query_memory_mb >= 16,
            "--query-memory-mb must be at least 16"
        );
        anyhow::ensure!(
            self.max_response_mb > 0,
            "--max-response-mb must be more than 0"
        );
        Ok(lake::engine::QueryLimits {
            timeout: Duration::from_secs(self.query_timeout_secs),
            max_rows: self.query_max_rows,
            memory_bytes: self.query_memory_mb << 20,
            default_ahead,
            max_concurrent: self.query_concurrency,
            threads: self.query_threads,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_public_only_with_a_token_or_by_name() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(http_bind(any, None, false, false).unwrap(), lo);
        assert_eq!(http_bind(any, None, true, false).unwrap(), any);
        assert_eq!(http_bind(any, None, false, true).unwrap(), any);
        let e = http_bind(lo, Some(any), false, false).unwrap_err();
        assert!(e.to_string().contains("--insecure-public-http"), "{e}");
        assert_eq!(http_bind(any, Some(any), true, false).unwrap(), any);
        assert_eq!(
            http_bind(any, Some("::1".parse().unwrap()), false, false).unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        );
    }
}
