//! The Lambdas' handlers, as plain async functions so tests call them with
//! real events. The binaries in `src/bin` only wire them to the runtime.
use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStore;

pub mod compactor;
pub mod ingest;

/// The lake the functions work on: `HEPOP_LAKE=s3://bucket/prefix`.
pub fn lake_from_env() -> anyhow::Result<Arc<dyn ObjectStore>> {
    let url = std::env::var("HEPOP_LAKE").context("HEPOP_LAKE (s3://bucket/prefix) is not set")?;
    Ok(lake::store::open(&url)?)
}

/// Largest body the query function returns, counted as it travels inside
/// Lambda's JSON response payload (6 MB at most): room is kept for headers
/// and the envelope.
pub const MAX_RESPONSE_BYTES: usize = 5_500_000;

/// Bearer tokens the query function requires besides IAM: `HEPOP_API_TOKENS`
/// (comma-separated; unset or empty: none).
pub fn api_tokens_from_env() -> anyhow::Result<web::ApiTokens> {
    web::ApiTokens::new(
        std::env::var("HEPOP_API_TOKENS")
            .unwrap_or_default()
            .split(','),
    )
    .map_err(|e| anyhow::anyhow!("HEPOP_API_TOKENS: {e}"))
}

/// The query function's limits.
pub fn query_limits() -> lake::engine::QueryLimits {
    lake::engine::QueryLimits {
        // API Gateway gives up after 30 s: stop first, with a message.
        timeout: std::time::Duration::from_secs(25),
        // Alone in its sandbox: no listener or writer to leave the CPU to.
        yield_to_ingest: false,
        ..Default::default()
    }
}

/// The same router as `hepop serve`, with the response size capped as
/// Lambda counts it; API Gateway checks IAM, `tokens` add bearer tokens.
pub fn query_router(
    store: Arc<dyn ObjectStore>,
    limits: lake::engine::QueryLimits,
    tokens: &web::ApiTokens,
) -> anyhow::Result<web::Router> {
    let engine = lake::engine::QueryEngine::new(store, limits)?;
    let router = web::router(web::ApiState {
        engine: Arc::new(engine),
        response_limit: web::ResponseLimit::LambdaPayload(MAX_RESPONSE_BYTES),
    });
    Ok(web::with_security_headers(web::protect(router, tokens)))
}

/// A numeric setting from the environment: its default when unset, an error naming it when malformed.
pub fn env_number<T: std::str::FromStr>(key: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(key) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{key}={v:?}: {e}")),
        Err(_) => Ok(default),
    }
}

pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| lake::LOG_FILTER.into()),
        )
        .without_time() // CloudWatch stamps lines itself
        .with_ansi(false)
        .init();
}
