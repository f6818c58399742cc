//! What the serverless path costs at a given rate, measured over LocalStack.
//!
//! For each rate: HEP over UDP into the edge relay (in-process, its default
//! batching) → LocalStack Kinesis (4 shards, as an on-demand stream starts)
//! → the event source mapping as Lambda runs it (each shard polled once a
//! second, a batch closed at the template's window, batch size or 6 MB) →
//! the ingest handler → LocalStack S3, through a request recorder; one
//! compaction run as the schedule makes it; probes (two a second, a unique
//! Call-ID each) asked through the query handler until they are found.
//! Every billable operation is counted and priced with the list prices
//! below; the period's counts are scaled to a 30-day month.
//!
//! `LOCALSTACK_ENDPOINT=… cargo bench -p e2e --bench cost -- [RATES] [SECS]`
//! (bench/cost.sh starts LocalStack). RATES: comma-separated msgs/s.
//! Figures: docs/COST.md.
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use axum::body::Body;
use edge_relay::batcher::BatcherConfig;
use edge_relay::relay::RelayConfig;
use edge_relay::sink::KinesisSink;
use futures::{StreamExt, TryStreamExt};
use hep::sample::Call;
use lake::compact::{CompactionConfig, Sweep};
use listen::CancellationToken;
use object_store::ObjectStore;
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "../../../crates/lake/tests/it/support.rs"]
mod support;
use support::{Instrumented, Op};

/// us-east-1 list prices (USD) as published on aws.amazon.com/{kinesis/data-streams,lambda,s3,cloudwatch}/pricing,
/// read 2025-11. Check them before relying on a figure.
mod price {
    pub const DATE: &str = "us-east-1 list prices of 2025-11";
    pub const KINESIS_STREAM_HOUR: f64 = 0.04; // on-demand, per stream
    pub const KINESIS_INGEST_GB: f64 = 0.08; // on-demand; each record rounded up to 1 KiB
    pub const KINESIS_RETRIEVAL_GB: f64 = 0.04; // on-demand, standard consumers (the event source mapping)
    pub const KINESIS_RETENTION_GB_MONTH: f64 = 0.10; // on-demand, retention beyond 24 h (the template keeps 7 days)
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    pub const LAMBDA_GB_SECOND: f64 = 0.000_016_666_7; // x86_64
    pub const S3_PUT: f64 = 0.005 / 1000.0; // PUT, COPY, POST, LIST
    pub const S3_GET: f64 = 0.0004 / 1000.0; // GET, HEAD
    pub const S3_GB_MONTH: f64 = 0.023; // Standard, first 50 TB
    pub const LOGS_GB: f64 = 0.50; // CloudWatch Logs ingestion
}

/// The template's settings the cost depends on (infra/template.yaml).
struct Deployment {
    ingest_memory_mb: u64,
    compactor_memory_mb: u64,
    batch_size: usize,
    batching_window: Duration,
    /// Minutes between recent compaction runs; hours between full sweeps.
    compact_every_minutes: u64,
    full_sweep_every_hours: u64,
    retention_days: u64,
    stream_retention_hours: u64,
    /// Hours before the open one a recent run visits.
    recent_hours: i64,
    /// What a function logs per invocation (the one INFO line with its report).
    log_bytes_per_invocation: u64,
}

impl Deployment {
    fn from_template() -> Self {
        let t = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/template.yaml"
        ))
        .expect("infra/template.yaml");
        let param = |name: &str| -> String {
            let at = t
                .find(&format!("\n  {name}:\n"))
                .unwrap_or_else(|| panic!("parameter {name}"));
            value_after(&t[at..], "Default: ")
        };
        let every = |v: String| -> u64 {
            // rate(N minute[s]|hour[s]|day[s]) in minutes
            let inner = v.trim_start_matches("rate(").trim_end_matches(')');
            let (n, unit) = inner.split_once(' ').expect("rate(N unit)");
            let n: u64 = n.parse().unwrap();
            n * match unit.trim_end_matches('s') {
                "minute" => 1,
                "hour" => 60,
                "day" => 1440,
                u => panic!("unit {u}"),
            }
        };
        // A function's variable: `NAME: "value"`.
        let env = |name: &str| value_after(&t, &format!("{name}: "));
        let memory = |function: &str| -> u64 {
            let at = t.find(&format!("\n  {function}:\n")).unwrap();
            value_after(&t[at..], "MemorySize: ").parse().unwrap()
        };
        Deployment {
            ingest_memory_mb: memory("IngestFunction"),
            compactor_memory_mb: memory("CompactorFunction"),
            batch_size: param("IngestBatchSize").parse().unwrap(),
            batching_window: Duration::from_secs(
                param("IngestBatchingWindowSeconds").parse().unwrap(),
            ),
            compact_every_minutes: every(param("CompactSchedule")),
            full_sweep_every_hours: every(param("CompactFullSweepSchedule")) / 60,
            retention_days: param("RetentionDays").parse().unwrap(),
            stream_retention_hours: param("StreamRetentionHours").parse().unwrap(),
            recent_hours: env("HEPOP_COMPACT_RECENT_HOURS").parse().unwrap(),
            log_bytes_per_invocation: 600,
        }
    }
}

/// The rest of the line after the first `marker` in `text`, unquoted.
fn value_after(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in the template"));
    let line = text[at + marker.len()..].lines().next().unwrap_or_default();
    line.trim().trim_matches('"').to_owned()
}

/// S3 requests by billing class.
#[derive(Debug, Default, Clone, Copy)]
struct Requests {
    put: u64,
    /// GETs of data files.
    get: u64,
    /// GETs of compaction logs: one per partition listed.
    get_log: u64,
    list: u64,
}

impl Requests {
    fn of(ops: &[Op]) -> Self {
        let mut r = Requests::default();
        for op in ops {
            match op {
                Op::Put(_) => r.put += 1,
                Op::Get(p) if p.contains(lake::paths::COMPACTIONS_DIR) => r.get_log += 1,
                Op::Get(_) => r.get += 1,
                Op::List(_) | Op::ListDelim(_) => r.list += 1,
                Op::Delete(_) => {} // free
            }
        }
        r
    }
}

/// Lambda's synchronous payload limit bounds a batch (its data, base64, is 4/3 of it).
const PAYLOAD_LIMIT: usize = 6_000_000 * 3 / 4 - 100_000;

/// What the event source mapping did.
#[derive(Debug, Default)]
struct Mapping {
    invocations: u64,
    /// Σ billed milliseconds (each invocation rounded up to 1 ms).
    billed_ms: u64,
    records: u64,
    /// Record data as on-demand ingest bills it (each rounded up to 1 KiB).
    billed_record_bytes: u64,
    record_bytes: u64,
    messages: u64,
    files: u64,
}

/// Lambda's Kinesis poller for one shard: GetRecords once a second, invoke
/// when the window has passed since the first buffered record, or the batch
/// is full (records or 6 MB), until `stop` and the shard is drained.
async fn poll_shard(
    client: aws_sdk_kinesis::Client,
    stream: String,
    shard: String,
    store: Arc<dyn ObjectStore>,
    d: Arc<Deployment>,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Mapping>>,
) {
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}");
    let mut it = e2e::oldest(&client, &stream, &shard).await;
    // Records waiting for an invocation, with their data's size and when they were read:
    // the window runs from the first waiting record's read, also for records a full
    // batch left behind.
    let mut buffer: Vec<(Value, usize, Instant)> = Vec::new();
    let cfg = functions::ingest::IngestConfig::default();
    loop {
        let polled = Instant::now();
        let mut got = 0;
        if let Some(i) = it.take() {
            let out = client
                .get_records()
                .shard_iterator(i)
                .limit(10_000)
                .send()
                .await
                .unwrap();
            got = out.records().len();
            for r in out.records() {
                buffer.push((
                    reingest::event_record(&arn, &shard, r),
                    r.data().as_ref().len(),
                    polled,
                ));
            }
            it = out.next_shard_iterator().map(str::to_owned);
        }
        let stopping = stop.load(Ordering::SeqCst) && got == 0;
        while !buffer.is_empty()
            && (stopping
                || buffer.len() >= d.batch_size
                || buffer.iter().map(|(_, n, _)| n).sum::<usize>() >= PAYLOAD_LIMIT
                || buffer[0].2.elapsed() >= d.batching_window)
        {
            // As many records as the batch size and Lambda's 6 MB payload allow.
            let mut n = 0;
            let mut bytes = 0;
            while n < buffer.len().min(d.batch_size)
                && (n == 0 || bytes + buffer[n].1 <= PAYLOAD_LIMIT)
            {
                bytes += buffer[n].1;
                n += 1;
            }
            let batch: Vec<Value> = buffer.drain(..n).map(|(v, _, _)| v).collect();
            let event: KinesisEvent = serde_json::from_value(json!({ "Records": batch })).unwrap();
            let t = Instant::now();
            let (resp, report) = functions::ingest::handle(&store, &cfg, &event).await;
            let ms = t.elapsed().as_micros().div_ceil(1000) as u64;
            assert!(resp.batch_item_failures.is_empty(), "{report:?}");
            let mut o = out.lock().unwrap();
            o.invocations += 1;
            o.billed_ms += ms;
            o.messages += report.messages as u64;
            o.files += report.files as u64;
            for r in &event.records {
                let len = r.kinesis.data.0.len() as u64;
                o.records += 1;
                o.record_bytes += len;
                o.billed_record_bytes += len.div_ceil(1024) * 1024;
            }
        }
        if stopping && buffer.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(polled.elapsed())).await;
    }
}

/// Which of `call_ids` the query handler finds: one query asks for all of
/// them, so a probe's wait does not grow with the number of probes waiting.
async fn found_calls(router: &web::Router, call_ids: &[String]) -> Vec<String> {
    let list: Vec<String> = call_ids.iter().map(|c| format!("'{c}'")).collect();
    let sql = format!(
        "SELECT DISTINCT call_id FROM hep_1 WHERE call_id IN ({})",
        list.join(",")
    );
    let uri = format!(
        "/query?q={}",
        percent_encoding::utf8_percent_encode(&sql, percent_encoding::NON_ALPHANUMERIC)
    );
    let resp = router
        .clone()
        .oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    // Until the first file lands there is no hep_1 table: an error, and nothing found.
    let rows = serde_json::from_slice::<Value>(&body).unwrap();
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    rows.iter()
        .map(|r| r["call_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Probes sent per second of traffic.
const PROBES_PER_SEC: u64 = 2;

struct Measured {
    rate: u64,
    secs: u64,
    sent: u64,
    mapping: Mapping,
    ingest_s3: Requests,
    compaction_s3: Requests,
    compaction_ms: u64,
    compaction_partitions: u64,
    stored_bytes: u64,
    latencies_ms: Vec<u64>,
    probes: usize,
}

async fn measure(rate: u64, secs: u64, d: Arc<Deployment>) -> Measured {
    let (stream, bucket) = (e2e::unique("cost"), e2e::unique("cost"));
    e2e::create_bucket(&bucket);
    let client = e2e::kinesis(&e2e::endpoint()).await;
    e2e::create_stream(&client, &stream, 4).await;
    let inst = Instrumented::new(lake::store::open(&format!("s3://{bucket}/lake")).unwrap());
    let store: Arc<dyn ObjectStore> = inst.clone();
    // A deployment's Delta tables exist before any period: their creation (once) is not a run's cost.
    for hep_type in [1, 5, 100] {
        lake::delta::PublicTable::open(&store, hep_type)
            .await
            .unwrap();
    }
    inst.take_ops();
    let spool = tempfile::tempdir().unwrap();
    let relay = edge_relay::relay::BoundRelay::bind(RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_buffer: 32 << 20,
        auth_keys: Default::default(),
        tls: None,
        stream_limits: Default::default(),
        batcher: BatcherConfig::default(),
        retry: Default::default(),
        memory_bytes: 256 << 20,
        spool_dir: spool.path().to_owned(),
        spool_max_bytes: 1 << 30,
        metrics: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    let hep = relay.addrs().unwrap().udp;
    let stop_relay = CancellationToken::new();
    let relay_task = tokio::spawn(edge_relay::relay::run_bound(
        relay,
        Arc::new(KinesisSink::new(client.clone(), &stream)),
        stop_relay.clone(),
    ));
    // The mapping, one poller per shard.
    let stop_mapping = Arc::new(AtomicBool::new(false));
    let mapping = Arc::new(Mutex::new(Mapping::default()));
    let shards = client
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    let pollers: Vec<_> = shards
        .shards()
        .iter()
        .map(|s| {
            tokio::spawn(poll_shard(
                client.clone(),
                stream.clone(),
                s.shard_id().to_owned(),
                store.clone(),
                d.clone(),
                stop_mapping.clone(),
                mapping.clone(),
            ))
        })
        .collect();
    // Probes: found through the query handler as deployed (its listing cache included).
    // A store of its own: queries are not part of the pipeline's cost.
    let query_store = lake::store::open(&format!("s3://{bucket}/lake")).unwrap();
    let router =
        functions::query_router(query_store, functions::query_limits(), &Default::default())
            .unwrap();
    let probes: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sending = Arc::new(AtomicBool::new(true));
    let prober = {
        let (probes, latencies, sending) = (probes.clone(), latencies.clone(), sending.clone());
        tokio::spawn(async move {
            let give_up = Duration::from_secs(120);
            loop {
                let waiting: Vec<(String, Instant)> = probes.lock().unwrap().clone();
                if waiting.is_empty() && !sending.load(Ordering::SeqCst) {
                    return;
                }
                if !waiting.is_empty() {
                    let ids: Vec<String> = waiting.iter().map(|(id, _)| id.clone()).collect();
                    let found = found_calls(&router, &ids).await;
                    for (id, sent) in waiting {
                        let seen = found.contains(&id);
                        if seen {
                            latencies
                                .lock()
                                .unwrap()
                                .push(sent.elapsed().as_millis() as u64);
                        }
                        if seen || sent.elapsed() > give_up {
                            probes.lock().unwrap().retain(|(p, _)| *p != id);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // Traffic: every 10 ms the next rate/100 messages of realistic calls (SIP, RTCP, logs); probes.
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (sent, probes, sending) = (sent.clone(), probes.clone(), sending.clone());
        tokio::task::spawn_blocking(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let start = Instant::now();
            let mut pending: Vec<Vec<u8>> = Vec::new();
            let (mut call, mut owed) = (0u64, 0f64);
            let mut next_probe = 0u64;
            let mut tick = 0u64;
            while start.elapsed() < Duration::from_secs(secs) {
                tick += 1;
                owed += rate as f64 / 100.0;
                let now = chrono::Utc::now().timestamp_micros();
                while owed >= 1.0 {
                    if pending.is_empty() {
                        call += 1;
                        pending = Call::new(rate, call)
                            .all(now)
                            .iter()
                            .map(|m| hep::encode_v3(m).unwrap())
                            .rev()
                            .collect();
                    }
                    sock.send_to(&pending.pop().unwrap(), hep).unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                    owed -= 1.0;
                }
                if start.elapsed() >= Duration::from_millis(next_probe * 1000 / PROBES_PER_SEC) {
                    let probe = Call::new(1_000_000 + rate, next_probe);
                    let m = probe.sip_flow(now).remove(0);
                    sock.send_to(&hep::encode_v3(&m).unwrap(), hep).unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                    probes
                        .lock()
                        .unwrap()
                        .push((probe.call_id.clone(), Instant::now()));
                    next_probe += 1;
                }
                let due = start + Duration::from_millis(10 * tick);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            sending.store(false, Ordering::SeqCst);
        })
    };
    sender.await.unwrap();
    let probes_sent = (secs * PROBES_PER_SEC) as usize;
    prober.await.unwrap();
    stop_relay.cancel();
    relay_task.await.unwrap().unwrap();
    stop_mapping.store(true, Ordering::SeqCst);
    for p in pollers {
        p.await.unwrap();
    }
    let ingest_s3 = Requests::of(&inst.take_ops());

    // One scheduled compaction run over what the period wrote.
    let cfg = CompactionConfig {
        retention: Some(Duration::from_secs(d.retention_days * 86_400)),
        recent_hours: d.recent_hours,
        ..Default::default()
    };
    let t = Instant::now();
    let now = chrono::Utc::now().timestamp_micros() + cfg.young_after.as_micros() as i64;
    let report = lake::compact::run(&store, &cfg, now, Sweep::Recent, None).await;
    assert!(report.errors.is_empty(), "{report:?}");
    let compaction_ms = t.elapsed().as_millis() as u64;
    let compaction_s3 = Requests::of(&inst.take_ops());
    // Bytes kept: the hour as compaction leaves it once closed.
    let closed = CompactionConfig {
        close_after: Duration::ZERO,
        young_after: Duration::ZERO,
        grace: Duration::ZERO,
        retention: None,
        ..Default::default()
    };
    let later = chrono::Utc::now().timestamp_micros() + 2 * 3_600_000_000;
    lake::compact::run(&store, &closed, later, Sweep::Full, None).await;
    let mut stored_bytes = 0;
    for t in lake::catalog::tables(&store).await.unwrap() {
        for p in lake::catalog::partitions(&store, t, None, None)
            .await
            .unwrap()
        {
            let l = lake::catalog::list_partition(&store, p).await.unwrap();
            stored_bytes += l.visible().iter().map(|f| f.size).sum::<u64>();
        }
    }
    let mapping = std::mem::take(&mut *mapping.lock().unwrap());
    let latencies_ms = std::mem::take(&mut *latencies.lock().unwrap());
    // LocalStack keeps streams and objects in memory: what one rate leaves would
    // slow the next (a run after a 50 000 msgs/s one lost 11 % of its UDP).
    e2e::delete_stream(&client, &stream).await;
    let keys = store.list(None).map_ok(|m| m.location).boxed();
    store
        .delete_stream(keys)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    Measured {
        rate,
        secs,
        sent: sent.load(Ordering::SeqCst),
        mapping,
        ingest_s3,
        compaction_s3,
        compaction_ms,
        compaction_partitions: report.partitions as u64,
        stored_bytes,
        latencies_ms,
        probes: probes_sent,
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return u64::MAX;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Monthly cost lines of one measurement.
fn monthly(m: &Measured, d: &Deployment) -> BTreeMap<&'static str, f64> {
    const MONTH_SECS: f64 = 30.0 * 86_400.0;
    let scale = MONTH_SECS / m.secs as f64;
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let mut c = BTreeMap::new();
    let k = &m.mapping;
    c.insert(
        "kinesis ingest (1 KiB rounding)",
        gib(k.billed_record_bytes as f64 * scale) * price::KINESIS_INGEST_GB,
    );
    c.insert(
        "kinesis retrieval",
        gib(k.record_bytes as f64 * scale) * price::KINESIS_RETRIEVAL_GB,
    );
    let retained_days = d.stream_retention_hours.saturating_sub(24) as f64 / 24.0;
    c.insert(
        "kinesis retention beyond 24 h",
        gib(k.record_bytes as f64 / m.secs as f64 * retained_days * 86_400.0)
            * price::KINESIS_RETENTION_GB_MONTH,
    );
    let ingest_gb_s = k.billed_ms as f64 / 1000.0 * d.ingest_memory_mb as f64 / 1024.0 * scale;
    c.insert(
        "ingest lambda",
        k.invocations as f64 * scale * price::LAMBDA_REQUEST
            + ingest_gb_s * price::LAMBDA_GB_SECOND,
    );
    c.insert(
        "ingest S3 requests",
        (m.ingest_s3.put + m.ingest_s3.list) as f64 * scale * price::S3_PUT
            + m.ingest_s3.get as f64 * scale * price::S3_GET,
    );
    // Compaction: the measured run stands for each scheduled run (it merged one period of files).
    let runs = MONTH_SECS / 60.0 / d.compact_every_minutes as f64;
    let period_runs = (m.secs as f64 / 60.0 / d.compact_every_minutes as f64).max(1.0);
    let per_run = |x: u64| x as f64 / period_runs;
    // A steady recent run lists (recent_hours + 1) hours of each table; the bench's lake has fewer.
    let steady_partitions = (d.recent_hours as f64 + 1.0) * 3.0;
    let list_scale = steady_partitions / m.compaction_partitions.max(1) as f64;
    let c_put = per_run(m.compaction_s3.put) + per_run(m.compaction_s3.list) * list_scale;
    let c_get = per_run(m.compaction_s3.get) + per_run(m.compaction_s3.get_log) * list_scale;
    let c_gb_s = per_run(m.compaction_ms) / 1000.0 * d.compactor_memory_mb as f64 / 1024.0;
    c.insert(
        "compactor (recent runs)",
        runs * (price::LAMBDA_REQUEST
            + c_gb_s * price::LAMBDA_GB_SECOND
            + c_put * price::S3_PUT
            + c_get * price::S3_GET),
    );
    // A full sweep LISTs each table's dates and each retained day, one page each (a
    // page holds 1 000 objects; a busy day takes two or three), and so again for the
    // bundles of each table (one type set: a steady deployment's traffic), with the root
    // and `_bundles/`; and GETs each hour's log entry, one after another (about 20 ms
    // each on S3, modelled).
    let sweeps = MONTH_SECS / 3600.0 / d.full_sweep_every_hours as f64;
    // Each table's Delta checkpoint (the checkpoint and `_last_checkpoint`: 2 PUTs) after
    // reading its log (2 LISTs).
    let lists = (d.retention_days as f64 + 1.0) * 3.0 * 2.0 + 2.0 + 3.0 * 4.0;
    let partitions = d.retention_days as f64 * 24.0 * 3.0;
    let sweep_gb_s = partitions * 0.020 * d.compactor_memory_mb as f64 / 1024.0;
    c.insert(
        "compactor (full sweeps)",
        sweeps
            * (price::LAMBDA_REQUEST
                + sweep_gb_s * price::LAMBDA_GB_SECOND
                + lists * price::S3_PUT
                + partitions * price::S3_GET),
    );
    let invocations = k.invocations as f64 * scale + runs + sweeps;
    c.insert(
        "lambda logs",
        gib(invocations * d.log_bytes_per_invocation as f64) * price::LOGS_GB,
    );
    let per_sec_bytes = m.stored_bytes as f64 / m.secs as f64;
    c.insert(
        "S3 storage (retention days kept)",
        gib(per_sec_bytes * d.retention_days as f64 * 86_400.0) * price::S3_GB_MONTH,
    );
    c
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rates: Vec<u64> = args
        .first()
        .map(|r| {
            r.split(',')
                .map(|x| x.parse().expect("rates: 10,100,…"))
                .collect()
        })
        .unwrap_or_else(|| vec![10, 100, 1_000, 10_000, 50_000]);
    let secs: u64 = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(60);
    e2e::aws_env();
    let d = Arc::new(Deployment::from_template());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "deployment: ingest {} MB, batch {} records or {:?}, compactor {} MB every {} min, full sweep every {} h, {} days kept; prices: {}",
        d.ingest_memory_mb,
        d.batch_size,
        d.batching_window,
        d.compactor_memory_mb,
        d.compact_every_minutes,
        d.full_sweep_every_hours,
        d.retention_days,
        price::DATE
    );
    for rate in rates {
        let m = rt.block_on(measure(rate, secs, d.clone()));
        let mut lat = m.latencies_ms.clone();
        lat.sort_unstable();
        let c = monthly(&m, &d);
        let total: f64 = c.values().sum();
        // Per message carried (at 50 000 msgs/s the kernel drops some of the sender's UDP here).
        let msgs_month = m.mapping.messages as f64 / m.secs as f64 * 30.0 * 86_400.0;
        let k = &m.mapping;
        println!(
            "\n== {} msgs/s for {} s: {} sent, {} stored; {} records ({:.2}/s, {:.0} B avg), {} invocations ({:.3}/s, {:.0} ms avg), {} files, S3 ingest {:?}, compaction run {:?} in {} ms over {} partitions; {:.1} B/msg kept",
            m.rate,
            m.secs,
            m.sent,
            k.messages,
            k.records,
            k.records as f64 / m.secs as f64,
            k.record_bytes as f64 / k.records.max(1) as f64,
            k.invocations,
            k.invocations as f64 / m.secs as f64,
            k.billed_ms as f64 / k.invocations.max(1) as f64,
            k.files,
            m.ingest_s3,
            m.compaction_s3,
            m.compaction_ms,
            m.compaction_partitions,
            m.stored_bytes as f64 / k.messages.max(1) as f64
        );
        println!(
            "   queryable after: p50 {} ms, p99 {} ms, max {} ms ({} of {} probes found)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(u64::MAX),
            lat.len(),
            m.probes
        );
        for (line, usd) in &c {
            println!("   {line:<36} ${usd:>10.2} /month");
        }
        println!(
            "   {:<36} ${:>10.2} /month, ${:.4} per million messages (+ ${:.2} /month per stream, on-demand)",
            "total",
            total,
            total / (msgs_month / 1e6),
            // The stream's hour charge is per stream, not per relay: shown apart.
            price::KINESIS_STREAM_HOUR * 720.0
        );
    }
}
