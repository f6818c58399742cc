//! The relay against an in-process sink that can fail: every message that
//! arrives valid reaches the sink exactly as sent, through throttling,
//! partial failures and outages.
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use edge_relay::batcher::{BatcherConfig, Record};
use edge_relay::relay::{BoundRelay, RelayConfig, run_bound};
use edge_relay::shipper::RetryConfig;
use edge_relay::sink::{RecordSink, SinkError};
use hep::sample::Call;
use listen::CancellationToken;

#[derive(Default)]
struct FlakySink {
    delivered: Mutex<Vec<Record>>,
    /// Kinesis unreachable: every call fails.
    down: AtomicBool,
    /// How long each call takes (a slow but healthy Kinesis).
    latency: Duration,
    /// Every n-th record put fails as if throttled.
    throttle_every: usize,
    /// Records put so far.
    calls: Mutex<usize>,
}

#[async_trait]
impl RecordSink for FlakySink {
    async fn put(&self, records: &[Record]) -> Result<Vec<usize>, SinkError> {
        assert!(records.len() <= 500 && records.iter().map(Record::size).sum::<usize>() <= 5 << 20);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(SinkError::Retriable("connection refused".into()));
        }
        let mut failed = Vec::new();
        let mut d = self.delivered.lock().unwrap();
        let mut n = self.calls.lock().unwrap();
        for (i, r) in records.iter().enumerate() {
            assert!(r.size() <= 1 << 20);
            *n += 1;
            if self.throttle_every > 0 && (*n).is_multiple_of(self.throttle_every) {
                failed.push(i);
            } else {
                d.push(r.clone());
            }
        }
        Ok(failed)
    }
}

impl FlakySink {
    /// Every HEP packet delivered, with how many times each arrived.
    fn messages(&self) -> HashMap<Vec<u8>, usize> {
        let mut m = HashMap::new();
        for r in self.delivered.lock().unwrap().iter() {
            for p in kinesis_record::messages(&r.data).unwrap() {
                *m.entry(p).or_default() += 1;
            }
        }
        m
    }
}

struct Relay {
    udp: SocketAddr,
    tls: Option<SocketAddr>,
    metrics: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _spool: tempfile::TempDir,
}

fn config(spool: &std::path::Path, give_up: Duration, memory_bytes: usize) -> RelayConfig {
    RelayConfig {
        // Port 0 everywhere: the relay binds once and reports what it got.
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_buffer: 8 << 20,
        auth_keys: Default::default(),
        tls: None,
        stream_limits: Default::default(),
        batcher: BatcherConfig {
            max_raw_bytes: 256 << 10,
            linger: Duration::from_millis(50),
            max_linger: Duration::from_millis(50),
            ..Default::default()
        },
        retry: RetryConfig {
            base: Duration::from_millis(20),
            max: Duration::from_millis(500),
            give_up_after: give_up,
            ..Default::default()
        },
        memory_bytes,
        spool_dir: spool.to_owned(),
        spool_max_bytes: 1 << 30,
        metrics: "127.0.0.1:0".parse().unwrap(),
    }
}

async fn start(
    sink: Arc<FlakySink>,
    auth_keys: &[&str],
    give_up: Duration,
    memory_bytes: usize,
) -> Relay {
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = config(spool.path(), give_up, memory_bytes);
    cfg.auth_keys = listen::AuthKeys::new(auth_keys).unwrap();
    start_with(sink, cfg, spool).await
}

async fn start_with(sink: Arc<FlakySink>, cfg: RelayConfig, spool: tempfile::TempDir) -> Relay {
    let bound = BoundRelay::bind(cfg).await.unwrap();
    let addrs = bound.addrs().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_bound(bound, sink, stop.clone()));
    Relay {
        udp: addrs.udp,
        tls: addrs.tls,
        metrics: addrs.metrics,
        stop,
        task,
        _spool: spool,
    }
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    e2e::relay_metric(addr, name)
}

fn packets(run: u64, calls: u64, pass: &str) -> Vec<Vec<u8>> {
    (0..calls)
        .flat_map(|i| Call::new(run, i).all(1_764_000_000_000_000 + i as i64 * 1000))
        .map(|mut m| {
            m.capture_pass = Some(pass.into());
            hep::encode_v3(&m).unwrap()
        })
        .collect()
}

async fn send_udp(to: SocketAddr, ps: &[Vec<u8>], per_ms: usize) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, p) in ps.iter().enumerate() {
        s.send_to(p, to).unwrap();
        if i % per_ms == per_ms - 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn wait_for(sink: &FlakySink, n: usize, limit: Duration) {
    let t = Instant::now();
    while sink.messages().len() < n && t.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_tcp_throttling_and_auth_keys() {
    let sink = Arc::new(FlakySink {
        throttle_every: 3,
        ..Default::default()
    });
    let relay = start(
        sink.clone(),
        &["edge=good-secret-of-edge"],
        Duration::from_secs(10),
        64 << 20,
    )
    .await;
    let good_udp = packets(1, 100, "good-secret-of-edge");
    let good_tcp = packets(2, 100, "good-secret-of-edge");
    let bad_key = packets(3, 5, "intruder");
    send_udp(relay.udp, &good_udp, 50).await;
    send_udp(relay.udp, &bad_key, 50).await;
    send_udp(relay.udp, &[b"not hep".to_vec()], 1).await;
    let mut tcp = TcpStream::connect(relay.udp).unwrap();
    let stream: Vec<u8> = good_tcp.concat();
    for c in stream.chunks(1000) {
        tcp.write_all(c).unwrap();
    }
    drop(tcp);
    wait_for(&sink, 2000, Duration::from_secs(20)).await;
    assert_eq!(metric(relay.metrics, "rejected_total"), 50);
    assert_eq!(metric(relay.metrics, "invalid_total"), 1);
    assert!(
        metric(relay.metrics, "put_retries_total") > 0,
        "throttled records were retried"
    );
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();
    let got = sink.messages();
    for p in good_udp.iter().chain(&good_tcp) {
        // Forwarded with the key's name in place of the secret.
        let named = hep::replace_auth_key(p, "edge").unwrap();
        assert_eq!(got.get(&named), Some(&1), "each valid message exactly once");
    }
    assert!(
        got.keys()
            .all(|m| !m.windows(19).any(|w| w == b"good-secret-of-edge")),
        "no forwarded message holds the secret"
    );
    assert_eq!(got.len(), 2000, "nothing with a wrong key passed");
}

/// Polls `cond` until it holds; fails the test after `limit`.
async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_goes_to_the_spool_and_loses_nothing() {
    // (How long an outage lasts only matters to timers: the shipper's test
    // plays an hour on tokio's paused clock.)
    let sink = Arc::new(FlakySink::default());
    // One put of memory and a short give-up: the spool does the work.
    let relay = start(sink.clone(), &[], Duration::from_millis(300), 1).await;
    let before = packets(10, 50, "k");
    send_udp(relay.udp, &before, 50).await;
    wait_for(&sink, before.len(), Duration::from_secs(10)).await;
    assert_eq!(sink.messages().len(), before.len());

    sink.down.store(true, Ordering::SeqCst);
    // Traffic keeps coming during the outage: 30 bursts, each taken in by the relay.
    let mut during = Vec::new();
    for s in 0..30 {
        let burst = packets(100 + s, 20, "k");
        send_udp(relay.udp, &burst, 50).await;
        during.extend(burst);
        let want = (before.len() + during.len()) as u64;
        until("the burst to arrive", Duration::from_secs(10), || {
            metric(relay.metrics, "decoded_total") >= want
        })
        .await;
    }
    until("batches on disk", Duration::from_secs(20), || {
        metric(relay.metrics, "spooled_batches_total") > 0
            && metric(relay.metrics, "spool_bytes") > 0
    })
    .await;
    assert_eq!(
        sink.messages().len(),
        before.len(),
        "nothing got through while down"
    );
    sink.down.store(false, Ordering::SeqCst);
    wait_for(&sink, before.len() + during.len(), Duration::from_secs(30)).await;
    until("the spool to drain", Duration::from_secs(10), || {
        metric(relay.metrics, "spool_bytes") == 0
    })
    .await;
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();
    let got = sink.messages();
    for p in before.iter().chain(&during) {
        assert!(got.contains_key(p), "a message was lost across the outage");
    }
    assert_eq!(got.len(), before.len() + during.len());
}

/// A slow but healthy Kinesis and small records (short linger): puts wait in
/// memory, merged into few calls, and none goes to disk. (Bounded in puts,
/// 51 slots filled in a few hundred milliseconds here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_healthy_kinesis_sends_nothing_to_disk() {
    let sink = Arc::new(FlakySink {
        latency: Duration::from_millis(100),
        ..Default::default()
    });
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = config(spool.path(), Duration::from_secs(20), 256 << 20);
    cfg.batcher.linger = Duration::from_millis(1);
    cfg.batcher.max_linger = Duration::from_millis(1);
    let relay = start_with(sink.clone(), cfg, spool).await;
    let sent = packets(50, 600, "k");
    send_udp(relay.udp, &sent, 10).await;
    wait_for(&sink, sent.len(), Duration::from_secs(60)).await;
    let calls = metric(relay.metrics, "put_calls_total");
    let records = metric(relay.metrics, "records_put_total");
    assert_eq!(metric(relay.metrics, "spooled_batches_total"), 0);
    assert_eq!(metric(relay.metrics, "queued_bytes"), 0);
    assert!(
        calls * 5 < records,
        "queued puts are merged: {calls} calls for {records} records"
    );
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();
    assert_eq!(sink.messages().len(), sent.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_flushes_the_open_record() {
    let sink = Arc::new(FlakySink::default());
    let relay = start(sink.clone(), &[], Duration::from_secs(5), 64 << 20).await;
    let ps = packets(20, 3, "k");
    send_udp(relay.udp, &ps, 50).await;
    until("the packets to arrive", Duration::from_secs(10), || {
        metric(relay.metrics, "decoded_total") == ps.len() as u64
    })
    .await;
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();
    assert_eq!(sink.messages().len(), ps.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hep_over_tls_is_relayed_and_plain_tcp_refused_on_its_port() {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    let acceptor = listen::tls::acceptor(&cert, &key).unwrap();
    let sink = Arc::new(FlakySink::default());
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = config(spool.path(), Duration::from_secs(5), 64 << 20);
    cfg.auth_keys = listen::AuthKeys::new(["edge=good-secret-of-edge"]).unwrap();
    cfg.tls = Some(("127.0.0.1:0".parse().unwrap(), acceptor));
    let relay = start_with(sink.clone(), cfg, spool).await;
    let tls_addr = relay.tls.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(listen::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let sent = packets(40, 20, "good-secret-of-edge");
    let tls_stream = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tls_stream)
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    tls.write_all(&sent.concat()).await.unwrap();
    tls.shutdown().await.unwrap();
    wait_for(&sink, sent.len(), Duration::from_secs(20)).await;
    let got = sink.messages();
    for p in &sent {
        assert_eq!(
            got.get(&hep::replace_auth_key(p, "edge").unwrap()),
            Some(&1)
        );
    }

    let mut plain = TcpStream::connect(tls_addr).unwrap();
    plain
        .write_all(&packets(41, 1, "good-secret-of-edge").concat())
        .unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut rest);
    until("the handshake failure", Duration::from_secs(10), || {
        metric(relay.metrics, "tls_handshake_failures_total") >= 1
    })
    .await;
    assert_eq!(metric(relay.metrics, "tls_connections_total"), 1);
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();
    assert_eq!(
        sink.messages().len(),
        sent.len(),
        "nothing from the plain connection"
    );
}

#[test]
fn the_binary_logs_plain_lines_when_stderr_is_not_a_terminal() {
    let spool = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge-relay"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--stream",
            "s",
        ])
        .args(["--endpoint", "http://127.0.0.1:9", "--region", "us-east-1"])
        .arg("--spool-dir")
        .arg(spool.path())
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("edge-relay listening"), "{line}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes: {log}");
}

#[test]
fn bad_sizes_stop_the_start_with_a_message() {
    for (flag, value) in [
        ("--memory-mb", "1"),
        ("--spool-max-mb", "0"),
        ("--udp-buffer", "100"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-relay"))
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args(["--stream", "s", "--region", "us-east-1", flag, value])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
}
