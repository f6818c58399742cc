//! What an API request can fail with, and the one table from failure to
//! HTTP status.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lake::engine::QueryError;
use thiserror::Error;

/// A request parameter that is missing or malformed, with what to send
/// instead: always a 400.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct BadParameter(pub String);

impl From<String> for BadParameter {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for BadParameter {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

impl From<BadParameter> for ApiError {
    fn from(e: BadParameter) -> Self {
        ApiError::BadRequest(e.0)
    }
}

#[derive(Debug, Error)]
pub enum ApiError {
    /// The request itself is wrong: a missing or malformed parameter.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing matches what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// The request names a host this server does not answer for (DNS rebinding).
    #[error("{0}")]
    WrongHost(String),
    /// The request was not read and answered in time.
    #[error("{0}")]
    TimedOut(String),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// Seconds a client is asked to wait when every query slot is taken.
const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::WrongHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::TimedOut(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Query(QueryError::Busy(_)) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Query(QueryError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Query(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut r = (
            status,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        r
    }
}
