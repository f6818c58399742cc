//! Calls captured by a real Kamailio (siptrace, HEPv3) between two sipp
//! instances, read back through homer-app's v3 API as HOMER's clients ask:
//! the transaction jambonz fetches and homer-ui's search, field by field.
use crate::support;

use support::*;

/// A UDP port free on 127.0.0.1 now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed with the test.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post(srv: &Server, path: &str, body: &Value) -> Value {
    let (status, text) = srv.http("POST", path, &body.to_string());
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The addresses' ports of one capture: sipp's caller, the proxy, sipp's callee.
struct Ports {
    uac: u16,
    proxy: u16,
    uas: u16,
}

/// Three calls from one sipp to another through a Kamailio that mirrors
/// every message to `srv` as HEP; returns once `srv` holds every message
/// (both hops of each call's BYE and its 200).
fn three_calls_through_kamailio(srv: &Server) -> Ports {
    let (proxy, uas, uac) = (free_udp_port(), free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/kamailio/kamailio.cfg"
    ))
    .unwrap()
    .replace("@PROXY@", &format!("127.0.0.1:{proxy}"))
    .replace("@UAS@", &format!("127.0.0.1:{uas}"))
    .replace("@HEP@", &srv.udp.to_string());
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let run_dir = dir.path().to_str().unwrap().to_owned();
    let _kamailio = Killed(
        Command::new("kamailio")
            .args(["-DD", "-E", "-Y", &run_dir, "-f"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kamailio is installed by ./scripts/test"),
    );
    let _uas = Killed(
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-nostdin", "-p"])
            .arg(uas.to_string())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed by ./scripts/test"),
    );
    // Three calls through the proxy, each talking 200 ms (`-d`) before the
    // caller hangs up; sipp's own verdict does not matter here: what the
    // proxy saw and mirrored is what is checked.
    let _ = Command::new("sipp")
        .args(["-sn", "uac", &format!("127.0.0.1:{proxy}"), "-s", "1000"])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &uac.to_string(),
            "-m",
            "3",
            "-r",
            "10",
        ])
        .args(["-d", "200", "-nostdin", "-timeout", "20s"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp runs");
    // Each BYE's 200, on both hops: the last messages of the three calls.
    let start = Instant::now();
    let last = "SELECT count(*) AS n FROM hep_1 WHERE status = 200 AND cseq_method = 'BYE'";
    while srv.count(last) < 6 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            srv.query(
                "SELECT method, status, cseq_method, count(*) AS n FROM hep_1 GROUP BY 1, 2, 3"
            )
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ports { uac, proxy, uas }
}

#[test]
#[ignore = "needs kamailio and sipp (Debian packages kamailio, sip-tester): run ./scripts/test"]
fn kamailio_captured_calls_read_through_homer_apps_api() {
    let srv = Server::start(&[]);
    let Ports { uac, proxy, uas } = three_calls_through_kamailio(&srv);
    let ids = srv.query("SELECT DISTINCT call_id FROM hep_1 ORDER BY call_id");
    let ids: Vec<String> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let now_ms = chrono_now() / 1000;

    let tx = post(
        &srv,
        "/api/v3/call/transaction",
        &json!({
            "param": {"transaction": {"call": true, "registration": true, "rest": false}, "orlogic": true,
                      "search": {"1_call": {"callid": [ids[0]]}, "1_registration": {"callid": [ids[0]]}}},
            "timestamp": {"from": now_ms - 7 * 86_400_000, "to": now_ms}
        }),
    );
    let msgs = tx["data"]["messages"].as_array().unwrap();
    let hop = |m: &Value| {
        (
            m["method"].as_str().unwrap().to_owned(),
            m["srcPort"].as_u64().unwrap() as u16,
            m["dstPort"].as_u64().unwrap() as u16,
        )
    };
    let hops: Vec<(String, u16, u16)> = msgs.iter().map(hop).collect();
    for expected in [
        ("INVITE".to_owned(), uac, proxy),
        ("100".to_owned(), proxy, uac),
        ("INVITE".to_owned(), proxy, uas),
        ("180".to_owned(), uas, proxy),
        ("180".to_owned(), proxy, uac),
        ("200".to_owned(), uas, proxy),
        ("200".to_owned(), proxy, uac),
        ("ACK".to_owned(), uac, proxy),
    ] {
        assert!(hops.contains(&expected), "{expected:?} in {hops:?}");
    }
    assert_eq!(hops[0], ("INVITE".to_owned(), uac, proxy), "{hops:?}");
    for m in msgs {
        assert_eq!(m["sid"], ids[0].as_str());
        assert_eq!(m["captureId"], "2002");
        assert_eq!(m["srcIp"], "127.0.0.1");
        assert_eq!(m["from_user"], "sipp");
        assert_eq!(m["to_user"], "1000");
        assert_eq!(m["payloadType"], 1);
    }
    assert_eq!(msgs[0]["ruri_user"], "1000");
    assert_eq!(tx["total"], msgs.len());
    let hosts = tx["data"]["hosts"].as_object().unwrap();
    for port in [uac, proxy, uas] {
        assert!(
            hosts.contains_key(&format!("127.0.0.1:{port}")),
            "{hosts:?}"
        );
    }
    assert_eq!(hosts[&format!("127.0.0.1:{uac}")]["position"], 0);

    // homer-ui's search: every INVITE from sipp, both hops of each of the three calls.
    let found = post(
        &srv,
        "/api/v3/search/call/data",
        &json!({
            "param": {"transaction": {}, "limit": 200, "search": {"1_call": [
                {"name": "from_user", "value": "sipp", "type": "string", "hepid": 1},
                {"name": "method", "value": "INVITE", "type": "string", "hepid": 1}]}},
            "timestamp": {"from": now_ms - 600_000, "to": now_ms}
        }),
    );
    assert_eq!(found["total"], 6, "{found}");
    let mut sids: Vec<&str> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sid"].as_str().unwrap())
        .collect();
    sids.dedup();
    sids.sort();
    sids.dedup();
    assert_eq!(sids, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The captured calls' records, built as their hours settle (the compaction
/// run is told it is hours later): one per call, with the 200 ms sipp talked
/// and everything else as the messages say.
#[test]
#[ignore = "needs kamailio and sipp (Debian packages kamailio, sip-tester): run ./scripts/test"]
fn kamailio_captured_calls_are_recorded_with_their_times() {
    let srv = Server::start(&[]);
    let Ports { uac, proxy, .. } = three_calls_through_kamailio(&srv);
    let lake_dir = srv
        .dir
        .as_ref()
        .unwrap()
        .path()
        .to_str()
        .unwrap()
        .to_owned();
    let cfg = lake::compact::CompactionConfig {
        retention: None,
        ..Default::default()
    };
    let later = chrono_now() + (cfg.call_follow_hours + 2) * 3_600_000_000;
    let report = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = lake::store::open(&lake_dir).unwrap();
        lake::compact::run(&store, &cfg, later, lake::compact::Sweep::Full, None).await
    });
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.call_records, 3, "{report:?}");

    let records = srv.query(
        "SELECT c.call_id, pdd_ms, setup_ms, duration_ms, final_status, ended_by, caller, callee, \
           from_domain, ruri_user, src_port, dst_port, messages, legs, n \
         FROM calls c JOIN (SELECT call_id, count(*) AS n FROM hep_1 GROUP BY call_id) m \
           ON c.call_id = m.call_id ORDER BY start_time",
    );
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    for r in records {
        let ms = |k: &str| r[k].as_i64().unwrap_or_else(|| panic!("{k} in {r}"));
        // sipp's callee answers at once; its caller talks 200 ms, then hangs up.
        assert!(
            ms("pdd_ms") <= ms("setup_ms") && ms("setup_ms") < 1_000,
            "{r}"
        );
        assert!((200..500).contains(&ms("duration_ms")), "{r}");
        assert_eq!(
            (&r["final_status"], &r["ended_by"]),
            (&json!(200), &json!("caller")),
            "{r}"
        );
        assert_eq!(
            (&r["caller"], &r["callee"]),
            (&json!("sipp"), &json!("1000"))
        );
        assert_eq!(
            (&r["from_domain"], &r["ruri_user"]),
            (&json!("127.0.0.1"), &json!("1000"))
        );
        // The INVITE as the caller sent it; every captured message of the Call-ID, one leg.
        assert_eq!(
            (ms("src_port"), ms("dst_port")),
            (uac as i64, proxy as i64),
            "{r}"
        );
        assert_eq!((ms("messages"), ms("legs")), (ms("n"), 1), "{r}");
        assert!(
            ms("messages") >= 13,
            "both hops of INVITE, 180, 200, ACK, BYE, 200: {r}"
        );
    }
}
