//! Call search and call flow over a lake holding an A leg, the B leg a
//! B2BUA made of it (X-CID), a B leg whose agent set the HEP correlation id
//! to the A leg's Call-ID, a leg under the B2BUA suffix form of the A leg's
//! Call-ID, and an unrelated call: what each endpoint finds, and the 400s
//! that say what to change.
use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hep::HepMessage;
use hep::sample::Call;
use lake::engine::{QueryEngine, QueryLimits};
use lake::writer::{WriteBuffer, WriterConfig};
use serde_json::Value;
use tower::ServiceExt;
use web::calls::B2B_SUFFIX;
use web::{ApiState, ResponseLimit, router};

/// The call's SIP with its Call-ID replaced, and `extra` headers after it.
fn relabelled(msgs: Vec<HepMessage>, from: &str, to: &str, extra: &str) -> Vec<HepMessage> {
    msgs.into_iter()
        .map(|mut m| {
            let p = String::from_utf8(m.payload).unwrap().replace(from, to);
            m.payload = p
                .replacen(
                    &format!("Call-ID: {to}\r\n"),
                    &format!("Call-ID: {to}\r\n{extra}"),
                    1,
                )
                .into_bytes();
            m.correlation_id = m.correlation_id.map(|_| to.to_owned());
            m
        })
        .collect()
}

pub(crate) struct Calls {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) store: Arc<dyn object_store::ObjectStore>,
    pub(crate) engine: Arc<QueryEngine>,
    pub(crate) app: axum::Router,
    pub(crate) a: Call,
    pub(crate) b: Call,
    /// A B leg whose agent set the HEP correlation id to the A leg's Call-ID (no X-CID).
    pub(crate) c: Call,
    pub(crate) suffix_leg: String,
    pub(crate) other: Call,
    /// The A leg's INVITE, µs.
    pub(crate) t: i64,
}

pub(crate) async fn calls() -> Calls {
    let dir = tempfile::tempdir().unwrap();
    let store = lake::store::open(dir.path().to_str().unwrap()).unwrap();
    let t = chrono::Utc::now().timestamp_micros() - 3_600_000_000;
    let (a, b, s, other, c) = (
        Call::new(77, 0),
        Call::new(77, 1),
        Call::new(77, 2),
        Call::new(77, 3),
        Call::new(77, 4),
    );
    let suffix_leg = format!("{}{B2B_SUFFIX}", a.call_id);
    let mut msgs = a.all(t);
    // The B leg starts 50 ms later and lasts past the range the flow is asked for.
    msgs.extend(relabelled(
        b.sip_flow(t + 50_000),
        &b.call_id,
        &b.call_id,
        &format!("X-CID: {}\r\n", a.call_id),
    ));
    msgs.push(b.rtcp_report(t + 6_000_000, 100));
    msgs.extend(relabelled(
        s.sip_flow(t + 70_000),
        &s.call_id,
        &suffix_leg,
        "",
    ));
    msgs.extend(other.all(t + 1_000_000));
    msgs.extend(c.sip_flow(t + 90_000).into_iter().map(|mut m| {
        m.correlation_id = Some(a.call_id.clone());
        m
    }));
    let mut buf = WriteBuffer::new(WriterConfig::default());
    for m in &msgs {
        buf.append(m);
    }
    for f in buf.take_due(std::time::Instant::now(), true) {
        f.write(&store).await.unwrap();
    }
    let engine = Arc::new(QueryEngine::new(store.clone(), QueryLimits::default()).unwrap());
    Calls {
        _dir: dir,
        store,
        engine: engine.clone(),
        app: router(ApiState {
            engine,
            response_limit: ResponseLimit::Unbounded,
        }),
        a,
        b,
        c,
        suffix_leg,
        other,
        t,
    }
}

pub(crate) fn iso(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = get_bytes(app, uri).await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// Each row's `key`, or each element itself when `key` is empty.
fn ids(rows: &Value, key: &str) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| if key.is_empty() { r } else { &r[key] })
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_answers_one_row_per_call_newest_first() {
    let c = calls().await;
    let range = format!(
        "from={}&to={}",
        enc(&iso(c.t - 1000)),
        enc(&iso(c.t + 60_000_000))
    );
    let (s, v) = get(&c.app, &format!("/api/v1/calls?{range}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        ids(&v, "call_id"),
        [
            c.other.call_id.as_str(),
            c.c.call_id.as_str(),
            c.suffix_leg.as_str(),
            c.b.call_id.as_str(),
            c.a.call_id.as_str()
        ],
        "newest first"
    );
    let row = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["call_id"] == id)
            .unwrap()
            .clone()
    };
    let a = row(&c.a.call_id);
    assert_eq!(a["caller"], c.a.caller.as_str());
    assert_eq!(a["callee"], c.a.callee.as_str());
    assert_eq!(a["final_status"], 200);
    assert_eq!(a["messages"], 7);
    assert_eq!(a["src_ip"], c.a.uac.to_string());
    assert!(a["duration_ms"].as_i64().unwrap() > 0);
    let mut b_legs = vec![c.b.call_id.clone(), c.c.call_id.clone()];
    b_legs.sort();
    assert_eq!(
        a["b_legs"],
        serde_json::json!(b_legs),
        "by X-CID and by HEP correlation id"
    );
    assert_eq!(row(&c.b.call_id)["aleg_id"], c.a.call_id.as_str());
    assert_eq!(row(&c.c.call_id)["aleg_id"], c.a.call_id.as_str());

    // Filters: the caller, and a Call-ID that also finds the B legs naming it.
    let (_, v) = get(
        &c.app,
        &format!("/api/v1/calls?{range}&caller={}", enc(&c.a.caller)),
    )
    .await;
    assert_eq!(ids(&v, "call_id"), [c.a.call_id.as_str()]);
    let (_, v) = get(
        &c.app,
        &format!("/api/v1/calls?{range}&call_id={}", enc(&c.a.call_id)),
    )
    .await;
    assert_eq!(
        ids(&v, "call_id"),
        [
            c.c.call_id.as_str(),
            c.b.call_id.as_str(),
            c.a.call_id.as_str()
        ]
    );
    let (_, v) = get(
        &c.app,
        &format!("/api/v1/calls?{range}&ip={}&limit=1", c.other.uas),
    )
    .await;
    assert_eq!(ids(&v, "call_id"), [c.other.call_id.as_str()]);
    let (_, v) = get(&c.app, &format!("/api/v1/calls?{range}&status=486")).await;
    assert_eq!(v, serde_json::json!([]));

    for (query, says) in [
        ("".to_string(), "from= and to="),
        (format!("from=0&to={}", c.t / 1000), "at most 8784"),
        (format!("{range}&limit=many"), "limit"),
        (format!("from=today&to={}", c.t / 1000), "RFC 3339"),
    ] {
        let (s, v) = get(&c.app, &format!("/api/v1/calls?{query}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{query}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_flow_gathers_every_leg_both_ways_with_rtcp_and_logs() {
    let c = calls().await;
    // A range that ends before the B leg does: the flow widens it.
    let range = format!("from={}&to={}", c.t / 1000, c.t / 1000 + 1);
    let want: BTreeSet<String> = [
        c.a.call_id.clone(),
        c.b.call_id.clone(),
        c.c.call_id.clone(),
        c.suffix_leg.clone(),
    ]
    .into();
    for start in [
        c.a.call_id.as_str(),
        c.b.call_id.as_str(),
        c.c.call_id.as_str(),
        c.suffix_leg.as_str(),
    ] {
        let (s, v) = get(&c.app, &format!("/api/v1/calls/{}?{range}", enc(start))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let legs: BTreeSet<String> = ids(&v["legs"], "").into_iter().collect::<BTreeSet<_>>();
        assert_eq!(legs, want, "from {start}");
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 28, "7 SIP messages a leg");
        let times: Vec<&str> = msgs.iter().map(|m| m["time"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
        assert!(
            msgs.iter()
                .all(|m| m["payload"].as_str().unwrap().contains("SIP/2.0"))
        );
        // RTCP of the A and B legs, the A leg's log line; none of the other call.
        assert_eq!(v["rtcp"].as_array().unwrap().len(), 3);
        assert_eq!(ids(&v["logs"], "correlation_id"), [c.a.call_id.as_str()]);
        let summary = v["rtcp_summary"].as_array().unwrap();
        assert_eq!(
            summary
                .iter()
                .map(|d| d["reports"].as_u64().unwrap())
                .sum::<u64>(),
            3
        );
        assert!(
            summary
                .iter()
                .all(|d| d["unparsed_reports"] == 0 && d["jitter_max"].is_number())
        );
        let hosts = ids(&v["hosts"], "");
        assert!(hosts.contains(&format!("{}:5060", c.a.uac)), "{hosts:?}");
    }
    let (s, v) = get(
        &c.app,
        &format!("/api/v1/calls/{}?{range}", enc(&c.other.call_id)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        ids(&v["legs"], ""),
        [c.other.call_id.as_str()],
        "an unrelated call stands alone"
    );
    let (s, v) = get(&c.app, &format!("/api/v1/calls/nope?{range}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = get(&c.app, &format!("/api/v1/calls/{}", enc(&c.a.call_id))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

pub(crate) async fn get_bytes(app: &axum::Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap();
    (status, ct, body.to_vec())
}

/// The PCAP export read back by Wireshark's tshark: one frame per SIP
/// message and RTCP report the flow answers, in its order, with its methods,
/// statuses and Call-IDs, RTCP sender reports decoded, every IP and UDP
/// checksum verified good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tshark (Debian): run ./scripts/test"]
async fn a_call_pcap_reads_in_tshark_as_the_api_answers_it() {
    let c = calls().await;
    let q = format!("from={}&to={}", c.t / 1000, c.t / 1000 + 1);
    let id = enc(&c.a.call_id);
    let (_, flow) = get(&c.app, &format!("/api/v1/calls/{id}?{q}")).await;
    let (s, ct, pcap) = get_bytes(&c.app, &format!("/api/v1/calls/{id}/pcap?{q}")).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "application/vnd.tcpdump.pcap")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("call.pcap");
    std::fs::write(&file, &pcap).unwrap();
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args([
            "-o",
            "rtcp.heuristic_rtcp:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args([
            "-e",
            "ip.checksum.status",
            "-e",
            "udp.checksum.status",
            "-e",
            "sip.Method",
        ])
        .args([
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
            "-e",
            "rtcp.pt",
        ])
        .output()
        .expect("tshark (Debian package tshark) is installed by ./scripts/test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<Vec<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect();
    let messages = flow["messages"].as_array().unwrap();
    let rtcp = flow["rtcp"].as_array().unwrap();
    assert_eq!(frames.len(), messages.len() + rtcp.len(), "{frames:?}");
    assert!(
        frames.iter().all(|f| f[0] == "1" && f[1] == "1"),
        "checksums good: {frames:?}"
    );
    let sip: Vec<(String, String)> = frames
        .iter()
        .filter(|f| !f[4].is_empty())
        .map(|f| (format!("{}{}", f[2], f[3]), f[4].clone()))
        .collect();
    let want: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            let what = m["method"].as_str().map(str::to_owned);
            let what = what.unwrap_or_else(|| m["status"].to_string());
            (what, m["call_id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(sip, want, "the same SIP, in the same order");
    let reports = frames
        .iter()
        .filter(|f| f[5].split(',').any(|pt| pt == "200"))
        .count();
    assert_eq!(
        reports,
        rtcp.len(),
        "every RTCP report decodes as a sender report"
    );
}

/// The search, the flow and its exports are counted against the response
/// limit as they are encoded (a 400 that says so, not a body held whole),
/// and each takes one query slot for all its statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_views_honour_the_response_limit_and_take_one_query_slot() {
    let c = calls().await;
    let q = format!("from={}&to={}", c.t / 1000, c.t / 1000 + 1);
    let range = format!(
        "from={}&to={}",
        enc(&iso(c.t - 1000)),
        enc(&iso(c.t + 60_000_000))
    );
    let id = enc(&c.a.call_id);
    let limited = |bytes: usize| {
        router(ApiState {
            engine: c.engine.clone(),
            response_limit: ResponseLimit::Body(bytes),
        })
    };
    for uri in [
        format!("/api/v1/calls?{range}"),
        format!("/api/v1/calls/{id}?{q}"),
        format!("/api/v1/calls/{id}/pcap?{q}"),
        format!("/api/v1/calls/{id}/text?{q}"),
    ] {
        let (s, _, whole) = get_bytes(&c.app, &uri).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        let (s, _, body) = get_bytes(&limited(whole.len() / 2), &uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("response limit"), "{uri}: {body}");
        let (s, _, same) = get_bytes(&limited(whole.len() * 2), &uri).await;
        assert_eq!((s, same), (StatusCode::OK, whole), "{uri}");
    }

    let one_slot = Arc::new(
        QueryEngine::new(
            c.store.clone(),
            QueryLimits {
                max_concurrent: 1,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let app = router(ApiState {
        engine: one_slot.clone(),
        response_limit: ResponseLimit::Unbounded,
    });
    let (started, holding) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn({
        let e = one_slot.clone();
        async move {
            e.job(move |_| async move {
                started.send(()).unwrap();
                let _ = released.await;
                Ok::<(), lake::engine::QueryError>(())
            })
            .await
        }
    });
    holding.await.unwrap();
    for uri in [
        format!("/api/v1/calls?{range}"),
        format!("/api/v1/calls/{id}/pcap?{q}"),
    ] {
        let (s, _, _) = get_bytes(&app, &uri).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{uri}");
    }
    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
    let (s, _, _) = get_bytes(&app, &format!("/api/v1/calls/{id}/pcap?{q}")).await;
    assert_eq!(s, StatusCode::OK);
}

/// A search over days: calls before the end of the call records come from
/// the records (with their delays), later ones from their messages, each
/// call once even when its messages go on past the records' end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_days_reads_call_records_and_recent_messages() {
    const HOUR: i64 = 3_600_000_000;
    let dir = tempfile::tempdir().unwrap();
    let store = lake::store::open(dir.path().to_str().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let (old, recent) = (Call::new(78, 0), Call::new(78, 1));
    // The old call begins 5 s before its hour ends; its BYE and its two RTCP
    // reports (from the caller) are in the next.
    let hour = (now - 20 * HOUR).div_euclid(HOUR);
    let t_old = (hour + 1) * HOUR - 5_000_000;
    let mut msgs = old.all(t_old);
    msgs.extend(recent.sip_flow(now - 600_000_000));
    let mut buf = WriteBuffer::new(WriterConfig::default());
    for m in &msgs {
        buf.append(m);
    }
    for f in buf.take_due(std::time::Instant::now(), true) {
        f.write(&store).await.unwrap();
    }
    // A run when the old call's hour has settled and the next has not.
    let cfg = lake::compact::CompactionConfig {
        retention: None,
        ..Default::default()
    };
    let at = (hour + cfg.call_follow_hours + 1) * HOUR + 15 * 60_000_000;
    assert_eq!(lake::calls::last_settled_hour(&cfg.calls(), at), hour);
    let r = lake::compact::run(&store, &cfg, at, lake::compact::Sweep::Full, None).await;
    assert!(r.errors.is_empty() && r.call_records == 1, "{r:?}");
    let engine = Arc::new(QueryEngine::new(store.clone(), QueryLimits::default()).unwrap());
    let app = router(ApiState {
        engine,
        response_limit: ResponseLimit::Unbounded,
    });
    let days = |d: i64| {
        format!(
            "from={}&to={}",
            enc(&iso(now - d * 24 * HOUR)),
            enc(&iso(now + 60_000_000))
        )
    };
    let (s, v) = get(&app, &format!("/api/v1/calls?{}", days(10))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        ids(&v, "call_id"),
        [recent.call_id.as_str(), old.call_id.as_str()],
        "newest first, the old call once: {v}"
    );
    let rows = v.as_array().unwrap();
    let o = &rows[1];
    assert_eq!(
        (o["pdd_ms"].as_i64(), o["setup_ms"].as_i64()),
        (Some(40), Some(2_000)),
        "{o}"
    );
    assert_eq!(
        (o["talk_ms"].as_i64(), o["ended_by"].as_str()),
        (Some(7_000), Some("caller")),
        "{o}"
    );
    assert_eq!(
        (o["final_status"].as_i64(), o["messages"].as_i64()),
        (Some(200), Some(7)),
        "{o}"
    );
    assert_eq!(o["caller"], old.caller.as_str());
    // The caller's reports tell what it received: the callee's media.
    assert_eq!(
        (
            o["rtcp_reports"].as_i64(),
            o["callee_to_caller_lost"].as_i64(),
            o["callee_to_caller_jitter_max"].as_i64(),
            o["caller_to_callee_lost"].as_i64(),
        ),
        (Some(2), Some(1), Some(12), None),
        "{o}"
    );
    let hours: Vec<String> = [hour, hour + 1]
        .iter()
        .map(|h| iso(h * HOUR)[..13].to_owned())
        .collect();
    assert_eq!(o["hours"], hours.join(" "), "{o}");
    assert!(
        rows[0].get("talk_ms").is_none(),
        "from messages: {}",
        rows[0]
    );
    // A search by caller over the days: the record.
    let (_, v) = get(
        &app,
        &format!("/api/v1/calls?{}&caller={}", days(10), enc(&old.caller)),
    )
    .await;
    assert_eq!(ids(&v, "call_id"), [old.call_id.as_str()]);
    // A range wholly before the records' end: the records alone answer it.
    let before = format!(
        "from={}&to={}",
        enc(&iso(now - 30 * 24 * HOUR)),
        enc(&iso(now - 29 * 24 * HOUR))
    );
    let (s, v) = get(&app, &format!("/api/v1/calls?{before}")).await;
    assert_eq!((s, v), (StatusCode::OK, serde_json::json!([])));
    // Without records, a search reads messages only: at most a day.
    let fresh = calls().await;
    let (s, v) = get(&fresh.app, &format!("/api/v1/calls?{}", days(2))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no call records yet"),
        "{v}"
    );
}
