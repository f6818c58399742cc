use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use edge_relay::batcher::BatcherConfig;
use edge_relay::relay::{RelayConfig, run};
use edge_relay::shipper::RetryConfig;
use edge_relay::sink::{KinesisSink, RecordSink, SinkError};
use listen::CancellationToken;
use listen::args::HepListenArgs;

#[derive(Parser, Debug)]
#[command(
    name = "edge-relay",
    version,
    about = "HEP over UDP/TCP → batched, compressed Kinesis records"
)]
struct Args {
    /// HEP listen address, UDP and TCP.
    #[arg(long, env = "HEP_LISTEN", default_value = "0.0.0.0:9060")]
    listen: SocketAddr,
    /// Kinesis stream name.
    #[arg(long, env = "KINESIS_STREAM")]
    stream: String,
    /// AWS region (else from the environment/profile).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// Endpoint override, e.g. http://127.0.0.1:4566 for LocalStack.
    #[arg(long, env = "KINESIS_ENDPOINT")]
    endpoint: Option<String>,
    /// A record holding --full-record-kb is sent this long after its first message...
    #[arg(long, env = "RELAY_LINGER_MS", default_value_t = BatcherConfig::default().linger.as_millis() as u64)]
    linger_ms: u64,
    /// ...any record this long after it (a quiet relay: about one record a second).
    #[arg(long, env = "RELAY_MAX_LINGER_MS", default_value_t = BatcherConfig::default().max_linger.as_millis() as u64)]
    max_linger_ms: u64,
    /// Uncompressed KiB that make a record worth sending at the linger.
    #[arg(long, env = "RELAY_FULL_RECORD_KB", default_value_t = BatcherConfig::default().full_raw_bytes >> 10)]
    full_record_kb: usize,
    /// Uncompressed MiB a second one partition key carries before records spread over another (one shard takes 1 MB/s compressed).
    #[arg(long, env = "RELAY_MB_PER_KEY", default_value_t = BatcherConfig::default().raw_bytes_per_key >> 20)]
    mb_per_key: usize,
    /// Records spread over at least this many partition keys (a relay known to be busy).
    #[arg(long, env = "RELAY_MIN_KEYS", default_value_t = BatcherConfig::default().min_keys)]
    min_keys: usize,
    /// Memory for records waiting on Kinesis, MiB (counted in bytes); beyond it, or while Kinesis fails, batches go to the spool.
    #[arg(long, env = "RELAY_MEMORY_MB", default_value_t = 256)]
    memory_mb: usize,
    #[arg(long, env = "RELAY_SPOOL_DIR", default_value = "./spool")]
    spool_dir: PathBuf,
    #[arg(long, env = "RELAY_SPOOL_MAX_MB", default_value_t = 2048)]
    spool_max_mb: u64,
    /// Seconds one batch is retried before it goes to the spool.
    #[arg(long, env = "RELAY_GIVE_UP_SECS", default_value_t = RetryConfig::default().give_up_after.as_secs())]
    give_up_secs: u64,
    /// Seconds one PutRecords call may take before it is abandoned and retried.
    #[arg(long, env = "RELAY_PUT_TIMEOUT_SECS", default_value_t = RetryConfig::default().call_timeout.as_secs())]
    put_timeout_secs: u64,
    /// Seconds between tries while Kinesis refuses records for good (stream missing, access denied).
    #[arg(long, env = "RELAY_BLOCKED_PROBE_SECS", default_value_t = RetryConfig::default().blocked_probe.as_secs())]
    blocked_probe_secs: u64,
    #[command(flatten)]
    hep: HepListenArgs,
    /// Prometheus /metrics address (no token: keep it on loopback or a private network).
    #[arg(long, env = "RELAY_METRICS", default_value = "127.0.0.1:9071")]
    metrics: SocketAddr,
    #[arg(long, env = "RELAY_UDP_BUFFER", default_value_t = 32 << 20)]
    udp_buffer: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    listen::init_logs();
    let a = Args::parse();
    // Bad sizes stop the start with a message, before anything listens.
    anyhow::ensure!(
        a.memory_mb >= 5,
        "--memory-mb must be at least 5 (one PutRecords call)"
    );
    anyhow::ensure!(a.spool_max_mb > 0, "--spool-max-mb must be more than 0");
    anyhow::ensure!(
        a.put_timeout_secs > 0,
        "--put-timeout-secs must be more than 0"
    );
    anyhow::ensure!(
        a.blocked_probe_secs > 0,
        "--blocked-probe-secs must be more than 0"
    );
    anyhow::ensure!(
        a.udp_buffer >= 1 << 16,
        "--udp-buffer must be at least 65536 bytes (one HEP packet)"
    );
    let batcher = BatcherConfig {
        linger: Duration::from_millis(a.linger_ms),
        max_linger: Duration::from_millis(a.max_linger_ms),
        full_raw_bytes: a.full_record_kb << 10,
        raw_bytes_per_key: a.mb_per_key << 20,
        min_keys: a.min_keys,
        ..Default::default()
    };
    batcher.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Bad security settings stop the start before anything listens.
    let auth_keys = a.hep.auth_keys()?;
    let tls = a
        .hep
        .tls()?
        .map(|acceptor| (SocketAddr::new(a.listen.ip(), a.hep.tls_port), acceptor));
    let stream_limits = a.hep.limits()?;
    let client = KinesisSink::client(a.region.clone(), a.endpoint.clone()).await;
    let sink = Arc::new(KinesisSink::new(client, &a.stream));
    let retry = RetryConfig {
        give_up_after: Duration::from_secs(a.give_up_secs),
        call_timeout: Duration::from_secs(a.put_timeout_secs),
        blocked_probe: Duration::from_secs(a.blocked_probe_secs),
        ..Default::default()
    };
    check_stream(sink.as_ref(), &a.stream, retry.call_timeout).await?;
    let cfg = RelayConfig {
        listen: a.listen,
        udp_buffer: a.udp_buffer,
        auth_keys,
        tls,
        stream_limits,
        batcher,
        retry,
        memory_bytes: a.memory_mb << 20,
        spool_dir: a.spool_dir,
        spool_max_bytes: a.spool_max_mb << 20,
        metrics: a.metrics,
    };
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        s.cancel();
    });
    run(cfg, sink, stop).await
}

/// A stream that is missing or may not be written stops the start; one that
/// cannot be reached now (network, throttling) does not: batches spool
/// until it answers.
async fn check_stream(
    sink: &dyn RecordSink,
    stream: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    match tokio::time::timeout(timeout, sink.check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(SinkError::Permanent(e))) => {
            anyhow::bail!("Kinesis stream {stream:?} cannot be written: {e}")
        }
        Ok(Err(SinkError::Retriable(e))) => {
            tracing::warn!(stream, error = %e, "Kinesis cannot be reached now; batches spool until it answers");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                stream,
                ?timeout,
                "Kinesis did not answer; batches spool until it does"
            );
            Ok(())
        }
    }
}
