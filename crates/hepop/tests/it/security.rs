//! Secure by default, end to end against the real binary: bearer tokens on
//! the API (and /metrics), loopback-only HTTP without one, HTTPS, HEP auth
//! keys stored by name, HEP over TLS beside plain TCP, bad settings refused.
use crate::support;

use support::*;

const TOKEN: &str = "t0ken-for-tests-0123456789abcdef";
const ROTATED: &str = "next-t0ken-for-tests-0123456789";

fn token_file(tokens: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(tokens.as_bytes()).unwrap();
    f
}

#[test]
fn the_api_and_metrics_need_a_token_health_does_not() {
    let file = token_file(&format!("# rotated in on Monday\n{ROTATED}\n"));
    let mut srv = Server::start(&[
        "--api-token",
        TOKEN,
        "--api-token-file",
        file.path().to_str().unwrap(),
    ]);
    let q = r#"{"query": "SELECT 1 AS one"}"#;
    assert_eq!(srv.http_as("GET", "/health", "", None), (200, "ok".into()));
    let (s, b) = srv.http_as("POST", "/query", q, None);
    assert_eq!(s, 401);
    assert!(b.contains("missing API token"), "{b}");
    let (s, b) = srv.http_as("POST", "/query", q, Some("not-the-token-0123456789"));
    assert_eq!(s, 401);
    assert!(b.contains("invalid API token"), "{b}");
    for t in [TOKEN, ROTATED] {
        let (s, b) = srv.http_as("POST", "/query", q, Some(t));
        assert_eq!((s, b.as_str()), (200, r#"[{"one":1}]"#));
    }
    assert_eq!(srv.http_as("GET", "/metrics", "", None).0, 401);
    assert_eq!(
        srv.http_as("GET", "/api/v3/query_sql?q=SELECT%201", "", None)
            .0,
        401
    );
    // With a token, the token decides, whatever name the request gives.
    let (s, _, b) = srv.get_for_host(
        "/query?q=SELECT%201%20AS%20one",
        "evil.example",
        Some(TOKEN),
    );
    assert_eq!((s, b.as_str()), (200, r#"[{"one":1}]"#));
    srv.token = Some(TOKEN.into());
    assert_eq!(srv.metric("received"), 0);
}

/// DNS rebinding: a page under a name its author controls, pointed at
/// 127.0.0.1, makes the browser send that name as `Host`. With no token, only
/// localhost, IP addresses and `--http-allowed-hosts` are served.
#[test]
fn without_a_token_only_loopback_names_addresses_and_allowed_hosts_are_served() {
    let srv = Server::start(&["--http-allowed-hosts", "hepop.lan"]);
    let port = srv.http.port();
    let q = "/query?q=SELECT%201%20AS%20one";
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("HEPop.lan:{port}"),
        "ui.localhost".to_owned(),
    ] {
        let (s, _, b) = srv.get_for_host(q, &host, None);
        assert_eq!((s, b.as_str()), (200, r#"[{"one":1}]"#), "Host {host}");
    }
    for host in [
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        for path in [q, "/api/v1/calls?from=0&to=1", "/metrics", "/ui/"] {
            let (s, _, b) = srv.get_for_host(path, &host, None);
            assert_eq!(s, 421, "Host {host} {path}: {b}");
            assert!(b.contains("--http-allowed-hosts"), "{b}");
        }
    }
}

#[test]
fn every_answer_carries_the_security_headers_and_data_is_not_stored() {
    let srv = Server::start(&[]);
    for (path, status, cache) in [
        ("/query?q=SELECT%201", 200, "no-store"),
        ("/query?q=SELEC", 400, "no-store"),
        ("/health", 200, "no-store"),
        ("/nope", 404, "no-store"),
        ("/ui/", 200, "no-cache"),
        ("/ui/app.js", 200, "no-cache"),
    ] {
        let (s, head, b) = srv.get_for_host(path, "localhost", None);
        assert_eq!(s, status, "{path}: {b}");
        for h in [
            "content-security-policy: default-src 'self'; frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(h), "{path} lacks {h}: {head}");
        }
        assert!(
            head.contains(&format!("cache-control: {cache}")),
            "{path}: {head}"
        );
    }
    // Refused ones too.
    let (s, head, _) = srv.get_for_host("/health", "evil.example", None);
    assert_eq!(s, 421);
    assert!(head.contains("x-frame-options: deny"), "{head}");
}

/// Starts `hepop serve` with `args`, reads its first stdout line, stops it, returns (line, stderr).
fn start_and_stop(args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (child, line) = first_line(&mut serve_command(dir.path(), args), Stdio::piped());
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    (line, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn without_a_token_the_api_listens_on_loopback_and_says_so() {
    // HEP on every address, as the README's first command does.
    let (line, log) = start_and_stop(&["--host", "0.0.0.0"]);
    assert!(line.starts_with("hepop listening"), "{line}");
    assert!(addr(&line, "hep_udp").ip().is_unspecified(), "{line}");
    assert!(addr(&line, "http").ip().is_loopback(), "{line}");
    assert!(log.contains("no API token configured"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log}"
    );

    // Public without a token only when asked for by its loud name.
    let (line, log) = start_and_stop(&["--http-host", "0.0.0.0", "--insecure-public-http"]);
    assert!(addr(&line, "http").ip().is_unspecified(), "{line}");
    assert!(log.contains("INSECURE"), "{log}");
    // With a token the API follows --host.
    let (line, _) = start_and_stop(&["--host", "0.0.0.0", "--api-token", TOKEN]);
    assert!(addr(&line, "http").ip().is_unspecified(), "{line}");
}

#[test]
fn the_api_speaks_https_with_a_certificate() {
    let cert = TestCert::new();
    let mut srv = Server::start(&[
        "--http-tls-cert",
        &cert.cert(),
        "--http-tls-key",
        &cert.key(),
        "--api-token",
        TOKEN,
    ]);
    srv.https = Some(cert.client.clone());
    srv.token = Some(TOKEN.into());
    assert_eq!(srv.count("SELECT 7 AS n"), 7);
    assert_eq!(srv.http_as("POST", "/query", "{}", None).0, 401);
    // Plain HTTP on the HTTPS port gets no answer.
    let mut plain = TcpStream::connect(srv.http).unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    let _ = plain.read_to_end(&mut resp);
    assert!(
        !resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

fn keyed(run: u64, calls: u64, key: Option<&str>) -> Vec<Vec<u8>> {
    (0..calls)
        .flat_map(|i| Call::new(run, i).all(chrono_now() - 5_000_000 + i as i64 * 1000))
        .map(|mut m| {
            m.capture_pass = key.map(str::to_owned);
            encode_v3(&m).unwrap()
        })
        .collect()
}

#[test]
fn hep_auth_keys_refuse_strangers_and_rows_hold_the_name_not_the_secret() {
    let file = token_file("# the core cluster\ncore=s3cret-of-the-core\n");
    let mut srv = Server::start(&[
        "--auth-key",
        "edge=s3cret-of-the-edge",
        "--auth-key-file",
        file.path().to_str().unwrap(),
    ]);
    let edge = keyed(1, 3, Some("s3cret-of-the-edge"));
    let core = keyed(2, 2, Some("s3cret-of-the-core"));
    let stranger = keyed(3, 2, Some("guess"));
    let keyless = keyed(4, 1, None);
    let mut legacy = Call::new(5, 0).sip_flow(chrono_now()).remove(0);
    legacy.capture_pass = None;
    send_udp(srv.udp, &edge);
    send_udp(srv.udp, &stranger);
    send_udp(srv.udp, &[hep::encode_legacy(&legacy, 2)]);
    let mut tcp = TcpStream::connect(srv.tcp).unwrap();
    tcp.write_all(&core.concat()).unwrap();
    tcp.write_all(&keyless.concat()).unwrap();
    drop(tcp);
    let accepted = (edge.len() + core.len()) as u64;
    srv.wait_written(accepted);
    let refused = (stranger.len() + keyless.len() + 1) as u64;
    srv.wait_metric("rejected", refused);
    let by_key = srv.query(
        "SELECT capture_pass, count(*) AS n FROM (SELECT capture_pass FROM hep_1 UNION ALL SELECT capture_pass FROM hep_5 UNION ALL SELECT capture_pass FROM hep_100) GROUP BY capture_pass ORDER BY capture_pass",
    );
    assert_eq!(
        by_key,
        json!([{"capture_pass": "core", "n": core.len()}, {"capture_pass": "edge", "n": edge.len()}])
    );
    // Not one stored byte holds a secret.
    let (status, _, dir) = {
        srv.token = None;
        srv.terminate()
    };
    assert!(status.success());
    let mut files = 0;
    for f in walk(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"s3cret"),
            "{} holds a secret",
            f.display()
        );
        files += 1;
    }
    assert!(files >= 3, "{files} files");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn hep_over_tls_on_its_own_port_and_plain_tcp_refused_there() {
    let cert = TestCert::new();
    let srv = Server::start(&[
        "--tls-cert",
        &cert.cert(),
        "--tls-key",
        &cert.key(),
        "--tls-port",
        "0",
    ]);
    let tls_addr = srv.hep_tls.expect("hep_tls in the start line");
    assert_ne!(tls_addr.port(), srv.tcp.port());
    let msgs = keyed(6, 5, None);
    let mut tls = cert.connect(tls_addr);
    for m in &msgs {
        tls.write_all(m).unwrap();
    }
    tls.flush().unwrap();
    srv.wait_written(msgs.len() as u64);
    assert_eq!(srv.metric("tls_connections"), 1);

    let mut plain = TcpStream::connect(tls_addr).unwrap();
    plain.write_all(&keyed(7, 1, None).concat()).unwrap();
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    srv.wait_metric("tls_handshake_failures", 1);
    assert_eq!(srv.metric("decoded"), msgs.len() as u64);
    // Plain TCP keeps working on its own port.
    let more = keyed(8, 1, None);
    let mut tcp = TcpStream::connect(srv.tcp).unwrap();
    tcp.write_all(&more.concat()).unwrap();
    drop(tcp);
    srv.wait_written((msgs.len() + more.len()) as u64);
}

#[test]
fn bad_security_settings_stop_the_start_with_a_message() {
    let cert = TestCert::new();
    let missing = cert.dir.path().join("nope.pem").display().to_string();
    let cert_path = cert.cert();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--api-token", "short"], "at least 16"),
        (vec!["--http-host", "0.0.0.0"], "--insecure-public-http"),
        (
            vec!["--tls-cert", &missing, "--tls-key", &missing],
            "nope.pem",
        ),
        (vec!["--tls-cert", &cert_path], "--tls-key"),
        (
            vec!["--http-tls-cert", &cert_path, "--http-tls-key", &cert_path],
            "private key",
        ),
        (
            vec![
                "--auth-key",
                "a=0123456789abcdef",
                "--auth-key",
                "a=0123456789abcdeF",
            ],
            "used twice",
        ),
        (vec!["--auth-key", "edge=S3cret"], "at least 16"),
        (vec!["--max-connections", "0"], "--max-connections"),
        (vec!["--query-concurrency", "0"], "--query-concurrency"),
    ];
    for (args, says) in cases {
        refuses_to_start(&args, says);
    }
}

#[test]
fn a_connection_flood_meets_the_cap_not_the_descriptor_limit() {
    // 400 open files: the cap is fitted to leave 256 for the lake and HTTP.
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_command(dir.path(), &["--host", "127.0.0.1", "--flush-secs", "0.3"]);
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg("ulimit -n 400 && exec \"$0\" \"$@\"")
        .arg(serve.get_program())
        .args(serve.get_args());
    let srv = Server::spawn(limited, dir);
    let cap = 400 - 256;
    let frame = keyed(9, 1, None).remove(0);
    let mut open = Vec::new();
    for _ in 0..cap + 100 {
        let mut c = TcpStream::connect(srv.tcp).unwrap();
        // A refused one may be closed before the write lands.
        let _ = c.write_all(&frame);
        open.push(c);
    }
    srv.wait_metric("connections_refused", 100);
    srv.wait_written(cap as u64);
    assert_eq!(
        srv.metric("accept_errors"),
        0,
        "never ran out of descriptors"
    );
    // The lake is still writable with every slot taken.
    let more = keyed(10, 3, None);
    send_udp(srv.udp, &more);
    srv.wait_written((cap + more.len()) as u64);
    drop(open);
}

/// `GET /health` on a connection of its own: Some(status), or None when the
/// server closed it unanswered (the cap) or it could not connect.
fn health(srv: &Server) -> Option<u16> {
    let mut s = TcpStream::connect(srv.http).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.get(9..12)?.parse().ok()
}

/// Polls until `/health` answers 200 (the cap has room again), 30 s at most.
fn wait_healthy(srv: &Server) {
    let start = Instant::now();
    while health(srv) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "/health never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Idle clients, a slow-loris client and a flood of connections meet the
/// HTTP connection cap and the head timeout: each is counted, `/health`
/// answers again as soon as they are gone, and HEP ingest never stops.
#[test]
fn idle_slow_and_flooding_http_clients_meet_the_cap_and_the_timeouts_and_ingest_goes_on() {
    let srv = Server::start(&[
        "--http-max-connections",
        "4",
        "--http-header-timeout-secs",
        "3",
    ]);
    // Three idle connections and one that sends half a head fill the cap.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(srv.http).unwrap())
        .collect();
    let mut slow = TcpStream::connect(srv.http).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    // A fifth is closed unanswered: the accept loop takes connections in order.
    assert_eq!(health(&srv), None, "over the cap");
    // Ingest is not held up meanwhile.
    let first = keyed(9, 10, None);
    send_udp(srv.udp, &first);
    // The head timeout frees the cap without the clients' help.
    wait_healthy(&srv);
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = slow.read_to_end(&mut rest);
    drop(idle);
    srv.wait_written(first.len() as u64);
    srv.wait_metric_at_least("http_header_timeouts", 4);
    assert!(srv.metric("http_connections_refused") >= 1);

    // A flood: 200 connections at once, held open.
    let accounted =
        |srv: &Server| srv.metric("http_connections") + srv.metric("http_connections_refused");
    let before = accounted(&srv);
    let refused_before = srv.metric("http_connections_refused");
    let flood: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(srv.http).ok())
        .collect();
    let second = keyed(10, 10, None);
    send_udp(srv.udp, &second);
    drop(flood);
    wait_healthy(&srv);
    srv.wait_written((first.len() + second.len()) as u64);
    // Every connection of the flood was either served (4 at a time) or closed at once.
    let start = Instant::now();
    while accounted(&srv) < before + 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "connections unaccounted for"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(srv.metric("http_connections_refused") > refused_before);
    assert!(srv.metric("http_open_connections") <= 4);
}

/// A sender with 60 KB Call-IDs (and fake B legs naming a victim call as
/// their A leg) once made every call search answer 400 and broke the
/// victim's flow: the ids were pasted into SQL over the 1 MiB limit. Fields
/// are cut to `hep::sip::MAX_FIELD_BYTES`, so search, flow and PCAP answer.
#[test]
fn huge_captured_ids_neither_blind_call_search_nor_break_a_victims_flow() {
    let srv = Server::start(&[]);
    let now = chrono_now() - 60_000_000;
    let victim = Call::new(61, 0);
    let mut msgs = victim.sip_flow(now);
    let victim_messages = msgs.len();
    let template = msgs[0].clone();
    for i in 0..25 {
        let mut m = template.clone();
        let huge = format!("{i}-{}", "x".repeat(60_000));
        m.payload = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: {huge}\r\nX-CID: {}\r\n\
             From: <sip:eve@example.com>;tag={i}\r\nTo: <sip:bob@example.com>\r\nCSeq: 1 INVITE\r\n\r\n",
            victim.call_id
        )
        .into_bytes();
        m.time_usec = (m.time_usec + 1000 + i) % 1_000_000;
        msgs.push(m);
    }
    let mut tcp = TcpStream::connect(srv.tcp).unwrap();
    for m in &msgs {
        tcp.write_all(&hep::encode_v3(m).unwrap()).unwrap();
    }
    drop(tcp);
    srv.wait_written(msgs.len() as u64);
    let (from, to) = (now / 1000 - 60_000, now / 1000 + 600_000);
    let (s, b) = srv.http(
        "GET",
        &format!("/api/v1/calls?from={from}&to={to}&limit=100"),
        "",
    );
    assert_eq!(s, 200, "{}", &b[..b.len().min(300)]);
    let calls: Value = serde_json::from_str(&b).unwrap();
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 26, "the victim and 25 fakes");
    assert!(
        calls
            .iter()
            .all(|c| c["call_id"].as_str().unwrap().len() <= 256)
    );
    let flow = format!("/api/v1/calls/{}?from={from}&to={to}", victim.call_id);
    let (s, b) = srv.http("GET", &flow, "");
    assert_eq!(s, 200, "{}", &b[..b.len().min(300)]);
    let flow: Value = serde_json::from_str(&b).unwrap();
    let own = flow["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["call_id"] == victim.call_id.as_str())
        .count();
    assert_eq!(own, victim_messages, "the victim's flow is whole");
    let (s, _) = srv.http(
        "GET",
        &format!("/api/v1/calls/{}/pcap?from={from}&to={to}", victim.call_id),
        "",
    );
    assert_eq!(s, 200);
}

/// A client that asks for a large answer and never reads it: the connection
/// is closed once the response makes no progress for the stall timeout
/// (counted), and the server answers others meanwhile.
#[test]
fn a_client_that_stops_reading_its_answer_is_closed_after_the_stall_timeout() {
    let srv = Server::start(&["--http-stall-timeout-secs", "1"]);
    let sql = "SELECT v, repeat('x', 400) AS pad FROM generate_series(1, 90000) AS t(v)";
    let mut greedy = TcpStream::connect(srv.http).unwrap();
    let body = serde_json::json!({ "query": sql }).to_string();
    write!(
        greedy,
        "POST /query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Never read: the socket buffers fill and the server's writes stop.
    srv.wait_metric_at_least("http_stalled", 1);
    assert_eq!(health(&srv), Some(200));
    // What the client can still read ends short of the answer: the server closed it.
    greedy
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = greedy.read_to_end(&mut got);
    assert!(got.len() < 90_000 * 400, "{} bytes", got.len());
}
