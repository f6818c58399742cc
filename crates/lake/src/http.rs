//! The query API, one axum Router for the stand-alone server and the query
//! Lambda: `GET/POST /query`, `GET/POST /api/v3/query_sql` (InfluxDB 3 shape).
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::engine::{QueryEngine, QueryResult};

#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<QueryEngine>,
    /// Largest body we may return (API Gateway/Lambda: 6 MB); None = unbounded.
    pub max_response_bytes: Option<usize>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    NdJson,
    Csv,
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("json") => Ok(Format::Json),
            Some("ndjson") | Some("jsonl") => Ok(Format::NdJson),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(format!("unknown format '{other}': use json, ndjson or csv")),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::NdJson => "application/x-ndjson",
            Format::Csv => "text/csv",
        }
    }
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

async fn run(s: &ApiState, sql: &str, format: Option<&str>) -> Response {
    let format = match Format::parse(format) {
        Ok(f) => f,
        Err(m) => return bad_request(m),
    };
    let result = match s.engine.query(sql).await {
        Ok(r) => r,
        Err(e) => {
            let status = if e.is_user_error() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            if !e.is_user_error() {
                tracing::error!(error = %e, "query failed");
            }
            return error_response(status, e.to_string());
        }
    };
    let body = match render(&result, format) {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding result: {e}"),
            );
        }
    };
    if let Some(max) = s.max_response_bytes
        && body.len() > max
    {
        return bad_request(format!(
            "result is {} bytes, over the {max}-byte response limit; page with LIMIT/OFFSET or select fewer columns",
            body.len()
        ));
    }
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Timestamps print as the seed's "2025-01-26T18:44:07.120" (UTC, no suffix).
fn naive_times(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::Timestamp(unit, Some(_)) = f.data_type() {
            let t = DataType::Timestamp(*unit, None);
            cols.push(cast(c, &t)?);
            fields.push(Field::new(f.name(), t, f.is_nullable()));
        } else {
            cols.push(c.clone());
            fields.push(f.as_ref().clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}

pub fn render(result: &QueryResult, format: Format) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let batches = result
        .batches
        .iter()
        .map(naive_times)
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut out = Vec::new();
    match format {
        Format::Json => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut out);
            w.write_batches(&refs)?;
            w.finish()?;
            drop(w);
            // The writer prints nothing at all for zero rows.
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
        }
        Format::NdJson => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut out);
            w.write_batches(&refs)?;
            w.finish()?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                // Still print the header.
                let empty = RecordBatch::new_empty(
                    naive_times(&RecordBatch::new_empty(result.schema.clone()))?.schema(),
                );
                w.write(&empty)?;
            }
            for b in &batches {
                w.write(b)?;
            }
        }
    }
    Ok(out)
}
