//! Starting `hepop serve` for a test, talking HEP and HTTP to it.
#![allow(dead_code, unused_imports)]
pub use std::io::{BufRead, BufReader, Read, Write};
pub use std::net::{SocketAddr, TcpStream, UdpSocket};
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, Stdio};
pub use std::time::{Duration, Instant};

pub use hep::sample::Call;
pub use hep::{HepMessage, encode_v3};
pub use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_hepop");

pub struct Server {
    pub child: Child,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    pub dir: Option<tempfile::TempDir>,
    /// HEP over TLS, when the server was started with a certificate.
    pub hep_tls: Option<SocketAddr>,
    /// Arrow Flight SQL, when started with `--flight-port`.
    pub flight: Option<SocketAddr>,
    /// Sent as a bearer token with every request, when set.
    pub token: Option<String>,
    /// Talk HTTPS with this client configuration, when set.
    pub https: Option<std::sync::Arc<rustls::ClientConfig>>,
}

pub fn addr(line: &str, key: &str) -> SocketAddr {
    let v = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap();
    v.parse().unwrap()
}

/// `hepop serve` on free ports over the lake `dir`, compaction off unless `extra` sets it.
pub fn serve_command(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["serve", "--hep-port", "0", "--http-port", "0", "--data"])
        .arg(dir)
        .args(if extra.contains(&"--compact-every-secs") {
            &[][..]
        } else {
            &["--compact-every-secs", "0"][..]
        })
        .args(extra);
    c
}

/// Starts `command` with stdout piped and returns it with its first line.
pub fn first_line(command: &mut Command, stderr: Stdio) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// Sends SIGTERM: the server's orderly shutdown.
pub fn sigterm(child: &Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

/// Asserts that `hepop serve` with `args` exits with an error whose message says `says`.
pub fn refuses_to_start(args: &[&str], says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--host", "127.0.0.1"];
    all.extend_from_slice(args);
    let out = serve_command(dir.path(), &all).output().unwrap();
    assert!(!out.status.success(), "{args:?} started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(says), "{args:?}: {err}");
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_flushing_every("0.3", extra)
    }

    pub fn start_flushing_every(flush_secs: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![
            "--host",
            "127.0.0.1",
            "--flush-secs",
            flush_secs,
            "--stats-every-secs",
            "0",
        ];
        all.extend_from_slice(extra);
        Self::spawn(serve_command(dir.path(), &all), dir)
    }

    /// Runs `command` (a `hepop serve` over `dir`) and waits for its start line.
    pub fn spawn(mut command: Command, dir: tempfile::TempDir) -> Server {
        let (child, line) = first_line(&mut command, Stdio::null());
        assert!(line.starts_with("hepop listening"), "{line}");
        Server {
            udp: addr(&line, "hep_udp"),
            tcp: addr(&line, "hep_tcp"),
            http: addr(&line, "http"),
            hep_tls: line
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("hep_tls="))
                .and_then(|v| v.parse().ok()),
            flight: line
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("flight="))
                .and_then(|v| v.parse().ok()),
            child,
            dir: Some(dir),
            token: None,
            https: None,
        }
    }

    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.http_as(method, path, body, self.token.as_deref())
    }

    /// One request with `token` as its bearer token (or none); over TLS when `https` is set.
    pub fn http_as(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, _, body) = self.exchange(&req);
        (status, body)
    }

    /// One GET naming `host`, with `token` if given: (status, headers lower-cased, body).
    pub fn get_for_host(
        &self,
        path: &str,
        host: &str,
        token: Option<&str>,
    ) -> (u16, String, String) {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        self.exchange(&format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}\r\n"
        ))
    }

    /// Sends `req` as it is: (status, headers lower-cased, body).
    pub fn exchange(&self, req: &str) -> (u16, String, String) {
        let tcp = TcpStream::connect(self.http).unwrap();
        // Bodies may be binary (PCAP): read as bytes, shown lossily.
        let mut buf = Vec::new();
        match &self.https {
            None => {
                let mut s = tcp;
                s.write_all(req.as_bytes()).unwrap();
                s.read_to_end(&mut buf).unwrap();
            }
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                s.write_all(req.as_bytes()).unwrap();
                // The server closes without close_notify at times: what was read counts.
                let _ = s.read_to_end(&mut buf);
            }
        }
        let resp = String::from_utf8_lossy(&buf);
        let status = resp[9..12].parse().unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    pub fn query(&self, sql: &str) -> Value {
        let (status, body) = self.http("POST", "/query", &json!({ "query": sql }).to_string());
        assert_eq!(status, 200, "{sql}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.query(sql)[0]["n"].as_i64().unwrap()
    }

    /// A counter (`hepop_<name>_total`) or gauge (`hepop_<name>`).
    pub fn metric(&self, name: &str) -> u64 {
        let (_, body) = self.http("GET", "/metrics", "");
        let (counter, gauge) = (format!("hepop_{name}_total "), format!("hepop_{name} "));
        let line = body
            .lines()
            .find(|l| l.starts_with(&counter) || l.starts_with(&gauge))
            .unwrap_or_else(|| panic!("{name} in {body}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// Waits until `written` reaches `n` (rows are queryable then).
    pub fn wait_written(&self, n: u64) {
        self.wait_metric("written", n);
    }

    /// Waits until counter `name` reaches at least `n` (30 s at most).
    pub fn wait_metric_at_least(&self, name: &str, n: u64) {
        let start = Instant::now();
        while self.metric(name) < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name}: only {} of {n}",
                self.metric(name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until counter `name` reaches `n` (30 s at most), then checks it did not pass it.
    pub fn wait_metric(&self, name: &str, n: u64) {
        self.wait_metric_at_least(name, n);
        assert_eq!(self.metric(name), n, "{name}");
    }

    pub fn terminate(mut self) -> (std::process::ExitStatus, String, tempfile::TempDir) {
        sigterm(&self.child);
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (status, out, self.dir.take().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// `hepop serve` over a lake holding `msgs` (written as the server writes),
/// compacting every second: what builds the call records of settled hours.
pub fn serve_compacting(msgs: &[HepMessage]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = lake::store::open(dir.path().to_str().unwrap()).unwrap();
        let mut buf = lake::writer::WriteBuffer::new(Default::default());
        for m in msgs {
            buf.append(m);
        }
        for f in buf.take_due(Instant::now(), true) {
            f.write(&store).await.unwrap();
        }
    });
    let args = [
        "--host",
        "127.0.0.1",
        "--compact-every-secs",
        "1",
        "--stats-every-secs",
        "0",
    ];
    Server::spawn(serve_command(dir.path(), &args), dir)
}

pub fn calls(run: u64, n: u64) -> Vec<HepMessage> {
    let now = chrono_now() - 20_000_000;
    (0..n)
        .flat_map(|i| Call::new(run, i).all(now + i as i64 * 1000))
        .collect()
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

pub fn send_udp(to: SocketAddr, packets: &[Vec<u8>]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, p) in packets.iter().enumerate() {
        s.send_to(p, to).unwrap();
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A self-signed certificate for localhost/127.0.0.1, its PEM files, and a
/// client configuration that trusts it.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

impl TestCert {
    pub fn new() -> TestCert {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), c.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), c.key_pair.serialize_pem()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(c.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        TestCert {
            dir,
            client: std::sync::Arc::new(client),
        }
    }

    pub fn cert(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }

    pub fn key(&self) -> String {
        self.dir.path().join("key.pem").display().to_string()
    }

    /// A TLS connection to `addr`, handshake done.
    pub fn connect(
        &self,
        addr: SocketAddr,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(self.client.clone(), name).unwrap();
        let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        s
    }
}

/// Runs `command` (`what` names it, and how it got installed) to the end;
/// fails the test with its output unless it succeeded.
/// `hepop send` of `count` generated messages (`traffic`: sip or all) over TCP to `to`, as fast as it can.
pub fn send_over_tcp(to: SocketAddr, traffic: &str, count: u64) {
    run_ok(
        Command::new(BIN)
            .args([
                "send",
                "--quiet",
                "--traffic",
                traffic,
                "--count",
                &count.to_string(),
            ])
            .args(["--transport", "tcp", "--rate", "0", "--to", &to.to_string()]),
        "hepop send",
    );
}

pub fn run_ok(command: &mut Command, what: &str) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        command,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
