//! LocalStack helpers shared by the tests that need it (here and edge-relay's
//! crash test): endpoint and environment, streams, a switchable proxy.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use base64::Engine;
use serde_json::json;

pub fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

static ENV: Once = Once::new();

pub fn aws_env() {
    ENV.call_once(|| {
        // SAFETY: set once, before any thread of this test binary reads the environment.
        unsafe {
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ] {
                std::env::set_var(k, v);
            }
            std::env::set_var("AWS_ENDPOINT_URL", endpoint());
        }
    });
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        chrono::Utc::now().timestamp_micros() % 1_000_000_000
    )
}

/// LocalStack accepts unsigned S3 calls: creating a bucket is one PUT.
pub fn create_bucket(name: &str) {
    let ep = endpoint();
    let hostport = ep.trim_start_matches("http://");
    let mut s =
        TcpStream::connect(hostport).expect("LocalStack is running (./scripts/test starts it)");
    write!(
        s,
        "PUT /{name} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
}

/// A test's own Kinesis client, with the SDK's retries (the relay's has none).
pub async fn kinesis(endpoint: &str) -> aws_sdk_kinesis::Client {
    let sdk = aws_setup::sdk_config(Some("us-east-1".into()), Some(endpoint.into())).await;
    aws_sdk_kinesis::Client::new(&sdk)
}

pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap();
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active)
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "stream never became ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes a stream and waits until Kinesis no longer knows it.
pub async fn delete_stream(client: &aws_sdk_kinesis::Client, name: &str) {
    client
        .delete_stream()
        .stream_name(name)
        .send()
        .await
        .unwrap();
    let t = Instant::now();
    while client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .is_ok()
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "stream never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An iterator from the oldest record of a shard.
pub async fn oldest(client: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> Option<String> {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .map(str::to_owned)
}

/// Every record of the stream, grouped by shard, as Lambda's Kinesis event would carry them.
pub async fn read_stream(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<KinesisEvent> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    let mut events = Vec::new();
    for shard in shards.shards() {
        let sid = shard.shard_id();
        let mut it = oldest(client, stream, sid).await;
        let mut records = Vec::new();
        while let Some(i) = it {
            let out = client
                .get_records()
                .shard_iterator(i)
                .limit(1000)
                .send()
                .await
                .unwrap();
            // As reingest::event_record builds it (e2e keeps lake and DataFusion out of edge-relay's tests).
            for r in out.records() {
                let arrival = r
                    .approximate_arrival_timestamp()
                    .map(|t| t.as_secs_f64())
                    .unwrap_or(0.0);
                records.push(json!({
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key(),
                        "sequenceNumber": r.sequence_number(),
                        "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
                        "approximateArrivalTimestamp": arrival,
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": format!("{sid}:{}", r.sequence_number()),
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::000000000000:role/ingest",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"),
                }));
            }
            if out.records().is_empty()
                || out.millis_behind_latest() == Some(0) && out.records().len() < 1000
            {
                break;
            }
            it = out.next_shard_iterator().map(str::to_owned);
        }
        if !records.is_empty() {
            events.push(serde_json::from_value(json!({ "Records": records })).unwrap());
        }
    }
    events
}

/// One of the relay's /metrics values.
pub fn relay_metric(addr: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with(&format!("edge_relay_{name} ")))
        .unwrap_or_else(|| panic!("{name} in {body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Polls `cond` until it holds; fails the test after `limit`.
pub async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy to LocalStack that can be switched off: Kinesis "unreachable".
pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let (d, c) = (down.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: connection reset
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().unwrap().push(h.abort_handle());
            }
        });
        Proxy { addr, down, conns }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }
}
