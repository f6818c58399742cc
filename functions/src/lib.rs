//! The Lambdas' handlers, as plain async functions so tests call them with
//! real events. The binaries in `src/bin` only wire them to the runtime.
use std::sync::Arc;

use object_store::ObjectStore;

pub mod compactor;
pub mod ingest;
pub mod settings;

/// Largest body the query function returns, counted as it travels inside
/// Lambda's JSON response payload (6 MB at most): room is kept for headers
/// and the envelope.
pub const MAX_RESPONSE_BYTES: usize = 5_500_000;

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
