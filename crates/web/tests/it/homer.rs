//! homer-app's v3 API as its clients call it, over the calls fixture of
//! `calls.rs`. The request bodies are the ones those clients send:
//! - jambonz's api-server, `lib/utils/homer-utils.js`: `POST /api/v3/auth`
//!   with `{username, password}`, then `call/transaction` and
//!   `export/call/messages/pcap` with `param.search` =
//!   `{"1_call": {"callid": [id]}, "1_registration": {"callid": [id]}}`,
//!   `orlogic: true`, the last seven days in epoch milliseconds;
//! - homer-ui's search form (homer-app `model/search.go`, `SearchObject`):
//!   `param.search` = `{"1_call": [{name, value, type, hepid}]}`, `limit`,
//!   `location`, `timezone`.
//!
//! Answers are checked field by field against the generated calls.
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::calls::{calls, enc, get_bytes, iso};

async fn post(
    app: &axum::Router,
    uri: &str,
    body: &Value,
    token: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

/// jambonz's request for one Call-ID over the last seven days.
fn jambonz(call_id: &str, now_ms: i64) -> Value {
    json!({
        "param": {
            "transaction": {"call": true, "registration": true, "rest": false},
            "orlogic": true,
            "search": {"1_call": {"callid": [call_id]}, "1_registration": {"callid": [call_id]}}
        },
        "timestamp": {"from": now_ms - 7 * 86_400_000, "to": now_ms}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jambonz_and_homer_ui_requests_get_homer_apps_answers() {
    let c = calls().await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let a = &c.a;

    // The call's transaction: its seven SIP messages, in time order, shaped as homer-app's.
    let (s, b) = post(
        &c.app,
        "/api/v3/call/transaction",
        &jambonz(&a.call_id, now_ms),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    let msgs = v["data"]["messages"].as_array().unwrap();
    assert_eq!(v["total"], 7);
    let methods: Vec<&str> = msgs.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        ["INVITE", "100", "180", "200", "ACK", "BYE", "200"]
    );
    let invite = &msgs[0];
    assert_eq!(invite["sid"], a.call_id.as_str());
    assert_eq!(invite["callid"], a.call_id.as_str());
    assert_eq!(invite["srcIp"], a.uac.to_string());
    assert_eq!(invite["dstIp"], a.uas.to_string());
    assert_eq!(
        (invite["srcPort"].as_i64(), invite["dstPort"].as_i64()),
        (Some(5060), Some(5060))
    );
    assert_eq!(invite["from_user"], a.caller.as_str());
    assert_eq!(invite["to_user"], a.callee.as_str());
    assert_eq!(invite["ruri_user"], a.callee.as_str());
    assert_eq!(invite["micro_ts"], c.t);
    assert_eq!(invite["create_date"], c.t / 1000);
    assert_eq!(
        (
            invite["timeSeconds"].as_i64(),
            invite["timeUseconds"].as_i64()
        ),
        (Some(c.t / 1_000_000), Some(c.t % 1_000_000))
    );
    assert_eq!(invite["payloadType"], 1);
    assert_eq!(invite["captureId"], "2001");
    assert!(invite["raw"].as_str().unwrap().starts_with("INVITE sip:"));
    let times: Vec<i64> = msgs
        .iter()
        .map(|m| m["micro_ts"].as_i64().unwrap())
        .collect();
    assert!(times.is_sorted(), "{times:?}");
    // homer-ui's ladder: two hosts, the caller's first; each message's destination column.
    let uac = format!("{}:5060", a.uac);
    let uas = format!("{}:5060", a.uas);
    assert_eq!(v["data"]["hosts"][&uac]["position"], 0);
    assert_eq!(v["data"]["hosts"][&uas]["position"], 1);
    assert_eq!(v["data"]["alias"][&uac], uac.as_str());
    let calldata = v["data"]["calldata"].as_array().unwrap();
    assert_eq!(calldata.len(), 7);
    assert_eq!(
        (
            calldata[0]["srcId"].as_str(),
            calldata[0]["destination"].as_i64()
        ),
        (Some(uac.as_str()), Some(1))
    );
    assert_eq!(
        (
            calldata[1]["method"].as_str(),
            calldata[1]["destination"].as_i64()
        ),
        (Some("100"), Some(0))
    );
    assert!(v["keys"].as_array().unwrap().contains(&json!("callid")));

    // The PCAP export is the call's flow, byte for byte what /api/v1 exports.
    let (s, pcap) = post(
        &c.app,
        "/api/v3/export/call/messages/pcap",
        &jambonz(&a.call_id, now_ms),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let range = format!(
        "from={}&to={}",
        enc(&iso(c.t - 1000)),
        enc(&iso(c.t + 10_000_000))
    );
    let (_, _, v1) = get_bytes(
        &c.app,
        &format!("/api/v1/calls/{}/pcap?{range}", enc(&a.call_id)),
    )
    .await;
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(pcap, v1);
    let (s, text) = post(
        &c.app,
        "/api/v3/export/call/messages/text",
        &jambonz(&a.call_id, now_ms),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8(text).unwrap().contains(&a.call_id));

    // QoS and log reports: the call's two RTCP reports and its log line.
    let (s, b) = post(
        &c.app,
        "/api/v3/call/report/qos",
        &jambonz(&a.call_id, now_ms),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = json_of(&b);
    let rtcp = v["rtcp"]["data"].as_array().unwrap();
    assert_eq!(rtcp.len(), 2, "{v}");
    assert_eq!(v["rtp"]["data"], json!([]));
    assert_eq!(
        (rtcp[0]["proto"].as_str(), rtcp[0]["payloadType"].as_i64()),
        (Some("rtcp"), Some(5))
    );
    assert_eq!(rtcp[0]["sid"], a.call_id.as_str());
    let report: Value = serde_json::from_str(rtcp[0]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(report["report_blocks"][0]["packets_lost"], 250 % 3);
    let (_, b) = post(
        &c.app,
        "/api/v3/call/report/log",
        &jambonz(&a.call_id, now_ms),
        None,
    )
    .await;
    let logs = json_of(&b)["data"].as_array().unwrap().clone();
    assert_eq!(logs.len(), 1);
    assert!(logs[0]["raw"].as_str().unwrap().contains(&a.call_id));

    // homer-ui's search by caller: the caller's messages only, every field the grid shows.
    let search = json!({
        "param": {
            "transaction": {}, "limit": 200, "orlogic": false,
            "search": {"1_call": [{"name": "from_user", "value": a.caller, "type": "string", "hepid": 1}]},
            "location": {}, "timezone": {"value": -60, "name": "Local"}
        },
        "timestamp": {"from": c.t / 1000 - 60_000, "to": c.t / 1000 + 60_000}
    });
    let (s, b) = post(&c.app, "/api/v3/search/call/data", &search, None).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    let rows = v["data"].as_array().unwrap();
    assert_eq!(v["total"], 7);
    assert!(
        rows.iter()
            .all(|r| r["from_user"] == a.caller.as_str() && r["sid"] == a.call_id.as_str())
    );
    for key in [
        "sid",
        "srcIp",
        "dstIp",
        "srcPort",
        "dstPort",
        "method",
        "create_date",
        "micro_ts",
        "ruri_user",
        "table",
    ] {
        assert!(rows[0].get(key).is_some(), "{key} missing in {}", rows[0]);
    }
    assert_eq!(rows[0]["table"], "hep_proto_1_call");
    // Alternatives, a LIKE and a negation, as homer-ui writes them.
    let search2 = json!({
        "param": {"limit": 200, "search": {"1_call": [
            {"name": "data_header.callid", "value": format!("{};{}", a.call_id, c.other.call_id), "type": "string"},
            {"name": "method", "value": "!=200", "type": "string"},
            {"name": "protocol_header.srcIp", "value": "10.%", "type": "string"}]}},
        "timestamp": {"from": c.t / 1000 - 60_000, "to": c.t / 1000 + 60_000}
    });
    let (_, b) = post(&c.app, "/api/v3/search/call/data", &search2, None).await;
    assert_eq!(
        json_of(&b)["total"],
        10,
        "two calls' seven messages less their two 200s each"
    );

    // What is wrong with a request is said.
    for (uri, body, says) in [
        (
            "/api/v3/call/transaction",
            json!({"param": {"search": {}}, "timestamp": {"from": 0, "to": 1}}),
            "name the call",
        ),
        (
            "/api/v3/call/transaction",
            json!({"param": {"search": {"1_call": {"callid": ["x"]}}}}),
            "timestamp",
        ),
        (
            "/api/v3/search/call/data",
            json!({"param": {"search": {"1_call": [{"name": "payload; --", "value": "x"}]}}, "timestamp": {"from": 0, "to": 1}}),
            "no field",
        ),
        (
            "/api/v3/search/call/data",
            json!({"param": {}, "timestamp": {"from": 0, "to": 2 * 86_400_000}}),
            "at most 24",
        ),
    ] {
        let (s, b) = post(&c.app, uri, &body, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            String::from_utf8_lossy(&b).contains(says),
            "{}",
            String::from_utf8_lossy(&b)
        );
    }
    let (s, _) = post(
        &c.app,
        "/api/v3/call/transaction",
        &jambonz("no-such-call", now_ms),
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "an unknown call is an empty transaction, as homer-app answers it"
    );
    let (s, _) = post(
        &c.app,
        "/api/v3/export/call/messages/pcap",
        &jambonz("no-such-call", now_ms),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jambonz_logs_in_with_an_api_token_as_its_password() {
    let c = calls().await;
    let token = "homer-client-t0ken-0123456789";
    let tokens = web::ApiTokens::new([token]).unwrap();
    let app = web::protect(c.app.clone(), &tokens);
    let now_ms = chrono::Utc::now().timestamp_millis();

    let (s, _) = post(
        &app,
        "/api/v3/auth",
        &json!({"username": "jambonz", "password": "wrong-password-0123456789"}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = post(
        &app,
        "/api/v3/auth",
        &json!({"username": "jambonz", "password": token}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let got = json_of(&b)["token"].as_str().unwrap().to_owned();
    let (s, _) = post(
        &app,
        "/api/v3/call/transaction",
        &jambonz(&c.a.call_id, now_ms),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = post(
        &app,
        "/api/v3/call/transaction",
        &jambonz(&c.a.call_id, now_ms),
        Some(&got),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b)["total"], 7);
}
