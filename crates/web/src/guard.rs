//! What a browser may do with the API. A page an operator opens can make the
//! browser send requests to 127.0.0.1 under a name its author controls
//! (DNS rebinding); with no token, the `Host` header is all that tells such a
//! request apart, so a tokenless API serves only the names in
//! [`AllowedHosts`]. Every response carries headers that keep the UI out of
//! frames, scripts to the server's own, and data out of caches.
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostError {
    #[error(
        "allowed host {0:?} is not a host name (letters, digits, '-', '.'; no port, no scheme)"
    )]
    NotAHostName(String),
}

/// Host names a tokenless API answers: loopback names (`localhost` and
/// `*.localhost`, RFC 6761), any IP address (a literal address is not a
/// name a page's author can point elsewhere), and those configured.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<Self, HostError> {
        let mut out = Vec::new();
        for n in names {
            let n = n.as_ref().trim().trim_end_matches('.').to_ascii_lowercase();
            if n.is_empty() {
                continue;
            }
            let ok = n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(HostError::NotAHostName(n));
            }
            out.push(n);
        }
        Ok(Self(Arc::new(out)))
    }

    /// Whether a request whose `Host` (or `:authority`) is `value` is served.
    pub fn allows(&self, value: &str) -> bool {
        let Some(host) = host_part(value) else {
            return false;
        };
        if host.parse::<IpAddr>().is_ok() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == "localhost" || host.ends_with(".localhost") || self.0.contains(&host)
    }
}

/// The host of a `Host` header value: without its port, an IPv6 address
/// without brackets; None when it is not one.
fn host_part(value: &str) -> Option<&str> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(is_port)).then_some(addr);
    }
    let host = match value.rsplit_once(':') {
        Some((h, port)) if is_port(port) => h,
        Some(_) => return None,
        None => value,
    };
    (!host.is_empty()).then_some(host)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The middleware: a request naming a host not allowed gets 421.
pub async fn require_allowed_host(
    State(hosts): State<AllowedHosts>,
    req: Request,
    next: Next,
) -> Response {
    let named = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match named {
        // Browsers always send one; a client without is not a page.
        None => next.run(req).await,
        Some(h) if hosts.allows(h) => next.run(req).await,
        Some(h) => crate::ApiError::WrongHost(format!(
            "this server answers without a token only for localhost, IP addresses and the names in \
             --http-allowed-hosts, not for Host {h:?}: add the name there, or set an API token"
        ))
        .into_response(),
    }
}

/// Headers every response carries. The UI loads only its own files (no
/// inline script or style), so `default-src 'self'` fits it as it is.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// The middleware: security headers on every response; `no-store` on all but
/// the UI's static files (which hold no data, and are revalidated).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_ui_file = crate::ui::FILES.iter().any(|f| f.0 == req.uri().path());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    let cache = if is_ui_file { "no-cache" } else { "no-store" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

/// Serves only requests naming an allowed host (for an API with no token).
pub fn only_allowed_hosts(router: axum::Router, hosts: &AllowedHosts) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        hosts.clone(),
        require_allowed_host,
    ))
}

/// Security headers on every response of `router`: added last, so every route has them.
pub fn with_security_headers(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(security_headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_pass_other_names_do_not() {
        let h = AllowedHosts::new(["hepop.lan"]).unwrap();
        for ok in [
            "localhost",
            "localhost:9070",
            "LOCALHOST.:9070",
            "ui.localhost:9070",
            "127.0.0.1:9070",
            "10.1.2.3",
            "[::1]:9070",
            "[::1]",
            "hepop.lan:9070",
            "HEPop.LAN",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in [
            "evil.example:9070",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "hepop.lan.evil.example",
            "",
            ":9070",
            "[::1]x",
            "localhost:http",
            "a:b:c",
        ] {
            assert!(!h.allows(no), "{no}");
        }
    }

    #[test]
    fn configured_names_are_checked() {
        assert!(AllowedHosts::new(["", " hepop.lan. "]).is_ok());
        assert_eq!(
            AllowedHosts::new(["http://x"]).unwrap_err(),
            HostError::NotAHostName("http://x".into())
        );
        assert!(AllowedHosts::new(["x:9070"]).is_err());
    }
}
