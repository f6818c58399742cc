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
use axum::routing::{get, post};
use serde::Deserialize;

use lake::engine::QueryEngine;

pub mod auth;
pub mod calls;
mod encode;
mod error;
pub mod export;
pub mod flow;
pub mod guard;
pub mod homer;

pub use auth::{ApiTokens, TokenError, TokenSettings, TokenSettingsError, protect};
pub use encode::{Body, Encoder, Format, JsonArray, ResponseLimit, json_escaped_len, render};
pub use error::{ApiError, BadParameter};
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
    /// homer-app's v3 API (`crate::homer`).
    pub const HOMER_AUTH: &str = "/api/v3/auth";
    pub const HOMER_SEARCH: &str = "/api/v3/search/call/data";
    pub const HOMER_TRANSACTION: &str = "/api/v3/call/transaction";
    pub const HOMER_QOS: &str = "/api/v3/call/report/qos";
    pub const HOMER_LOG: &str = "/api/v3/call/report/log";
    pub const HOMER_PCAP: &str = "/api/v3/export/call/messages/pcap";
    pub const HOMER_TEXT: &str = "/api/v3/export/call/messages/text";
    pub const ALL: [&str; 15] = [
        QUERY,
        INFLUX_SQL,
        CALLS,
        CALL,
        CALL_PCAP,
        CALL_TEXT,
        OPENAPI,
        HEALTH,
        HOMER_AUTH,
        HOMER_SEARCH,
        HOMER_TRANSACTION,
        HOMER_QOS,
        HOMER_LOG,
        HOMER_PCAP,
        HOMER_TEXT,
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
        .route(paths::HEALTH, get(|| async { "ok" }))
        .route(paths::HOMER_AUTH, post(homer_auth))
        .route(paths::HOMER_SEARCH, post(homer_search))
        .route(paths::HOMER_TRANSACTION, post(homer_transaction))
        .route(paths::HOMER_QOS, post(homer_qos))
        .route(paths::HOMER_LOG, post(homer_log))
        .route(paths::HOMER_PCAP, post(homer_pcap))
        .route(paths::HOMER_TEXT, post(homer_text));
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

async fn get_query(
    State(s): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let sql = params
        .get("q")
        .or_else(|| params.get("query"))
        .ok_or_else(|| ApiError::BadRequest("missing query parameter 'q'".into()))?;
    run(&s, sql, params.get("format").map(String::as_str)).await
}

#[derive(Deserialize)]
struct QueryBody {
    query: Option<String>,
    q: Option<String>,
    format: Option<String>,
}

fn parse_body(body: &Bytes, example: &str) -> Result<QueryBody, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body must be JSON like {example}: {e}")))
}

async fn post_query(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let b = parse_body(&body, r#"{"query": "SELECT ..."}"#)?;
    let sql = b
        .query
        .or(b.q)
        .ok_or_else(|| ApiError::BadRequest("missing field 'query'".into()))?;
    run(&s, &sql, b.format.as_deref()).await
}

async fn post_influx(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    // "db" is accepted and ignored: the lake is one database.
    let b = parse_body(&body, r#"{"db": "hep", "q": "SELECT ..."}"#)?;
    let sql =
        b.q.or(b.query)
            .ok_or_else(|| ApiError::BadRequest("missing field 'q'".into()))?;
    run(&s, &sql, b.format.as_deref()).await
}

async fn run(s: &ApiState, sql: &str, format: Option<&str>) -> Result<Response, ApiError> {
    let format = Format::parse(format)?;
    let body = s
        .engine
        .query_into(sql, Encoder::new(format, s.response_limit))
        .await?;
    let mut r = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if let ResponseLimit::LambdaPayload(_) = s.response_limit {
        // lambda_http base64-encodes types it does not know as text (NDJSON):
        // a third larger than the limit counted. All our formats are text.
        r.headers_mut().insert(
            "x-lambda-http-content-encoding",
            HeaderValue::from_static("text"),
        );
    }
    Ok(r)
}

async fn search_calls(
    State(s): State<ApiState>,
    params: Result<Query<calls::SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let search = calls::Search::parse(&p)?;
    let limit = s.response_limit;
    let body = s
        .engine
        .job(move |st| flow::search(st, search, limit))
        .await?;
    Ok(answer(&s, "application/json", body))
}

/// A body the calls endpoints made, with its type; on Lambda, text is sent as text.
fn answer(s: &ApiState, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if matches!(s.response_limit, ResponseLimit::LambdaPayload(_)) && !content_type.contains("pcap")
    {
        r.headers_mut().insert(
            "x-lambda-http-content-encoding",
            HeaderValue::from_static("text"),
        );
    }
    r
}

/// A call's flow, as `view` makes it, computed and encoded on the query pool.
async fn call_view(
    s: &ApiState,
    call_id: String,
    params: Result<Query<calls::FlowParams>, QueryRejection>,
    view: flow::View,
) -> Result<Vec<u8>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let window = calls::flow_window(&p)?;
    let limit = s.response_limit;
    s.engine
        .job(move |st| flow::flow(st, call_id, window, view, limit))
        .await
}

async fn call_flow(
    State(s): State<ApiState>,
    Path(call_id): Path<String>,
    params: Result<Query<calls::FlowParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let body = call_view(&s, call_id, params, flow::View::Json).await?;
    Ok(answer(&s, "application/json", body))
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
) -> Result<Response, ApiError> {
    let name = file_name(&call_id, "pcap");
    let body = call_view(&s, call_id, params, flow::View::Pcap).await?;
    let mut r = answer(&s, "application/vnd.tcpdump.pcap", body);
    r.headers_mut().insert(header::CONTENT_DISPOSITION, name);
    Ok(r)
}

async fn call_text(
    State(s): State<ApiState>,
    Path(call_id): Path<String>,
    params: Result<Query<calls::FlowParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let body = call_view(&s, call_id, params, flow::View::Text).await?;
    Ok(answer(&s, "text/plain; charset=utf-8", body))
}

/// A homer-app request body, or a 400 saying what is wrong with it.
fn homer_request(body: &Bytes) -> Result<homer::HomerRequest, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("a homer-app request body: {e}")))
}

/// `POST /api/v3/auth`: reached with a valid token as the password (the
/// token layer checks it) or when no token is configured; the token answered
/// is the password given, which homer-app's clients then send as a bearer token.
async fn homer_auth(body: Bytes) -> Result<Response, ApiError> {
    let r: homer::AuthRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("{{\"username\", \"password\"}} expected: {e}"))
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "token": r.password, "scope": r.username })),
    )
        .into_response())
}

async fn homer_search(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let r = homer_request(&body)?;
    let range = r.range(homer::MAX_SEARCH_RANGE_MICROS)?;
    let statement = r.search_sql(range)?;
    let limit = s.response_limit;
    let body = s
        .engine
        .job(move |st| homer::search(st, statement, limit))
        .await?;
    Ok(answer(&s, "application/json", body))
}

/// The Call-IDs and range of a transaction, export or report request.
fn homer_lookup(
    body: &Bytes,
) -> Result<(std::collections::BTreeSet<String>, calls::TimeRange), ApiError> {
    let r = homer_request(body)?;
    let range = r.range(homer::MAX_LOOKUP_RANGE_MICROS)?;
    Ok((r.call_ids()?, range))
}

async fn homer_transaction(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let (ids, range) = homer_lookup(&body)?;
    let limit = s.response_limit;
    let body = s
        .engine
        .job(move |st| homer::transaction(st, ids, range, limit))
        .await?;
    Ok(answer(&s, "application/json", body))
}

async fn homer_report(
    s: &ApiState,
    body: &Bytes,
    which: homer::Report,
) -> Result<Response, ApiError> {
    let (ids, range) = homer_lookup(body)?;
    let limit = s.response_limit;
    let body = s
        .engine
        .job(move |st| homer::report(st, ids, range, which, limit))
        .await?;
    Ok(answer(s, "application/json", body))
}

async fn homer_qos(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    homer_report(&s, &body, homer::Report::Qos).await
}

async fn homer_log(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    homer_report(&s, &body, homer::Report::Log).await
}

/// An export of the calls named, their legs, RTCP (and, as text, logs): the flow's.
async fn homer_export(s: &ApiState, body: &Bytes, view: flow::View) -> Result<Vec<u8>, ApiError> {
    let (ids, range) = homer_lookup(body)?;
    let limit = s.response_limit;
    s.engine
        .job(move |st| flow::flow_of(st, ids, range, view, limit))
        .await
}

async fn homer_pcap(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let pcap = homer_export(&s, &body, flow::View::Pcap).await?;
    let mut r = answer(&s, "application/vnd.tcpdump.pcap", pcap);
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"export.pcap\""),
    );
    Ok(r)
}

async fn homer_text(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let text = homer_export(&s, &body, flow::View::Text).await?;
    Ok(answer(&s, "text/plain; charset=utf-8", text))
}
