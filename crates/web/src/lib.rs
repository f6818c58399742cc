//! The HTTP layer, one axum Router for the stand-alone server and the query
//! Lambda: `GET/POST /query`, `GET/POST /api/v3/query_sql` (InfluxDB 3
//! shape), call search and call flow (`/api/v1/calls`), their renderers and
//! authentication. The lake crate keeps storage
//! and query; this crate turns them into HTTP.
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use lake::engine::{QueryEngine, QueryError};

pub mod auth;
pub mod calls;
mod encode;
pub mod export;
pub mod guard;

pub use auth::{ApiTokens, TokenError, protect};
pub use encode::{Encoder, Format, ResponseLimit, json_escaped_len, render};
pub use guard::{AllowedHosts, HostError, only_allowed_hosts, with_security_headers};

#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<QueryEngine>,
    pub response_limit: ResponseLimit,
}

/// The query API's router; axum is re-exported so adapters need no axum dependency.
pub type Router = axum::Router;

/// Every path the router serves; `assets/openapi.json` documents exactly
/// these (`the_openapi_document_describes_the_router`).
pub mod paths {
    pub const QUERY: &str = "/query";
    pub const INFLUX_SQL: &str = "/api/v3/query_sql";
    pub const CALLS: &str = "/api/v1/calls";
    pub const CALL: &str = "/api/v1/calls/{call_id}";
    pub const CALL_PCAP: &str = "/api/v1/calls/{call_id}/pcap";
    pub const CALL_TEXT: &str = "/api/v1/calls/{call_id}/text";
    pub const OPENAPI: &str = "/api/v1/openapi.json";
    pub const HEALTH: &str = "/health";
    pub const ALL: [&str; 8] = [
        QUERY, INFLUX_SQL, CALLS, CALL, CALL_PCAP, CALL_TEXT, OPENAPI, HEALTH,
    ];
}

/// The API's OpenAPI 3.1 description, built into the binary.
pub const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");

/// The web UI: static files built into the binary, served without a token
/// (they hold no data; the page sends the API token with every call).
pub mod ui {
    pub const INDEX: &str = "/ui/";
    pub const FILES: [(&str, &str, &str); 3] = [
        (
            INDEX,
            "text/html; charset=utf-8",
            include_str!("../assets/ui/index.html"),
        ),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            include_str!("../assets/ui/app.js"),
        ),
        (
            "/ui/style.css",
            "text/css; charset=utf-8",
            include_str!("../assets/ui/style.css"),
        ),
    ];
}

pub fn router(state: ApiState) -> Router {
    let r = axum::Router::new()
        .route(paths::QUERY, get(get_query).post(post_query))
        .route(paths::INFLUX_SQL, get(get_query).post(post_influx))
        .route(paths::CALLS, get(search_calls))
        .route(paths::CALL, get(call_flow))
        .route(paths::CALL_PCAP, get(call_pcap))
        .route(paths::CALL_TEXT, get(call_text))
        .route(
            paths::OPENAPI,
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .route(paths::HEALTH, get(|| async { "ok" }));
    let mut r = ui::FILES.iter().fold(r, |r, &(path, content_type, body)| {
        r.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }),
        )
    });
    r = r.route(
        "/",
        get(|| async { axum::response::Redirect::to(ui::INDEX) }),
    );
    r.with_state(state)
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

async fn search_calls(
    State(s): State<ApiState>,
    params: Result<Query<calls::SearchParams>, QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return bad_request(e.body_text()),
    };
    let search = match calls::Search::parse(&p) {
        Ok(search) => search,
        Err(m) => return bad_request(m),
    };
    match search_rows(&s, &search).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

// The error is the HTTP response itself, returned as it is.
#[allow(clippy::result_large_err)]
async fn search_rows(s: &ApiState, search: &calls::Search) -> Result<Value, Response> {
    let (_, recent) = rows(s, &search.recent_sql()).await?;
    let picked = calls::pick_calls(&recent.batches, search.limit);
    if picked.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let (mut summary, _) = rows(s, &search.summary_sql(&picked)).await?;
    let (_, links) = rows(s, &calls::links_sql(search.range, &picked)).await?;
    let b_legs = calls::b_legs(&links.batches, &picked);
    for row in &mut summary {
        let legs = row["call_id"].as_str().and_then(|id| b_legs.get(id));
        row["b_legs"] = legs.map_or(Value::Null, |l| serde_json::json!(l));
    }
    Ok(Value::Array(summary))
}

/// Runs one statement of a call view and gives its rows as JSON values.
async fn rows(
    s: &ApiState,
    sql: &str,
) -> Result<(Vec<Value>, lake::engine::QueryResult), Response> {
    let r = s.engine.query(sql).await.map_err(query_error_response)?;
    let json = render(&r, Format::Json).map_err(query_error_response)?;
    let rows: Vec<Value> = serde_json::from_slice(&json).map_err(|e| {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering rows: {e}"),
        )
    })?;
    Ok((rows, r))
}

/// A call's flow as JSON, or made into a response by `shape`.
async fn call_view(
    s: &ApiState,
    call_id: &str,
    params: Result<Query<calls::FlowParams>, QueryRejection>,
    shape: impl FnOnce(Value) -> Response,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return bad_request(e.body_text()),
    };
    let window = match calls::flow_window(&p) {
        Ok(w) => w,
        Err(m) => return bad_request(m),
    };
    match flow(s, call_id, window).await {
        Ok(v) => shape(v),
        Err(r) => r,
    }
}

async fn call_flow(
    State(s): State<ApiState>,
    Path(call_id): Path<String>,
    params: Result<Query<calls::FlowParams>, QueryRejection>,
) -> Response {
    call_view(&s, &call_id, params, |v| axum::Json(v).into_response()).await
}

/// A file name for a download: the Call-ID with anything odd replaced.
fn file_name(call_id: &str, ext: &str) -> HeaderValue {
    let safe: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!("attachment; filename=\"{safe}.{ext}\""))
        .unwrap_or(HeaderValue::from_static("attachment"))
}

async fn call_pcap(
    State(s): State<ApiState>,
    Path(call_id): Path<String>,
    params: Result<Query<calls::FlowParams>, QueryRejection>,
) -> Response {
    let name = file_name(&call_id, "pcap");
    call_view(&s, &call_id, params, |v| {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/vnd.tcpdump.pcap"),
                ),
                (header::CONTENT_DISPOSITION, name),
            ],
            export::pcap(&v),
        )
            .into_response()
    })
    .await
}

async fn call_text(
    State(s): State<ApiState>,
    Path(call_id): Path<String>,
    params: Result<Query<calls::FlowParams>, QueryRejection>,
) -> Response {
    call_view(&s, &call_id, params, |v| {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            export::text(&v),
        )
            .into_response()
    })
    .await
}

// The error is the HTTP response itself, returned as it is.
#[allow(clippy::result_large_err)]
async fn flow(s: &ApiState, call_id: &str, window: calls::TimeRange) -> Result<Value, Response> {
    // Legs: the call, the calls naming it as their A leg (header or HEP
    // correlation id), the A leg it names, and so on, until nothing new turns up.
    let mut legs: std::collections::BTreeSet<String> = [call_id.to_owned()].into();
    loop {
        let (_, r) = rows(s, &calls::legs_sql(window, &legs)).await?;
        let found = calls::texts(&r.batches, &calls::LEG_COLUMNS);
        let before = legs.len();
        legs.extend(
            found
                .into_iter()
                .take(calls::MAX_LEGS.saturating_sub(before)),
        );
        if legs.len() == before || legs.len() >= calls::MAX_LEGS {
            break;
        }
    }
    let (messages, _) = rows(s, &calls::messages_sql(window, &legs)).await?;
    if messages.is_empty() {
        return Err(error_response(
            StatusCode::NOT_FOUND,
            format!(
                "no SIP message of Call-ID {call_id:?} between from and to, widened by {} minutes",
                calls::FLOW_MARGIN_MICROS / 60_000_000
            ),
        ));
    }
    // Only the Call-IDs that have messages are legs (the suffix forms were guesses).
    let legs: std::collections::BTreeSet<String> = messages
        .iter()
        .filter_map(|m| m["call_id"].as_str().map(str::to_owned))
        .collect();
    // A lake that never received RTCP or logs has no such table.
    let (_, r) = rows(s, calls::CORRELATED_TABLES_SQL).await?;
    let present = calls::texts(&r.batches, &["table_name"]);
    let mut correlated = [Vec::new(), Vec::new()];
    for (table, out) in ["hep_5", "hep_100"].into_iter().zip(&mut correlated) {
        if present.contains(table) {
            *out = rows(s, &calls::correlated_sql(table, window, &legs))
                .await?
                .0;
        }
    }
    let [rtcp, logs] = correlated;
    Ok(serde_json::json!({
        "call_id": call_id,
        "legs": legs,
        "hosts": calls::hosts(&messages),
        "rtcp_summary": calls::rtcp_summary(&rtcp),
        "truncated": messages.len() >= calls::MAX_FLOW_ROWS,
        "messages": messages,
        "rtcp": rtcp,
        "logs": logs,
    }))
}
