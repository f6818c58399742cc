//! The query API over HTTP: the JSON shape of rows, every route's answers
//! and errors, and the response limit.
use crate::support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lake::engine::{QueryEngine, QueryLimits};
use object_store::ObjectStore;
use serde_json::Value;
use support::{micros, sip, write};
use tower::ServiceExt;
use web::{ApiState, router};

fn store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = lake::store::open(dir.path().to_str().unwrap()).unwrap();
    (dir, store)
}

fn engine(store: &Arc<dyn ObjectStore>) -> QueryEngine {
    QueryEngine::new(store.clone(), QueryLimits::default()).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[tokio::test]
async fn write_then_query_sip_fields() {
    let (_dir, store) = store();
    let t = now() - 1_000_000;
    let msgs: Vec<_> = (0..7).map(|s| sip(1, s, t + s as i64)).collect();
    write(&store, &msgs).await;
    let e = engine(&store);
    let r = e
        .query("SELECT method, status, call_id, cseq_num, cseq_method, from_user, from_tag, to_user, to_tag, ruri_user, ruri_domain, user_agent FROM hep_1 ORDER BY time")
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 7);
    let json: Value = serde_json::from_slice(&web::render(&r, web::Format::Json).unwrap()).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows[0]["method"], "INVITE");
    assert_eq!(rows[0]["status"], Value::Null);
    assert_eq!(rows[0]["ruri_user"], "bob1");
    assert_eq!(rows[0]["ruri_domain"], "example.com");
    assert_eq!(rows[0]["to_tag"], Value::Null);
    assert_eq!(rows[2]["status"], 180);
    assert_eq!(rows[2]["to_tag"], "to1");
    assert_eq!(rows[5]["method"], "BYE");
    assert_eq!(rows[5]["cseq_num"], 2);
    for r in rows {
        assert_eq!(r["call_id"], "call-1@10.0.0.1");
        assert_eq!(r["from_user"], "alice1");
        assert_eq!(r["from_tag"], "from1");
        assert_eq!(r["to_user"], "bob1");
        assert_eq!(r["user_agent"], "test-ua");
    }
}

#[tokio::test]
async fn row_json_has_the_seed_shape() {
    let (_dir, store) = store();
    let mut m = sip(7, 0, micros("2025-01-26T18:44:07.120"));
    m.src_ip = Some("192.168.1.1".parse().unwrap());
    m.dst_ip = Some("192.168.1.2".parse().unwrap());
    m.correlation_id = Some("067d3@127.0.0.1".into());
    write(&store, &[m]).await;
    let r = engine(&store)
        .query("SELECT * FROM hep_1 WHERE time >= '2025-01-26T18:00:00'")
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&web::render(&r, web::Format::Json).unwrap()).unwrap();
    let row = &json[0];
    assert_eq!(row["capture_id"], 2001);
    assert_eq!(row["capture_pass"], "myHep");
    assert_eq!(row["correlation_id"], "067d3@127.0.0.1");
    assert_eq!(row["src_ip"], "192.168.1.1");
    assert_eq!(row["dst_ip"], "192.168.1.2");
    assert_eq!(row["src_port"], 5060);
    assert_eq!(row["dst_port"], 5060);
    assert_eq!(row["ip_family"], 2);
    assert_eq!(row["protocol"], 17);
    assert_eq!(row["proto_type"], 1);
    assert_eq!(row["type"], 1);
    assert_eq!(row["time"], "2025-01-26T18:44:07.120");
    assert_eq!(row["time_sec"], 1737917047);
    assert_eq!(row["time_usec"], 120000);
    assert_eq!(row["node_name"], "node-a");
    assert_eq!(row["vlan"], Value::Null);
    assert!(
        row["payload"]
            .as_str()
            .unwrap()
            .starts_with("INVITE sip:bob7@example.com SIP/2.0\r\n")
    );
}

async fn http(app: axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn http_api_shapes_and_errors() {
    let (_dir, store) = store();
    let t = now() - 1000;
    write(&store, &[sip(1, 0, t), sip(1, 1, t + 1)]).await;
    let app = router(ApiState {
        engine: Arc::new(engine(&store)),
        response_limit: web::ResponseLimit::Unbounded,
    });

    let (s, b) = http(
        app.clone(),
        get("/query?q=SELECT%20call_id,status%20FROM%20hep_1%20ORDER%20BY%20time"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"call_id": "call-1@10.0.0.1", "status": null}, {"call_id": "call-1@10.0.0.1", "status": 100}])
    );

    let (s, b) = http(
        app.clone(),
        post("/query", r#"{"query": "SELECT count(*) AS n FROM hep_1"}"#),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"[{"n":2}]"#));
    let (s, b) = http(
        app.clone(),
        post(
            "/api/v3/query_sql",
            r#"{"db": "hep", "q": "select count(*) as n from hep_1"}"#,
        ),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"[{"n":2}]"#));
    let (s, b) = http(
        app.clone(),
        post(
            "/query",
            r#"{"query": "SELECT status FROM hep_1 ORDER BY time", "format": "ndjson"}"#,
        ),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, "{\"status\":null}\n{\"status\":100}\n")
    );
    let (s, b) = http(
        app.clone(),
        get("/query?format=csv&q=SELECT%20status,method%20FROM%20hep_1%20ORDER%20BY%20time"),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, "status,method\n,INVITE\n100,\n")
    );
    let (s, b) = http(
        app.clone(),
        get("/query?q=SELECT%20*%20FROM%20hep_1%20WHERE%20false"),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));

    for req in [
        get("/query"),
        get("/query?q=SELEC"),
        get("/query?q=DROP%20TABLE%20hep_1"),
        get("/query?q=SELECT%201&format=xml"),
        post("/query", "not json"),
        post("/query", r#"{"nothing": 1}"#),
        post("/api/v3/query_sql", r#"{"db": "hep"}"#),
    ] {
        let (s, b) = http(app.clone(), req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert!(!v["error"].as_str().unwrap().is_empty());
    }

    // A response over the size limit is refused whole, never truncated.
    let tiny = router(ApiState {
        engine: Arc::new(engine(&store)),
        response_limit: web::ResponseLimit::Body(100),
    });
    let (s, b) = http(tiny, get("/query?q=SELECT%20payload%20FROM%20hep_1")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.contains("response limit"), "{b}");
}

/// Every path and method the OpenAPI document lists is served (neither 404
/// nor 405), every method it does not list is refused (405), and its paths
/// are exactly the router's.
#[tokio::test]
async fn the_openapi_document_describes_the_router() {
    let (_dir, store) = store();
    let app = router(ApiState {
        engine: Arc::new(engine(&store)),
        response_limit: web::ResponseLimit::Unbounded,
    });
    let (s, b) = http(app.clone(), get("/api/v1/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    let doc: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut served = web::paths::ALL.to_vec();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    for (path, ops) in paths {
        let uri = path.replace("{call_id}", "x");
        for method in ["get", "post", "put", "delete", "patch"] {
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let (s, b) = http(app.clone(), req).await;
            if ops.get(method).is_some() {
                assert!(
                    s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {s} {b}"
                );
                for code in ops[method]["responses"].as_object().unwrap().keys() {
                    assert!(code.parse::<u16>().is_ok(), "{method} {path}: {code}");
                }
            } else {
                assert_eq!(
                    s,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented"
                );
            }
        }
    }
    // Every $ref resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => out.push(r),
                _ => refs(v, out),
            }),
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}
