//! The HEP listener flags `hepop serve` and `edge-relay` share, with their
//! defaults taken from [`StreamLimits`]: one definition, one owner.
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use thiserror::Error;

use crate::auth::{AuthKeyError, AuthKeys};
use crate::stream::StreamLimits;
use crate::tls::{TlsAcceptor, TlsError};

static LIMITS: LazyLock<StreamLimits> = LazyLock::new(StreamLimits::default);

/// HEP over TLS listens here unless told otherwise.
pub const DEFAULT_TLS_PORT: u16 = 9061;

#[derive(Debug, Error)]
pub enum ListenArgsError {
    #[error("reading HEP auth key file {0}: {1}")]
    KeyFile(PathBuf, std::io::Error),
    #[error("HEP auth keys: {0}")]
    Keys(#[from] AuthKeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0} must be more than 0")]
    Zero(&'static str),
}

#[derive(clap::Args, Debug, Clone)]
pub struct HepListenArgs {
    /// Accept only HEP packets carrying one of these auth keys, each `name=secret` (rows store the
    /// name, never the secret) or a bare secret (named key<N>); repeat or comma-separate.
    #[arg(
        long = "auth-key",
        env = "HEP_AUTH_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_keys: Vec<String>,
    /// File of HEP auth keys, one `name=secret` per line (`#` starts a comment).
    #[arg(long = "auth-key-file", env = "HEP_AUTH_KEY_FILE")]
    pub auth_key_file: Option<PathBuf>,
    /// PEM certificate chain: turns on HEP over TLS on --tls-port.
    #[arg(long = "tls-cert", env = "HEP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key", env = "HEP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Port for HEP over TLS (with --tls-cert; 0 picks a free one).
    #[arg(long = "tls-port", env = "HEP_TLS_PORT", default_value_t = DEFAULT_TLS_PORT)]
    pub tls_port: u16,
    /// HEP stream connections open at once, TCP and TLS each; more are closed at once (counted).
    #[arg(long = "max-connections", env = "HEP_MAX_CONNECTIONS", default_value_t = LIMITS.max_connections)]
    pub max_connections: usize,
    /// A HEP stream connection silent this long is closed.
    #[arg(long = "idle-timeout-secs", env = "HEP_IDLE_TIMEOUT_SECS", default_value_t = LIMITS.idle_timeout.as_secs_f64())]
    pub idle_timeout_secs: f64,
    /// A HEP frame must arrive whole within this long of its first byte (slow senders are cut off).
    #[arg(long = "frame-timeout-secs", env = "HEP_FRAME_TIMEOUT_SECS", default_value_t = LIMITS.frame_timeout.as_secs_f64())]
    pub frame_timeout_secs: f64,
}

fn positive_secs(v: f64, name: &'static str) -> Result<Duration, ListenArgsError> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or(ListenArgsError::Zero(name))
}

impl HepListenArgs {
    /// The configured keys, from the flags and the file together.
    pub fn auth_keys(&self) -> Result<AuthKeys, ListenArgsError> {
        let keys = AuthKeys::new(&self.auth_keys)?;
        match &self.auth_key_file {
            None => Ok(keys),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ListenArgsError::KeyFile(path.clone(), e))?;
                Ok(keys.merged(AuthKeys::parse_file(&text)?)?)
            }
        }
    }

    /// The TLS acceptor when --tls-cert and --tls-key are given.
    pub fn tls(&self) -> Result<Option<TlsAcceptor>, ListenArgsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::acceptor(cert, key)?)),
            _ => Ok(None),
        }
    }

    /// The stream limits, the connection cap fitted to the open-files limit
    /// (raised to its maximum) for TCP, and TLS when configured.
    pub fn limits(&self) -> Result<StreamLimits, ListenArgsError> {
        if self.max_connections == 0 {
            return Err(ListenArgsError::Zero("--max-connections"));
        }
        let listeners = if self.tls_cert.is_some() { 2 } else { 1 };
        let max_connections = crate::stream::fit_connections(self.max_connections, listeners);
        if max_connections < self.max_connections {
            tracing::warn!(
                wanted = self.max_connections,
                max_connections,
                "HEP connection cap lowered to fit the open-files limit (raise `ulimit -n`)"
            );
        }
        Ok(StreamLimits {
            max_connections,
            idle_timeout: positive_secs(self.idle_timeout_secs, "--idle-timeout-secs")?,
            frame_timeout: positive_secs(self.frame_timeout_secs, "--frame-timeout-secs")?,
            ..StreamLimits::default()
        })
    }
}
