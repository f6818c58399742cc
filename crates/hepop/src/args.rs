//! The server's own flags. Settings the Lambdas share live in the library
//! that owns them (`lake::settings`, `web::TokenSettings`, `listen::args`).
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::Context;

use web::ApiTokens;

/// Where the lake lives.
#[derive(clap::Args, Debug, Clone)]
pub struct LakeArgs {
    /// Where the lake lives: a directory, or s3://bucket/prefix.
    #[arg(long = "data", env = "PARQUET_DIR", default_value = "./data")]
    pub data: String,
}

/// Who may use the HTTP API, and over what.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address for the HTTP API. Default: --host when API tokens are set, else 127.0.0.1.
    #[arg(long = "http-host", env = "HTTP_HOST")]
    pub http_host: Option<IpAddr>,
    #[command(flatten)]
    pub tokens: web::TokenSettings,
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
        Ok(self.tokens.tokens()?)
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
