//! The web UI in a real browser (the system's headless Chromium, driven by
//! Puppeteer from npm) against `hepop serve` with an API token, fed by
//! producers HEPop did not write: sngrep replays a capture of a call and its
//! B leg (X-CID), hep-js sends OPTIONS, an RTCP report and a log line of the call.
use crate::support;

use packet::{Packet, Transport};
use support::*;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests")
        .join(name)
}

fn npm_ci(dir: &Path, module: &str) {
    if !dir.join("node_modules").join(module).exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "npm ci in {} failed", dir.display());
    }
}

/// A capture of `msgs` (SIP over UDP) for sngrep to replay.
fn capture(msgs: &[HepMessage]) -> Vec<u8> {
    packet::pcap(msgs.iter().map(|m| Packet {
        time_micros: m.time_micros(),
        src: SocketAddr::new(m.src_ip.unwrap(), m.src_port),
        dst: SocketAddr::new(m.dst_ip.unwrap(), m.dst_port),
        transport: Transport::Udp,
        payload: &m.payload,
    }))
}

#[test]
#[ignore = "needs chromium, sngrep and node: run ./scripts/test"]
fn search_open_a_call_download_its_pcap_and_query_in_the_browser() {
    let token = "ui-test-token-0123456789";
    let mut srv = Server::start(&["--api-token", token]);
    srv.token = Some(token.into());
    let t = chrono_now() - 60_000_000;
    let (a, b) = (Call::new(41, 0), Call::new(41, 1));
    let mut msgs = a.sip_flow(t);
    for mut m in b.sip_flow(t + 40_000) {
        let line = format!("Call-ID: {}\r\n", b.call_id);
        let p = String::from_utf8(m.payload).unwrap();
        m.payload = p
            .replacen(&line, &format!("{line}X-CID: {}\r\n", a.call_id), 1)
            .into_bytes();
        msgs.push(m);
    }
    msgs.sort_by_key(HepMessage::time_micros);
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("call.pcap");
    std::fs::write(&pcap, capture(&msgs)).unwrap();
    run_ok(
        Command::new("sngrep")
            .args(["-N", "-q", "-I"])
            .arg(&pcap)
            .args(["-H", &format!("udp:127.0.0.1:{}", srv.udp.port()), "-F"]),
        "sngrep is installed by ./scripts/test",
    );
    let producers = dir("producers");
    npm_ci(&producers, "hep-js");
    run_ok(
        Command::new("node")
            .arg(producers.join("send-hepjs.js"))
            .args([
                "127.0.0.1",
                &srv.udp.port().to_string(),
                "3",
                "hepjs-ui",
                &a.call_id,
            ]),
        "the command",
    );
    srv.wait_written(14 + 3 + 2);

    let ui = dir("ui");
    npm_ci(&ui, "puppeteer-core");
    let (from, to) = ((t - 60_000_000) / 1000, (t + 120_000_000) / 1000);
    let out = run_ok(
        Command::new("node")
            .arg(ui.join("call_view.js"))
            .args([&format!("http://{}", srv.http), token, &a.call_id])
            .args([from.to_string(), to.to_string()]),
        "node runs the UI driver",
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The B leg names the A leg: a search by the A leg's Call-ID finds both.
    let mut results: Vec<&str> = seen["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    results.sort();
    let mut want = vec![a.call_id.as_str(), b.call_id.as_str()];
    want.sort();
    assert_eq!(results, want);
    let ladder = &seen["ladder"];
    assert_eq!(ladder["arrows"], 14, "both legs' messages: {ladder}");
    assert_eq!(ladder["hosts"].as_array().unwrap().len(), 4, "{ladder}");
    let labels: Vec<&str> = ladder["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        labels.iter().filter(|l| **l == "INVITE").count(),
        2,
        "{labels:?}"
    );
    assert!(
        labels.contains(&"200 INVITE") && labels.contains(&"BYE"),
        "{labels:?}"
    );
    assert!(seen["raw"].as_str().unwrap().contains(&a.call_id), "{seen}");
    let rtcp = seen["rtcp"].as_array().unwrap();
    assert_eq!(rtcp.len(), 1, "hep-js's report, tied to the call: {seen}");
    assert_eq!(rtcp[0][3], "3", "packets lost");
    assert!(
        seen["download"].as_str().unwrap().contains(".pcap ("),
        "{seen}"
    );
    assert_eq!(seen["sql"], json!(["7"]));
    assert!(
        seen["unauthorized"]
            .as_str()
            .unwrap()
            .contains("missing API token"),
        "{seen}"
    );
}

/// A search over days in the browser, answered from the call records that
/// `hepop serve` built as the calls' hours settled: the row shows the
/// record's delays, who hung up and the RTCP loss, and opens the ladder.
#[test]
#[ignore = "needs chromium and node: run ./scripts/test"]
fn a_search_over_days_shows_call_records_in_the_browser() {
    let t = chrono_now() - 5 * 3_600_000_000;
    let call = Call::new(42, 0);
    // The SIP flow, two RTCP reports from the caller and a log line.
    let srv = serve_compacting(&call.all(t));
    srv.wait_metric_at_least("call_records_built", 1);

    let ui = dir("ui");
    npm_ci(&ui, "puppeteer-core");
    let (from, to) = (t / 1000 - 2 * 86_400_000, chrono_now() / 1000);
    let out = run_ok(
        Command::new("node")
            .arg(ui.join("record_search.js"))
            .args([&format!("http://{}", srv.http), &call.caller])
            .args([from.to_string(), to.to_string()]),
        "node runs the UI driver",
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{seen}");
    let row = &rows[0];
    // The sample call: ringing after 40 ms, answered after 2 s, 7 s of talk;
    // the caller's reports say 1 packet of the callee's media lost.
    for (column, shown) in [
        ("PDD", "0.0 s"),
        ("Setup", "2.0 s"),
        ("Talk", "7.0 s"),
        ("Hung up", "caller"),
        ("Status", "200"),
        ("Lost →/←", "- / 1"),
        ("Msgs", "7"),
        ("Call-ID", call.call_id.as_str()),
    ] {
        assert_eq!(row[column], shown, "{column}: {row}");
    }
    assert_eq!(seen["arrows"], 7, "the call's ladder: {seen}");
}
