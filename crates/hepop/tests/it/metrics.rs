//! heplify-server's series on `/metrics`, as Grafana dashboards built for it
//! read them: a valid exposition (promtool), scraped by a real Prometheus with
//! the bearer token, and an answer-seizure ratio over generated calls that
//! PromQL gives exactly.
use crate::support;

use support::*;

const TOKEN: &str = "metrics-t0ken-0123456789abcdef";

/// The problems `promtool check metrics` reports of heplify-server's own names,
/// kept so its dashboards work unchanged.
const HEPLIFY_NAMING: [&str; 1] =
    ["heplify_method_response counter metrics should have \"_total\" suffix"];

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A plain HTTP/1.0 GET (no chunking): (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    (status, resp.split_once("\r\n\r\n").unwrap().1.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's Prometheus scraping `target`, stopped on drop.
struct Prometheus {
    child: Child,
    web: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Two jobs on the same target: `hepop` with the token, `anonymous` without.
    fn start(target: SocketAddr, token: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
                 - job_name: hepop\n  authorization:\n    credentials_file: {}\n  static_configs:\n    - targets: ['{target}']\n\
                 - job_name: anonymous\n  static_configs:\n    - targets: ['{target}']\n",
                token_file.display()
            ),
        )
        .unwrap();
        let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed by ./scripts/test (Debian package prometheus)");
        Prometheus {
            child,
            web,
            _dir: dir,
        }
    }

    /// An instant query's single value, once Prometheus has one (60 s at most).
    fn value(&mut self, promql: &str) -> f64 {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let start = Instant::now();
        loop {
            if let Ok(s) = TcpStream::connect(self.web) {
                drop(s);
                let (status, body) = get(self.web, &path);
                assert!(status == 200 || status == 503, "{promql}: {status} {body}");
                if status == 200 {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    if let Some(x) = v["data"]["result"][0]["value"][1].as_str() {
                        return x.parse().unwrap();
                    }
                }
            }
            let exited = self.child.try_wait().unwrap();
            let log = || std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default();
            assert!(exited.is_none(), "prometheus stopped: {}", log());
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no value for {promql}: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
#[ignore = "needs promtool and prometheus (Debian package prometheus): run ./scripts/test"]
fn heplify_series_are_valid_scraped_with_the_token_and_give_the_exact_asr() {
    let mut srv = Server::start(&["--api-token", TOKEN]);
    srv.token = Some(TOKEN.into());

    // 20 calls: 15 answered, 3 busy, 2 unavailable; every INVITE sent twice, as a
    // retransmission or a second capture point would, which must not count.
    let run = chrono_now() as u64;
    let start = chrono_now() - 20_000_000;
    let mut msgs = Vec::new();
    for i in 0..20u64 {
        let call = Call::new(run, i);
        let t = start + i as i64 * 1000;
        let flow = match i {
            0..15 => call.sip_flow(t),
            15..18 => call.failed_flow(t, "486 Busy Here"),
            _ => call.failed_flow(t, "503 Service Unavailable"),
        };
        msgs.push(flow[0].clone());
        msgs.extend(flow);
    }
    let sip_packets = msgs.len() as f64;
    let packets: Vec<Vec<u8>> = msgs.iter().map(|m| encode_v3(m).unwrap()).collect();
    send_udp(srv.udp, &packets);

    let started = Instant::now();
    let body = loop {
        let (status, body) = srv.http("GET", "/metrics", "");
        assert_eq!(status, 200, "{body}");
        if sample(&body, "heplify_packets_total{type=\"sip\"}") == Some(sip_packets) {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not every packet counted: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let count = |response: &str| {
        sample(
            &body,
            &format!(
                "heplify_method_response{{target_name=\"\",direction=\"\",node_id=\"2001\",response=\"{response}\",method=\"INVITE\"}}"
            ),
        )
    };
    assert_eq!(count("INVITE"), Some(20.0), "{body}");
    assert_eq!(count("200"), Some(15.0), "{body}");
    assert_eq!(count("486"), Some(3.0), "{body}");
    assert_eq!(count("503"), Some(2.0), "{body}");
    // INVITE to 180 Ringing is 40 ms in every generated call.
    assert_eq!(
        sample(&body, "heplify_kpi_srd{"),
        Some(40_000_000.0),
        "{body}"
    );

    // The whole exposition, HEPop's own series included, parses; the only
    // lint problems are heplify-server's names.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by ./scripts/test (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !HEPLIFY_NAMING.contains(&l.trim()))
        .collect();
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)) && problems.is_empty(),
        "promtool: {:?} {problems:?}",
        out.status
    );

    let mut prom = Prometheus::start(srv.http, TOKEN);
    assert_eq!(prom.value(r#"up{job="hepop"}"#), 1.0);
    // Without the token the scrape fails: /metrics is behind it.
    assert_eq!(prom.value(r#"up{job="anonymous"}"#), 0.0);
    let asr = prom.value(
        r#"sum(heplify_method_response{job="hepop",method="INVITE",response="200"}) / sum(heplify_method_response{job="hepop",method="INVITE",response="INVITE"})"#,
    );
    assert_eq!(asr, 0.75);
    // Network effectiveness counts a busy callee as the network's success.
    let ner = prom.value(
        r#"sum(heplify_method_response{job="hepop",method="INVITE",response=~"200|486"}) / sum(heplify_method_response{job="hepop",method="INVITE",response="INVITE"})"#,
    );
    assert_eq!(ner, 0.9);
}
