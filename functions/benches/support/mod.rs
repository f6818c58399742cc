//! What the LocalStack benches share: the environment, a bucket, a query
//! through the query function's router.
#![allow(dead_code)]
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// GET /query?q=…: time taken, status, body.
pub async fn query(router: &web::Router, sql: &str) -> (Duration, u16, String) {
    get(router, &format!("/query?q={}", urlencode(sql))).await
}

/// A GET of `path`: how long it took, the status and the body.
pub async fn get(router: &web::Router, path: &str) -> (Duration, u16, String) {
    let t = Instant::now();
    let req = Request::get(path).body(Body::empty()).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        t.elapsed(),
        status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// LocalStack's endpoint, with the AWS settings that reach it set for this
/// process. Call before any other thread exists.
pub fn localstack() -> String {
    let endpoint = std::env::var("LOCALSTACK_ENDPOINT")
        .expect("LOCALSTACK_ENDPOINT (start LocalStack: tests/localstack/start.sh)");
    // SAFETY: the caller runs this before starting any thread.
    unsafe {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ] {
            std::env::set_var(k, v);
        }
    }
    endpoint
}

/// LocalStack accepts an unsigned PUT of a bucket.
pub async fn create_bucket(endpoint: &str, bucket: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
    let req = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    resp.starts_with("HTTP/1.1 200")
}
