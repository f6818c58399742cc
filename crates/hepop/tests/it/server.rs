//! End-to-end: start `hepop serve` on ephemeral ports with a temporary lake,
//! send HEP over UDP and TCP (ours, hep-js's, sngrep's), query over HTTP.
use crate::support;

use support::*;

#[test]
fn udp_and_tcp_ingest_with_exact_rows_and_fields() {
    let srv = Server::start(&[]);
    // UDP: 40 calls → 280 SIP, 80 RTCP, 40 log messages.
    let udp_msgs = calls(1, 40);
    let mut packets: Vec<Vec<u8>> = udp_msgs.iter().map(|m| encode_v3(m).unwrap()).collect();
    // One HEPv2 datagram, as Kamailio's siptrace sends it.
    let mut legacy = Call::new(9, 9).sip_flow(chrono_now() - 5_000_000).remove(0);
    legacy.capture_id = 42;
    packets.push(hep::encode_legacy(&legacy, 2));
    // Malformed: truncated, length mismatch, chunk < 6, wrong fixed size, junk.
    let good = encode_v3(&udp_msgs[0]).unwrap();
    let mut short_chunk = good.clone();
    short_chunk[6 + 5] = 2;
    let mut wrong_size = good.clone();
    wrong_size[6 + 5] = 8; // ip family chunk claiming 2 value bytes
    for bad in [
        good[..20].to_vec(),
        [good.clone(), vec![0]].concat(),
        short_chunk,
        wrong_size,
        b"hello".to_vec(),
    ] {
        packets.push(bad);
    }
    send_udp(srv.udp, &packets);

    // TCP: 30 calls in one stream, cut at odd sizes, garbage between two frames.
    let tcp_msgs = calls(2, 30);
    let mut stream: Vec<u8> = Vec::new();
    for (i, m) in tcp_msgs.iter().enumerate() {
        if i == 17 {
            stream.extend_from_slice(b"\x00\x01garbage-between-frames");
        }
        stream.extend(encode_v3(m).unwrap());
    }
    let mut s = TcpStream::connect(srv.tcp).unwrap();
    for chunk in stream.chunks(777) {
        s.write_all(chunk).unwrap();
        s.flush().unwrap();
    }
    drop(s);

    let expected = (udp_msgs.len() + 1 + tcp_msgs.len()) as u64;
    srv.wait_written(expected);
    assert_eq!(srv.metric("invalid"), 5);
    assert_eq!(srv.metric("decoded"), expected);
    assert_eq!(srv.metric("dropped"), 0);
    assert_eq!(srv.metric("tcp_garbage_bytes"), 24);

    let since = "WHERE time > now() - interval '1 hour'";
    assert_eq!(
        srv.count(&format!("SELECT count(*) AS n FROM hep_1 {since}")),
        7 * 70 + 1
    );
    assert_eq!(
        srv.count(&format!("SELECT count(*) AS n FROM hep_5 {since}")),
        2 * 70
    );
    assert_eq!(
        srv.count(&format!("SELECT count(*) AS n FROM hep_100 {since}")),
        70
    );
    // Default window (last 10 minutes) holds everything just sent.
    assert_eq!(srv.count("SELECT count(*) AS n FROM hep_1"), 491);

    // One call, field by field.
    let c = Call::new(2, 5);
    let rows = srv.query(&format!(
        "SELECT method, status, cseq_num, cseq_method, from_user, from_tag, to_user, ruri_user, user_agent, src_ip, dst_ip, src_port, protocol, ip_family, capture_id, capture_pass, node_name, type FROM hep_1 WHERE call_id = '{}' ORDER BY time",
        c.call_id
    ));
    let rows = rows.as_array().unwrap();
    let seq: Vec<String> = rows
        .iter()
        .map(|r| {
            r["method"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| r["status"].to_string())
        })
        .collect();
    assert_eq!(seq, ["INVITE", "100", "180", "200", "ACK", "BYE", "200"]);
    let r = &rows[0];
    assert_eq!(r["from_user"], c.caller.as_str());
    assert_eq!(r["to_user"], c.callee.as_str());
    assert_eq!(r["ruri_user"], c.callee.as_str());
    assert_eq!(r["cseq_num"], 1);
    assert_eq!(r["cseq_method"], "INVITE");
    assert_eq!(r["user_agent"], "hepop-send/1.0");
    assert_eq!(r["src_ip"], c.uac.to_string());
    assert_eq!(r["dst_ip"], c.uas.to_string());
    assert_eq!(
        (
            r["src_port"].as_i64(),
            r["protocol"].as_i64(),
            r["ip_family"].as_i64()
        ),
        (Some(5060), Some(17), Some(2))
    );
    assert_eq!(
        (
            r["capture_id"].as_i64(),
            r["capture_pass"].as_str(),
            r["node_name"].as_str(),
            r["type"].as_i64()
        ),
        (Some(2001), Some("myHep"), Some("hepop-send"), Some(1))
    );
    assert_eq!(rows[5]["cseq_num"], 2);

    // The HEPv2 message, with its capture id.
    let v2 = srv.query(&format!(
        "SELECT capture_id, method FROM hep_1 {since} AND capture_id = 42"
    ));
    assert_eq!(v2, json!([{"capture_id": 42, "method": "INVITE"}]));
    // RTCP reports are correlated to their call.
    assert_eq!(
        srv.count(&format!(
            "SELECT count(*) AS n FROM hep_5 {since} AND correlation_id = '{}'",
            c.call_id
        )),
        2
    );

    // Bad queries: 400 with a JSON error, never 500.
    for (m, path, body) in [
        ("GET", "/query?q=SELECT%20*%20FROM%20nowhere", ""),
        ("POST", "/query", "{}"),
        ("POST", "/query", r#"{"query": "DELETE FROM hep_1"}"#),
    ] {
        let (status, body) = srv.http(m, path, body);
        assert_eq!(status, 400, "{body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    }
    let (status, body) = srv.http(
        "POST",
        "/api/v3/query_sql",
        r#"{"db": "hep", "q": "select count(*) as n from hep_100"}"#,
    );
    assert_eq!((status, body.as_str()), (200, r#"[{"n":70}]"#));
}

#[test]
fn sigterm_flushes_everything_buffered() {
    // Nothing would be written for an hour but for the shutdown flush.
    let srv = Server::start_flushing_every("3600", &[]);
    let msgs = calls(3, 100);
    let mut s = TcpStream::connect(srv.tcp).unwrap();
    for m in &msgs {
        s.write_all(&encode_v3(m).unwrap()).unwrap();
    }
    drop(s);
    let start = Instant::now();
    while srv.metric("decoded") < msgs.len() as u64 {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(srv.metric("written"), 0);
    let (status, out, dir) = srv.terminate();
    assert!(status.success());
    assert!(out.contains("written=1000"), "{out}");
    // Read the lake back without a server.
    let q = Command::new(BIN)
        .args(["query", "--data"])
        .arg(dir.path())
        .arg("SELECT count(*) AS n FROM hep_1 WHERE time > now() - interval '1 hour'")
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert_eq!(
        String::from_utf8(q.stdout).unwrap().trim(),
        r#"[{"n":700}]"#
    );
}

#[test]
fn tcp_peer_sending_only_garbage_is_cut_off() {
    let srv = Server::start(&[]);
    let mut s = TcpStream::connect(srv.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let junk = vec![0x5au8; 200 * 1024];
    // The server may close mid-write: errors here are expected.
    let _ = s.write_all(&junk);
    let mut buf = [0u8; 16];
    let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
    assert!(closed);
    assert!(srv.metric("tcp_garbage_bytes") > 64 * 1024);
    assert_eq!(srv.metric("invalid"), 1);
    // The server still works for everyone else.
    send_udp(srv.udp, &[encode_v3(&calls(4, 1)[0]).unwrap()]);
    srv.wait_written(1);
}

fn producers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/producers")
}

#[test]
fn hep_js_producer() {
    let dir = producers_dir();
    if !dir.join("node_modules/hep-js").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "npm ci in tests/producers failed");
    }
    let srv = Server::start(&[]);
    run_ok(
        Command::new("node").arg(dir.join("send-hepjs.js")).args([
            "127.0.0.1",
            &srv.udp.port().to_string(),
            "25",
            "hepjs",
        ]),
        "the command",
    );
    srv.wait_written(25);
    let rows = srv.query("SELECT * FROM hep_1 WHERE call_id = 'hepjs-7@127.0.0.1'");
    let r = &rows[0];
    assert_eq!(r["capture_id"], 2001);
    assert_eq!(r["capture_pass"], "myHep");
    assert_eq!(r["node_name"], "hepjs-node");
    assert_eq!(r["correlation_id"], "hepjs-7@127.0.0.1");
    assert_eq!(r["src_ip"], "192.168.1.1");
    assert_eq!(r["dst_ip"], "192.168.1.2");
    assert_eq!(
        (
            r["src_port"].as_i64(),
            r["dst_port"].as_i64(),
            r["protocol"].as_i64(),
            r["ip_family"].as_i64()
        ),
        (Some(5060), Some(5060), Some(17), Some(2))
    );
    assert_eq!(r["method"], "OPTIONS");
    assert_eq!(r["cseq_num"], 9007);
    assert_eq!(r["from_user"], "nodejs");
    assert_eq!(r["from_tag"], "2628881569");
    assert_eq!(r["user_agent"], "HEPGEN-UAC");
    assert_eq!(
        srv.count("SELECT count(*) AS n FROM hep_1 WHERE call_id LIKE 'hepjs-%'"),
        25
    );
}

/// A pcap of SIP INVITEs over UDP/IPv4/Ethernet, for sngrep to read.
fn write_pcap(path: &Path, calls: usize, first_sec: u32) {
    let mut out = Vec::new();
    out.extend(0xa1b2c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes()); // Ethernet
    for i in 0..calls {
        let sip = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.1:5060;branch=z9hG4bK{i}\r\nFrom: <sip:alice{i}@example.com>;tag=a{i}\r\n\
To: <sip:bob@example.com>\r\nCall-ID: sngrep-{i}@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let udp_len = 8 + sip.len();
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend([0x45, 0]);
        frame.extend(((20 + udp_len) as u16).to_be_bytes());
        frame.extend([0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 1, 0, 2]);
        frame.extend(5060u16.to_be_bytes());
        frame.extend(5080u16.to_be_bytes());
        frame.extend((udp_len as u16).to_be_bytes());
        frame.extend([0, 0]);
        frame.extend(sip.as_bytes());
        out.extend((first_sec + i as u32).to_le_bytes());
        out.extend(250_000u32.to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn sngrep_producer_hep3_and_hep2() {
    let srv = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("calls.pcap");
    let first = (chrono_now() / 1_000_000) as u32 - 60;
    write_pcap(&pcap, 4, first);
    let v2 = dir.path().join("v2.conf");
    std::fs::write(&v2, "set eep.send.version 2\nset eep.send.id 77\n").unwrap();
    let target = format!("udp:127.0.0.1:{}", srv.udp.port());
    for config in [None, Some(&v2)] {
        let mut cmd = Command::new("sngrep");
        cmd.args(["-N", "-q", "-I"])
            .arg(&pcap)
            .args(["-H", &target]);
        if let Some(c) = config {
            cmd.arg("-F").arg("-f").arg(c);
        } else {
            cmd.arg("-F");
        }
        run_ok(
            &mut cmd,
            "sngrep is installed (the README's test command installs it)",
        );
    }
    srv.wait_written(8);
    assert_eq!(srv.metric("invalid"), 0);
    let rows = srv.query("SELECT time, call_id, from_user, src_ip, dst_ip, src_port, dst_port, capture_id FROM hep_1 WHERE call_id = 'sngrep-2@test' ORDER BY capture_id");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "one via HEPv3, one via HEPv2");
    let expected_time = chrono_like(first as i64 + 2);
    for r in rows {
        assert_eq!(r["time"], format!("{expected_time}.250"));
        assert_eq!(r["from_user"], "alice2");
        assert_eq!(
            (r["src_ip"].as_str(), r["dst_ip"].as_str()),
            (Some("10.1.0.1"), Some("10.1.0.2"))
        );
        assert_eq!(
            (r["src_port"].as_i64(), r["dst_port"].as_i64()),
            (Some(5060), Some(5080))
        );
    }
    // HEPv2 carries the configured id; sngrep's HEPv3 writes it byte-swapped (its bug, kept as sent).
    assert_eq!(rows[0]["capture_id"], 77);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second, UTC.
fn chrono_like(secs: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn send_save_and_replay_a_file() {
    let srv = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("traffic.hep");
    let save = Command::new(BIN)
        .args([
            "send",
            "--quiet",
            "--traffic",
            "sip",
            "--count",
            "10500",
            "--save",
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(save.success());
    // Something that is not HEP at the end: skipped, and said so.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(b"garbage").unwrap();
    drop(f);
    // No --count: the whole file, past the 10 000 generated traffic stops at.
    let replay = Command::new(BIN)
        .args([
            "send",
            "--quiet",
            "--transport",
            "tcp",
            "--rate",
            "0",
            "--to",
            &srv.tcp.to_string(),
            "--file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(replay.status.success());
    let said = String::from_utf8_lossy(&replay.stderr);
    assert!(said.contains("skipped 7 bytes"), "{said}");
    srv.wait_written(10_500);
    assert_eq!(
        srv.count("SELECT count(DISTINCT call_id) AS n FROM hep_1"),
        1_500
    );
    let bad = Command::new(BIN)
        .args(["send", "--file", "/dev/null"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no HEPv3 packets"));
}

/// A SIP message (one call's INVITE) stamped with `micros` as its capture time.
fn stamped(run: u64, micros: i64) -> HepMessage {
    let mut m = Call::new(run, 0).sip_flow(micros).remove(0);
    m.time_sec = (micros / 1_000_000) as u32;
    m.time_usec = (micros % 1_000_000) as u32;
    m
}

#[test]
fn capture_times_outside_the_window_are_stored_at_arrival() {
    let srv = Server::start(&[]);
    let year_2100 = 4_102_444_800_000_000;
    let year_1970 = 1_000_000;
    let sent = [
        stamped(1, year_2100),
        stamped(2, year_1970),
        stamped(3, chrono_now()),
    ];
    send_udp(
        srv.udp,
        &sent
            .iter()
            .map(|m| encode_v3(m).unwrap())
            .collect::<Vec<_>>(),
    );
    srv.wait_written(3);
    // All three are in the default (last 10 minutes) window, at their arrival time.
    assert_eq!(srv.count("SELECT count(*) AS n FROM hep_1"), 3);
    let rows = srv.query(
        "SELECT original_time FROM hep_1 WHERE original_time IS NOT NULL ORDER BY original_time",
    );
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert!(
        rows[0]["original_time"]
            .as_str()
            .unwrap()
            .starts_with("1970-01-01T00:00:01"),
        "{rows}"
    );
    assert!(
        rows[1]["original_time"]
            .as_str()
            .unwrap()
            .starts_with("2100-01-01T00:00:00"),
        "{rows}"
    );
    assert_eq!(srv.metric("time_replaced"), 2);
    // No partition outside the window was created.
    let (_, _, dir) = srv.terminate();
    let dates: Vec<String> = std::fs::read_dir(dir.path().join("hep_1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        dates
            .iter()
            .all(|d| !d.starts_with("date=1970") && !d.starts_with("date=2100")),
        "{dates:?}"
    );
}

#[test]
fn accept_any_time_keeps_old_captures_where_they_belong() {
    let srv = Server::start(&["--accept-any-time"]);
    let old = chrono_now() - 30 * 86_400_000_000;
    // Also one from 2100: kept there, and the default window (now − 10 min … now + 1 h) does not reach it.
    let future = 4_102_444_800_000_000;
    let packets = [
        encode_v3(&stamped(1, old)).unwrap(),
        encode_v3(&stamped(2, future)).unwrap(),
    ];
    send_udp(srv.udp, &packets);
    srv.wait_written(2);
    assert_eq!(
        srv.count("SELECT count(*) AS n FROM hep_1"),
        0,
        "outside the default window"
    );
    assert_eq!(
        srv.count("SELECT count(*) AS n FROM hep_1 WHERE time >= '2100-01-01'"),
        1
    );
    let day = chrono::DateTime::from_timestamp_micros(old)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(srv.count(&format!("SELECT count(*) AS n FROM hep_1 WHERE time >= '{day}' AND time < '{day}'::timestamp + interval '1 day' AND original_time IS NULL")), 1);
    assert_eq!(srv.metric("time_replaced"), 0);
}

#[test]
fn bad_settings_stop_the_start_with_a_message() {
    for (args, says) in [
        (
            &["--compact-max-job-bytes", "1000"][..],
            "--compact-max-job-bytes",
        ),
        (&["--writer-id", "a-b"][..], "writer id"),
        (&["--retention-days", "soon"][..], "retention-days"),
        (&["--flush-secs", "nan"][..], "--flush-secs"),
        (&["--flush-secs=-1"][..], "--flush-secs"),
        (&["--queue-mb", "0"][..], "--queue-mb"),
        (&["--flush-rows", "0"][..], "--flush-rows"),
        (&["--aleg-headers", "X-CID,X CID"][..], "--aleg-headers"),
        (
            &["--write-retry-max-secs", "0"][..],
            "--write-retry-max-secs",
        ),
        (&["--udp-buffer", "0"][..], "--udp-buffer"),
        (&["--query-max-rows", "0"][..], "--query-max-rows"),
        (&["--query-memory-mb", "1"][..], "--query-memory-mb"),
        (&["--max-response-mb", "0"][..], "--max-response-mb"),
        (&["--tls-port", "70000"][..], "70000"),
    ] {
        refuses_to_start(args, says);
    }
    // A lake that cannot be written stops the start, not the first flush:
    // here the probe's name is taken by a directory (root ignores modes).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("_probe/write/taken")).unwrap();
    let out = serve_command(dir.path(), &["--host", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not writable"), "{err}");
    // A file where the lake's directory belongs.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--hep-port",
            "0",
            "--http-port",
            "0",
            "--data",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("opening lake"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn retention_deletes_expired_hours_and_counts_them() {
    let srv = Server::start(&[
        "--accept-any-time",
        "--retention-days",
        "30",
        "--compact-every-secs",
        "1",
    ]);
    let old = chrono_now() - 40 * 86_400_000_000;
    send_udp(
        srv.udp,
        &[
            encode_v3(&stamped(1, old)).unwrap(),
            encode_v3(&stamped(2, chrono_now())).unwrap(),
        ],
    );
    srv.wait_written(2);
    let start = Instant::now();
    while srv.metric("expired_partitions") < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the expired hour was not deleted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(srv.metric("expired_partitions"), 1);
    assert!(srv.metric("expired_objects") >= 1);
    assert_eq!(
        srv.count("SELECT count(*) AS n FROM hep_1"),
        1,
        "the current hour is kept"
    );
    let (_, _, dir) = srv.terminate();
    let old_day = chrono::DateTime::from_timestamp_micros(old)
        .unwrap()
        .format("date=%Y-%m-%d")
        .to_string();
    let hours = std::fs::read_dir(dir.path().join("hep_1").join(&old_day))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(hours, 0, "nothing left of {old_day}");
}

#[test]
fn an_unwritable_lake_delays_rows_over_tcp_and_loses_none() {
    let srv = Server::start(&["--write-retry-max-secs", "0.2"]);
    // A file where the SIP table's directory belongs: every write of hep_1 fails
    // (root ignores read-only modes; this fails for anyone).
    let lake = srv.dir.as_ref().unwrap().path().to_owned();
    let blocker = lake.join("hep_1");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let msgs: Vec<Vec<u8>> = calls(30, 20)
        .iter()
        .map(|m| encode_v3(m).unwrap())
        .collect();
    let mut tcp = TcpStream::connect(srv.tcp).unwrap();
    tcp.write_all(&msgs.concat()).unwrap();
    drop(tcp);
    // Twelve attempts: retries go on for as long as the lake fails, without a count that gives up.
    srv.wait_metric_at_least("write_errors", 12);
    assert_eq!(srv.metric("dropped"), 0);
    std::fs::remove_file(&blocker).unwrap();
    srv.wait_written(msgs.len() as u64);
    assert_eq!(srv.metric("dropped"), 0);
    assert_eq!(
        srv.count("SELECT count(*) AS n FROM hep_1") as usize,
        msgs.len() * 7 / 10
    );
}

/// A log message (type 100) of `bytes` payload, unique by `i`.
fn big_log(i: usize, bytes: usize) -> Vec<u8> {
    let mut m = calls(60, 1).remove(0);
    m.proto_type = 100;
    m.payload = format!("{i:08}").into_bytes();
    m.payload.resize(bytes, b'x');
    encode_v3(&m).unwrap()
}

#[test]
fn a_full_queue_drops_udp_counted_and_holds_tcp_back() {
    // One MiB of queue, files of ten rows: with the lake unwritable the writer
    // soon holds its four files in retry and stops taking from the queue.
    let srv = Server::start(&[
        "--write-retry-max-secs",
        "0.2",
        "--queue-mb",
        "1",
        "--flush-rows",
        "10",
    ]);
    let lake = srv.dir.as_ref().unwrap().path().to_owned();
    let blocker = lake.join("hep_100");
    std::fs::write(&blocker, b"not a directory").unwrap();
    // TCP: 40 MB of 40 KB messages, more than the queue, the writer and the
    // sockets' buffers hold; the sender is held back, not dropped.
    let tcp_msgs: Vec<Vec<u8>> = (0..1000).map(|i| big_log(i, 40_000)).collect();
    let sender = {
        let (to, data) = (srv.tcp, tcp_msgs.concat());
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(to).unwrap();
            s.write_all(&data).unwrap();
        })
    };
    srv.wait_metric_at_least("write_errors", 4);
    // The queue stays within its bound (one message may pass it alone).
    let t = Instant::now();
    while srv.metric("queued_bytes") < 900_000 {
        assert!(t.elapsed() < Duration::from_secs(30), "queue never filled");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(srv.metric("queued_bytes") <= (1 << 20) + 41_000);
    // UDP meets the full queue: dropped and counted.
    let udp_msgs: Vec<Vec<u8>> = (1000..1050).map(|i| big_log(i, 40_000)).collect();
    send_udp(srv.udp, &udp_msgs);
    srv.wait_metric_at_least("dropped", 1);
    assert!(!sender.is_finished(), "the TCP sender is held back");
    assert!(srv.metric("queued_bytes") <= (1 << 20) + 41_000);
    // The lake is back: every TCP message is stored, and every UDP one not dropped.
    std::fs::remove_file(&blocker).unwrap();
    sender.join().unwrap();
    let dropped = srv.metric("dropped");
    assert!(dropped <= udp_msgs.len() as u64);
    srv.wait_written((tcp_msgs.len() + udp_msgs.len()) as u64 - dropped);
    assert_eq!(
        srv.count("SELECT count(DISTINCT substr(payload, 1, 8)) AS n FROM hep_100"),
        (tcp_msgs.len() + udp_msgs.len()) as i64 - dropped as i64
    );
}

#[test]
fn send_file_says_what_it_takes_when_given_a_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("calls.pcap");
    write_pcap(&pcap, 2, 1_764_000_000);
    let out = Command::new(BIN)
        .args(["send", "--to", "127.0.0.1:9", "--file"])
        .arg(&pcap)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a pcap capture")
            && err.contains("hepop send --save")
            && err.contains("hepop import"),
        "{err}"
    );
}
