//! Bearer tokens for the HTTP API: every route but `/health` needs one of
//! the configured tokens (several, so they can be rotated).
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Shorter tokens are refused at start: they can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// Paths answered without a token: load balancers' health checks, and the
/// web UI's static files (no data: the page asks for the token and sends it).
pub fn is_open(path: &str) -> bool {
    path == crate::paths::HEALTH || path == "/" || crate::ui::FILES.iter().any(|f| f.0 == path)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "API token #{0} is {1} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)"
    )]
    TooShort(usize, usize),
    #[error("API token #{0} holds whitespace or control characters")]
    BadCharacters(usize),
}

#[derive(Clone, Default)]
pub struct ApiTokens(Arc<Vec<Vec<u8>>>);

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTokens({} configured)", self.0.len())
    }
}

impl ApiTokens {
    /// Checks every token; empty entries (blank lines, trailing commas) are skipped.
    pub fn new<S: AsRef<str>>(tokens: impl IntoIterator<Item = S>) -> Result<Self, TokenError> {
        let mut out = Vec::new();
        for (i, t) in tokens.into_iter().enumerate() {
            let t = t.as_ref().trim();
            if t.is_empty() {
                continue;
            }
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(TokenError::BadCharacters(i + 1));
            }
            if t.chars().count() < MIN_TOKEN_LEN {
                return Err(TokenError::TooShort(i + 1, t.chars().count()));
            }
            out.push(t.as_bytes().to_vec());
        }
        Ok(Self(Arc::new(out)))
    }

    /// Tokens from a file: one per line, `#` comments.
    pub fn parse_file(text: &str) -> Result<Self, TokenError> {
        Self::new(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or_default()),
        )
    }

    pub fn merged(&self, other: &ApiTokens) -> ApiTokens {
        let mut all = self.0.as_ref().clone();
        all.extend(other.0.iter().cloned());
        ApiTokens(Arc::new(all))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Compares against every token in constant time per token.
    pub fn allows(&self, presented: &[u8]) -> bool {
        self.0.iter().fold(false, |ok, t| {
            ok | bool::from(t.as_slice().ct_eq(presented))
        })
    }
}

/// Where the API's tokens come from: flags or `HEPOP_API_TOKENS`, and a file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TokenSettings {
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
    pub api_token_file: Option<std::path::PathBuf>,
}

/// Why the configured tokens cannot be used.
#[derive(Debug, Error)]
pub enum TokenSettingsError {
    #[error("--api-token: {0}")]
    Flag(TokenError),
    #[error("reading API token file {}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("API token file {}", path.display())]
    File {
        path: std::path::PathBuf,
        source: TokenError,
    },
}

impl TokenSettings {
    /// The tokens of the flags and the file together.
    pub fn tokens(&self) -> Result<ApiTokens, TokenSettingsError> {
        let flags = ApiTokens::new(&self.api_tokens).map_err(TokenSettingsError::Flag)?;
        let Some(path) = &self.api_token_file else {
            return Ok(flags);
        };
        let text = std::fs::read_to_string(path).map_err(|source| TokenSettingsError::Read {
            path: path.clone(),
            source,
        })?;
        let file = ApiTokens::parse_file(&text).map_err(|source| TokenSettingsError::File {
            path: path.clone(),
            source,
        })?;
        Ok(flags.merged(&file))
    }
}

fn bearer(req: &Request) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = v.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Largest body `POST /api/v3/auth` is read for.
const AUTH_BODY_LIMIT: usize = 4096;

/// homer-app's login: the password must be one of the tokens; the handler
/// then answers it back as the token to use.
async fn check_homer_login(tokens: &ApiTokens, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let refused = |message: &str| {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": message })),
        )
            .into_response()
    };
    let Ok(bytes) = axum::body::to_bytes(body, AUTH_BODY_LIMIT).await else {
        return refused("a login body of at most 4 KiB expected");
    };
    let password = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["password"].as_str().map(str::to_owned));
    match password {
        Some(p) if tokens.allows(p.as_bytes()) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        _ => refused("invalid credentials: the password is one of HEPop's API tokens"),
    }
}

/// The middleware: `/health` and the UI's files pass, homer-app's login is
/// checked by its password, everything else needs a valid token.
pub async fn require_token(State(tokens): State<ApiTokens>, req: Request, next: Next) -> Response {
    if is_open(req.uri().path()) {
        return next.run(req).await;
    }
    if req.uri().path() == crate::paths::HOMER_AUTH {
        return check_homer_login(&tokens, req, next).await;
    }
    match bearer(&req) {
        Some(t) if tokens.allows(t) => next.run(req).await,
        presented => {
            let message = if presented.is_some() {
                "invalid API token"
            } else {
                "missing API token: send `Authorization: Bearer <token>`"
            };
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": message })),
            )
                .into_response()
        }
    }
}

/// Puts `router` behind the tokens; with none configured it is returned as is.
pub fn protect(router: axum::Router, tokens: &ApiTokens) -> axum::Router {
    if tokens.is_empty() {
        return router;
    }
    router.layer(axum::middleware::from_fn_with_state(
        tokens.clone(),
        require_token,
    ))
}
