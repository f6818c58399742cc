//! The HTTP layer, one axum Router for the stand-alone server and the query
//! Lambda: `GET/POST /query`, `GET/POST /api/v3/query_sql` (InfluxDB 3
//! shape), their renderers and authentication. The lake crate keeps storage
//! and query; this crate turns them into HTTP.
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use lake::engine::{QueryEngine, QueryError};

pub mod auth;
mod encode;

pub use auth::{ApiTokens, TokenError, protect};
pub use encode::{Encoder, Format, ResponseLimit, json_escaped_len, render};

#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<QueryEngine>,
    pub response_limit: ResponseLimit,
}

/// The query API's router; axum is re-exported so adapters need no axum dependency.
pub type Router = axum::Router;

pub fn router(state: ApiState) -> Router {
    axum::Router::new()
        .route("/query", get(get_query).post(post_query))
        .route("/api/v3/query_sql", get(get_query).post(post_influx))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

async fn get_query(
    State(s): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return bad_request(e.body_text()),
    };
    let Some(sql) = params.get("q").or_else(|| params.get("query")) else {
        return bad_request("missing query parameter 'q'");
    };
    run(&s, sql, params.get("format").map(String::as_str)).await
}

#[derive(Deserialize)]
struct QueryBody {
    query: Option<String>,
    q: Option<String>,
    format: Option<String>,
}

// The error is the HTTP response itself, returned as it is.
#[allow(clippy::result_large_err)]
fn parse_body(body: &Bytes, example: &str) -> Result<QueryBody, Response> {
    serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("body must be JSON like {example}: {e}")))
}

async fn post_query(State(s): State<ApiState>, body: Bytes) -> Response {
    let b = match parse_body(&body, r#"{"query": "SELECT ..."}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match b.query.or(b.q) {
        Some(sql) => run(&s, &sql, b.format.as_deref()).await,
        None => bad_request("missing field 'query'"),
    }
}

async fn post_influx(State(s): State<ApiState>, body: Bytes) -> Response {
    // "db" is accepted and ignored: the lake is one database.
    let b = match parse_body(&body, r#"{"db": "hep", "q": "SELECT ..."}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match b.q.or(b.query) {
        Some(sql) => run(&s, &sql, b.format.as_deref()).await,
        None => bad_request("missing field 'q'"),
    }
}

/// Seconds a client is asked to wait when every query slot is taken.
const RETRY_AFTER_SECS: &str = "1";

pub fn query_error_response(e: QueryError) -> Response {
    match e {
        QueryError::Busy(_) => {
            let mut r = error_response(StatusCode::TOO_MANY_REQUESTS, e.to_string());
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            r
        }
        QueryError::Internal(_) => {
            tracing::error!(error = %e, "query failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        _ => bad_request(e.to_string()),
    }
}

async fn run(s: &ApiState, sql: &str, format: Option<&str>) -> Response {
    let format = match Format::parse(format) {
        Ok(f) => f,
        Err(m) => return bad_request(m),
    };
    let body = match s
        .engine
        .query_into(sql, Encoder::new(format, s.response_limit))
        .await
    {
        Ok(b) => b,
        Err(e) => return query_error_response(e),
    };
    let mut r = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if let ResponseLimit::LambdaPayload(_) = s.response_limit {
        // lambda_http base64-encodes types it does not know as text (NDJSON):
        // a third larger than the limit counted. All our formats are text.
        r.headers_mut().insert(
            "x-lambda-http-content-encoding",
            HeaderValue::from_static("text"),
        );
    }
    r
}
