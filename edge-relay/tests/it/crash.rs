//! kill -9 at random points, while Kinesis is unreachable and while the
//! spool drains: every message the relay had made durable (spooled, or put)
//! reaches the stream at least once. Needs LocalStack (`./scripts/test`).
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hep::sample::Call;

pub(crate) struct Relay {
    child: Child,
    pub(crate) tcp: SocketAddr,
    metrics: SocketAddr,
}

fn addr(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {line}"))
        .parse()
        .unwrap()
}

/// The relay binary's command against `kinesis`, with test credentials.
pub(crate) fn relay_command(spool: &Path, stream: &str, kinesis: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edge-relay"));
    c.args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args([
            "--stream",
            stream,
            "--endpoint",
            kinesis,
            "--region",
            "us-east-1",
        ])
        .arg("--spool-dir")
        .arg(spool)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    c
}

/// The relay binary against `kinesis`, its ports as it reports them.
pub(crate) fn start(spool: &Path, stream: &str, kinesis: &str) -> Relay {
    let mut child = relay_command(spool, stream, kinesis)
        .args([
            "--give-up-secs",
            "1",
            "--linger-ms",
            "20",
            "--max-linger-ms",
            "20",
        ])
        .args(["--blocked-probe-secs", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Relay {
        tcp: addr(&line, "hep_tcp"),
        metrics: addr(&line, "metrics"),
        child,
    }
}

impl Relay {
    pub(crate) fn metric(&self, name: &str) -> u64 {
        e2e::relay_metric(self.metrics, name)
    }

    pub(crate) fn wait(&self, what: &str, cond: impl Fn(&Relay) -> bool) {
        let t = Instant::now();
        while !cond(self) {
            assert!(t.elapsed() < Duration::from_secs(60), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

pub(crate) fn packets(run: u64, calls: u64) -> Vec<Vec<u8>> {
    let now = chrono::Utc::now().timestamp_micros() - 60_000_000;
    (0..calls)
        .flat_map(|i| Call::new(run, i).all(now + i as i64 * 1000))
        .map(|m| hep::encode_v3(&m).unwrap())
        .collect()
}

pub(crate) fn send_tcp(to: SocketAddr, ps: &[Vec<u8>]) {
    // The relay may be killed mid-write: errors are expected then.
    if let Ok(mut s) = TcpStream::connect(to) {
        let _ = s.write_all(&ps.concat());
    }
}

/// splitmix64: the kill points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// A one-shard LocalStack stream of its own, with a runtime and a client to read it.
pub(crate) fn new_stream(
    prefix: &str,
) -> (tokio::runtime::Runtime, aws_sdk_kinesis::Client, String) {
    e2e::aws_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stream = e2e::unique(prefix);
    let client = rt.block_on(e2e::kinesis(&e2e::endpoint()));
    rt.block_on(e2e::create_stream(&client, &stream, 1));
    (rt, client, stream)
}

#[test]
#[ignore = "needs LocalStack: run ./scripts/test"]
fn kill_nine_while_unreachable_and_while_draining_loses_nothing_spooled() {
    let (rt, client, stream) = new_stream("hep-crash");
    let spool = tempfile::tempdir().unwrap();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    println!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    // Nothing listens on port 9 here: Kinesis "unreachable", connection refused.
    let unreachable = "http://127.0.0.1:9";
    let mut durable: Vec<Vec<u8>> = Vec::new();
    let mut kills = 0;

    // Kinesis unreachable: each round's burst is made durable (spooled), then
    // the next burst is sent and the relay killed at a random point of it.
    for round in 0..6 {
        let relay = start(spool.path(), &stream, unreachable);
        assert_eq!(relay.metric("spool_corrupt_files"), 0);
        let burst = packets(1000 + round, 20);
        send_tcp(relay.tcp, &burst);
        relay.wait("the burst spooled", |r| {
            r.metric("batched_messages_total") == burst.len() as u64
                && r.metric("open_record_messages") == 0
                && r.metric("queued_bytes") == 0
        });
        assert_eq!(relay.metric("lost_records_total"), 0);
        // This relay spooled it: the spool's earlier rounds do not count.
        assert!(relay.metric("spooled_batches_total") > 0);
        durable.extend(burst);
        let extra = packets(2000 + round, 20);
        let to = relay.tcp;
        let sender = std::thread::spawn(move || send_tcp(to, &extra));
        // The fault's timing, not a synchronisation: somewhere in batching or spooling.
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        relay.kill9();
        kills += 1;
        sender.join().unwrap();
    }

    // Kinesis back: killed at random points while the spool drains.
    for _ in 0..4 {
        let relay = start(spool.path(), &stream, &e2e::endpoint());
        assert_eq!(relay.metric("spool_corrupt_files"), 0);
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        relay.kill9();
        kills += 1;
    }
    let relay = start(spool.path(), &stream, &e2e::endpoint());
    relay.wait("the spool drained", |r| r.metric("spool_bytes") == 0);
    assert_eq!(relay.metric("spool_corrupt_files"), 0);
    relay.kill9();

    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for e in rt.block_on(e2e::read_stream(&client, &stream)) {
        for r in &e.records {
            for p in kinesis_record::messages(&r.kinesis.data.0).unwrap() {
                *seen.entry(p).or_default() += 1;
            }
        }
    }
    let missing = durable.iter().filter(|p| !seen.contains_key(*p)).count();
    let twice = durable.iter().filter(|p| seen.get(*p) > Some(&1)).count();
    println!(
        "{kills} kills: {} durable messages, {missing} missing, {twice} delivered more than once",
        durable.len()
    );
    assert_eq!(missing, 0, "a spooled message was lost (CRASH_SEED={seed})");
}
