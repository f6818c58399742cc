//! The query function as API Gateway drives it: events through lambda_http's
//! adapter, the response serialised as Lambda returns it. What is bounded is
//! the payload Lambda sends (6 MB at most), not the body before encoding.
use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Lambda's limit on a synchronous response payload.
const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Returns the status, the whole serialised Lambda response and its body.
async fn get(router: &web::Router, query: &str, auth: Option<&str>) -> (u16, Vec<u8>, Value) {
    get_path(router, "/query", query, auth).await
}

async fn get_path(
    router: &web::Router,
    path: &str,
    query: &str,
    auth: Option<&str>,
) -> (u16, Vec<u8>, Value) {
    let mut headers = json!({ "host": "abc.execute-api.us-east-1.amazonaws.com" });
    if let Some(a) = auth {
        headers["authorization"] = json!(a);
    }
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000", "apiId": "abc", "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc", "requestId": "r1", "routeKey": "$default", "stage": "$default",
            "time": "28/Nov/2026:10:00:00 +0000", "timeEpoch": 1795860000000i64,
            "http": { "method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t" }
        },
        "isBase64Encoded": false
    });
    let req = LambdaRequest::ApiGatewayV2(serde_json::from_value(event).unwrap());
    let resp = lambda_http::Adapter::from(router.clone())
        .oneshot(LambdaEvent::new(req, Context::default()))
        .await
        .unwrap();
    let payload = serde_json::to_vec(&resp).unwrap();
    let v: Value = serde_json::from_slice(&payload).unwrap();
    (v["statusCode"].as_u64().unwrap() as u16, payload, v)
}

fn router() -> web::Router {
    router_with(&Default::default())
}

fn router_with(tokens: &web::ApiTokens) -> web::Router {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    functions::query_router(store, Default::default(), tokens).unwrap()
}

/// `rows` NDJSON lines of about 115 bytes each, quotes included.
fn ndjson_query(rows: u64) -> String {
    let sql = format!("SELECT repeat('x', 100) || value AS v FROM generate_series(1, {rows})");
    format!("q={}&format=ndjson", urlencode(&sql))
}

#[tokio::test]
async fn a_4_5_mb_ndjson_result_fits_the_lambda_payload_as_text() {
    let r = router();
    // ~40 000 rows of {"v":"xxx…n"}: about 4.5 MB of NDJSON.
    let (status, payload, v) = get(&r, &ndjson_query(39_000), None).await;
    assert_eq!(status, 200, "{}", v["body"]);
    assert_eq!(
        v["isBase64Encoded"], false,
        "NDJSON travels as text, not base64"
    );
    let body = v["body"].as_str().unwrap();
    assert!(
        (4_400_000..4_700_000).contains(&body.len()),
        "{} bytes",
        body.len()
    );
    assert_eq!(body.lines().count(), 39_000);
    assert!(
        payload.len() <= LAMBDA_PAYLOAD_LIMIT,
        "payload {} bytes",
        payload.len()
    );

    // Past the limit, counted as the payload carries it: a 400 that says how to page, never a 5xx.
    let (status, payload, v) = get(&r, &ndjson_query(60_000), None).await;
    assert_eq!(status, 400);
    assert!(
        v["body"].as_str().unwrap().contains("LIMIT/OFFSET"),
        "{}",
        v["body"]
    );
    assert!(payload.len() < 1000);
}

#[tokio::test]
async fn json_results_are_counted_escaped() {
    let r = router();
    // Quotes double inside the payload: a JSON body under the limit by its own
    // size but over it once escaped is refused with a 400, not sent to fail.
    let sql =
        "SELECT '\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"' AS q FROM generate_series(1, 80000)";
    let (status, _, v) = get(&r, &format!("q={}", urlencode(sql)), None).await;
    assert_eq!(status, 400, "{}", v["body"]);
    let smaller = sql.replace("80000", "50000");
    let (status, payload, _) = get(&r, &format!("q={}", urlencode(&smaller)), None).await;
    assert_eq!(status, 200);
    assert!(
        payload.len() <= LAMBDA_PAYLOAD_LIMIT,
        "payload {} bytes",
        payload.len()
    );
}

#[tokio::test]
async fn tokens_when_configured_are_required_besides_iam() {
    let tokens = web::ApiTokens::new(["lambda-token-0123456789abcdef"]).unwrap();
    let r = router_with(&tokens);
    let q = format!("q={}", urlencode("SELECT 1 AS one"));
    let (status, _, _) = get(&r, &q, None).await;
    assert_eq!(status, 401);
    let (status, _, v) = get(&r, &q, Some("Bearer lambda-token-0123456789abcdef")).await;
    assert_eq!(
        (status, v["body"].as_str().unwrap()),
        (200, r#"[{"one":1}]"#)
    );
}

/// The query function serves what `hepop serve` does: the web UI as text,
/// a call search, and a call's PCAP as a binary (base64) body.
#[tokio::test]
async fn the_ui_calls_and_pcap_through_the_function() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let t = chrono::Utc::now().timestamp_micros() - 600_000_000;
    let call = hep::sample::Call::new(3, 0);
    let mut buf = lake::writer::WriteBuffer::new(Default::default());
    for m in call.all(t) {
        buf.append(&m);
    }
    for f in buf.take_due(std::time::Instant::now(), true) {
        f.write(&store).await.unwrap();
    }
    let r = functions::query_router(store, Default::default(), &Default::default()).unwrap();

    let (s, _, v) = get_path(&r, "/ui/", "", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["isBase64Encoded"], false);
    assert!(v["body"].as_str().unwrap().contains("<title>HEPop</title>"));

    let range = format!("from={}&to={}", t / 1000 - 1000, t / 1000 + 60_000);
    let (s, _, v) = get_path(&r, "/api/v1/calls", &range, None).await;
    assert_eq!(s, 200, "{v}");
    let rows: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(rows[0]["call_id"], call.call_id.as_str());

    let (s, _, v) = get_path(
        &r,
        &format!("/api/v1/calls/{}/pcap", call.call_id),
        &range,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["isBase64Encoded"], true);
    use base64::Engine;
    let pcap = base64::engine::general_purpose::STANDARD
        .decode(v["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    let c = packet::read::read(&pcap).unwrap();
    assert_eq!(
        c.packets.len(),
        7 + 2,
        "the SIP flow and its two RTCP reports"
    );
}
