//! PCAP round trip: a call (two legs, RTCP) exported as PCAP by the call
//! endpoint, imported with `hepop import` into an empty lake, gives the same
//! SIP and RTCP rows: times, addresses, payloads, Call-IDs, and RTCP tied to
//! its call through the capture's SDP.
use crate::support;

use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use hep::sample::Call;
use lake::engine::{QueryEngine, QueryLimits};
use lake::writer::{WriteBuffer, WriterConfig};
use object_store::ObjectStore;
use support::run_ok;
use tower::ServiceExt;

fn engine(store: Arc<dyn ObjectStore>) -> Arc<QueryEngine> {
    Arc::new(QueryEngine::new(store, QueryLimits::default()).unwrap())
}

async fn rows(e: &QueryEngine, sql: &str) -> serde_json::Value {
    let r = e.query(sql).await.unwrap();
    serde_json::from_slice(&web::render(&r, web::Format::Json).unwrap()).unwrap()
}

/// Exports a call as PCAP, gives the file to `convert`, imports what it
/// returns into an empty lake, and compares the rows.
async fn round_trip(convert: impl Fn(&std::path::Path) -> std::path::PathBuf) {
    let original = tempfile::tempdir().unwrap();
    let store = lake::store::open(original.path().to_str().unwrap()).unwrap();
    // Days ago: the import keeps the capture's times however old.
    let t = chrono::Utc::now().timestamp_micros() - 3 * 86_400_000_000;
    let (a, b) = (Call::new(5, 0), Call::new(5, 1));
    let mut msgs: Vec<_> = a.sip_flow(t);
    msgs.extend([
        a.rtcp_report(t + 5_000_000, 250),
        a.rtcp_report(t + 8_000_000, 400),
    ]);
    for mut m in b.sip_flow(t + 30_000) {
        // The B leg names the A leg.
        let p = String::from_utf8(m.payload).unwrap();
        let call_id_line = format!("Call-ID: {}\r\n", b.call_id);
        m.payload = p
            .replacen(
                &call_id_line,
                &format!("{call_id_line}X-CID: {}\r\n", a.call_id),
                1,
            )
            .into_bytes();
        msgs.push(m);
    }
    msgs.push(b.rtcp_report(t + 6_000_000, 100));
    let mut buf = WriteBuffer::new(WriterConfig::default());
    for m in &msgs {
        buf.append(m);
    }
    for f in buf.take_due(std::time::Instant::now(), true) {
        f.write(&store).await.unwrap();
    }
    let before = engine(store);
    let app = web::router(web::ApiState {
        engine: before.clone(),
        response_limit: web::ResponseLimit::Unbounded,
    });
    let uri = format!(
        "/api/v1/calls/{}/pcap?from={}&to={}",
        a.call_id,
        t / 1000,
        t / 1000 + 60_000
    );
    let resp = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let pcap = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pcap));
    let file = original.path().join("call.pcap");
    std::fs::write(&file, &pcap).unwrap();

    let file = convert(&file);
    let imported = tempfile::tempdir().unwrap();
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_hepop"))
            .arg("import")
            .arg(&file)
            .arg("--data")
            .arg(imported.path()),
        "the command",
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("imported 17 messages") && said.contains("RTCP 3 of which 3 tied to a call"),
        "{said}"
    );
    let after = engine(lake::store::open(imported.path().to_str().unwrap()).unwrap());

    let range = format!(
        "time >= '{}' AND time < '{}'",
        chrono::DateTime::from_timestamp_micros(t - 60_000_000)
            .unwrap()
            .to_rfc3339(),
        chrono::DateTime::from_timestamp_micros(t + 60_000_000)
            .unwrap()
            .to_rfc3339()
    );
    for sql in [
        format!(
            "SELECT time, src_ip, src_port, dst_ip, dst_port, protocol, call_id, aleg_id, method, status, payload FROM hep_1 WHERE {range} ORDER BY time, call_id"
        ),
        format!(
            "SELECT time, src_ip, src_port, dst_ip, dst_port, protocol, correlation_id, payload FROM hep_5 WHERE {range} ORDER BY time"
        ),
    ] {
        let (want, got) = (rows(&before, &sql).await, rows(&after, &sql).await);
        assert!(!want.as_array().unwrap().is_empty());
        assert_eq!(got, want, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_an_empty_lake_gives_the_same_rows() {
    round_trip(|pcap| pcap.to_owned()).await;
}

/// The same through a pcapng file that Wireshark's editcap wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs editcap (Debian package tshark): run ./scripts/test"]
async fn a_pcapng_from_editcap_imports_to_the_same_rows() {
    round_trip(|pcap| {
        let ng = pcap.with_extension("pcapng");
        run_ok(
            Command::new("editcap")
                .args(["-F", "pcapng"])
                .arg(pcap)
                .arg(&ng),
            "editcap is installed with tshark by ./scripts/test",
        );
        assert_eq!(&std::fs::read(&ng).unwrap()[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);
        ng
    })
    .await;
}
