//! The serverless path end to end, against LocalStack's S3 and Kinesis:
//! edge-relay (in-process, real Kinesis client) → Kinesis → the ingest
//! handler fed the stream's real records as a Kinesis event → S3 → the
//! query handler fed API Gateway v2 events. Run by `./scripts/test`, which
//! starts LocalStack; ignored by a plain `cargo test`.
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use edge_relay::batcher::BatcherConfig;
use edge_relay::relay::RelayConfig;
use edge_relay::shipper::RetryConfig;
use edge_relay::sink::KinesisSink;
use hep::sample::Call;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use listen::CancellationToken;
use object_store::ObjectStore;
use serde_json::{Value, json};
use tower::ServiceExt;

use e2e::{
    Proxy, aws_env, create_bucket, create_stream, endpoint, kinesis, read_stream, relay_metric,
    unique, until,
};

#[path = "../../delta/read_delta.rs"]
mod readers;

fn lake(bucket: &str) -> Arc<dyn ObjectStore> {
    lake::store::open(&format!("s3://{bucket}/lake")).unwrap()
}

struct RunningRelay {
    hep: SocketAddr,
    metrics: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _spool: tempfile::TempDir,
}

async fn start_relay(kinesis_endpoint: &str, stream: &str, give_up: Duration) -> RunningRelay {
    let spool = tempfile::tempdir().unwrap();
    // The relay's own client, as deployed (no SDK retries under the relay's).
    let client = KinesisSink::client(Some("us-east-1".into()), Some(kinesis_endpoint.into())).await;
    let cfg = RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_buffer: 8 << 20,
        auth_keys: Default::default(),
        tls: None,
        stream_limits: Default::default(),
        // Small records so a test's traffic makes many, spread over the shards.
        batcher: BatcherConfig {
            max_raw_bytes: 32 << 10,
            linger: Duration::from_millis(100),
            max_linger: Duration::from_millis(100),
            min_keys: 8,
            ..Default::default()
        },
        retry: RetryConfig {
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
            give_up_after: give_up,
            ..Default::default()
        },
        memory_bytes: 1,
        spool_dir: spool.path().to_owned(),
        spool_max_bytes: 1 << 30,
        metrics: "127.0.0.1:0".parse().unwrap(),
    };
    let bound = edge_relay::relay::BoundRelay::bind(cfg).await.unwrap();
    let addrs = bound.addrs().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(edge_relay::relay::run_bound(
        bound,
        Arc::new(KinesisSink::new(client, stream)),
        stop.clone(),
    ));
    RunningRelay {
        hep: addrs.udp,
        metrics: addrs.metrics,
        stop,
        task,
        _spool: spool,
    }
}

fn packets(run: u64, calls: u64, start_micros: i64) -> Vec<Vec<u8>> {
    (0..calls)
        .flat_map(|i| Call::new(run, i).all(start_micros + i as i64 * 1000))
        .map(|m| hep::encode_v3(&m).unwrap())
        .collect()
}

fn send_udp(to: SocketAddr, ps: &[Vec<u8>]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, p) in ps.iter().enumerate() {
        s.send_to(p, to).unwrap();
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn send_tcp(to: SocketAddr, ps: &[Vec<u8>]) {
    let mut s = TcpStream::connect(to).unwrap();
    for c in ps.concat().chunks(1500) {
        s.write_all(c).unwrap();
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Calls the query function's router the way lambda_http does, with an API Gateway v2 event.
async fn api(
    router: &web::Router,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&str>,
) -> (u16, String) {
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": { "content-type": "application/json", "host": "abc.execute-api.us-east-1.amazonaws.com" },
        "requestContext": {
            "accountId": "000000000000", "apiId": "abc", "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc", "requestId": "r1", "routeKey": format!("{method} {path}"), "stage": "$default",
            "time": "28/Nov/2026:10:00:00 +0000", "timeEpoch": 1795860000000i64,
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "e2e" }
        },
        "body": body,
        "isBase64Encoded": false
    });
    let req: LambdaRequest = LambdaRequest::ApiGatewayV2(serde_json::from_value(event).unwrap());
    let adapter = lambda_http::Adapter::from(router.clone());
    let resp = adapter
        .oneshot(LambdaEvent::new(req, Context::default()))
        .await
        .unwrap();
    let v = serde_json::to_value(&resp).unwrap();
    let status = v["statusCode"].as_u64().unwrap() as u16;
    assert_eq!(v["isBase64Encoded"], false);
    (status, v["body"].as_str().unwrap_or_default().to_owned())
}

async fn count(router: &web::Router, sql: &str) -> i64 {
    let (s, b) = api(
        router,
        "GET",
        "/query",
        &format!("q={}", urlencode(sql)),
        None,
    )
    .await;
    assert_eq!(s, 200, "{sql}: {b}");
    serde_json::from_str::<Value>(&b).unwrap()[0]["n"]
        .as_i64()
        .unwrap()
}

async fn ingest_all(store: &Arc<dyn ObjectStore>, events: &[KinesisEvent]) -> usize {
    let mut messages = 0;
    for e in events {
        let (resp, report) = functions::ingest::handle(store, &Default::default(), e).await;
        assert!(resp.batch_item_failures.is_empty(), "{report:?}");
        messages += report.messages;
    }
    messages
}

fn router(store: &Arc<dyn ObjectStore>) -> web::Router {
    functions::query_router(store.clone(), Default::default(), &Default::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run ./scripts/test"]
async fn relay_kinesis_ingest_query_end_to_end_and_idempotent() {
    aws_env();
    let (stream, bucket) = (unique("hep-e2e"), unique("hep-e2e"));
    create_bucket(&bucket);
    let client = kinesis(&endpoint()).await;
    create_stream(&client, &stream, 2).await;
    let relay = start_relay(&endpoint(), &stream, Duration::from_secs(10)).await;
    let now = chrono::Utc::now().timestamp_micros() - 30_000_000;
    let udp = packets(1, 30, now);
    let tcp = packets(2, 20, now);
    send_udp(relay.hep, &udp);
    send_tcp(relay.hep, &tcp);
    until(
        "the relay to take every packet",
        Duration::from_secs(20),
        || relay_metric(relay.metrics, "decoded_total") == 500,
    )
    .await;
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();

    let events = read_stream(&client, &stream).await;
    let records: usize = events.iter().map(|e| e.records.len()).sum();
    assert!(records >= 4, "{records} records");
    assert_eq!(events.len(), 2, "records spread over both shards");
    let store = lake(&bucket);
    assert_eq!(ingest_all(&store, &events).await, 500);

    let r = router(&store);
    assert_eq!(count(&r, "SELECT count(*) AS n FROM hep_1").await, 350);
    assert_eq!(count(&r, "SELECT count(*) AS n FROM hep_5").await, 100);
    assert_eq!(count(&r, "SELECT count(*) AS n FROM hep_100").await, 50);
    let c = Call::new(2, 7);
    let body = json!({ "query": format!("SELECT method, status, from_user, to_user, src_ip, cseq_num FROM hep_1 WHERE call_id = '{}' ORDER BY time", c.call_id) }).to_string();
    let (s, b) = api(&r, "POST", "/query", "", Some(&body)).await;
    assert_eq!(s, 200, "{b}");
    let rows: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 7);
    assert_eq!(rows[0]["method"], "INVITE");
    assert_eq!(rows[0]["from_user"], c.caller.as_str());
    assert_eq!(rows[0]["to_user"], c.callee.as_str());
    assert_eq!(rows[0]["src_ip"], c.uac.to_string());
    assert_eq!(rows[3]["status"], 200);
    assert_eq!(rows[6]["cseq_num"], 2);
    let (s, b) = api(
        &r,
        "POST",
        "/api/v3/query_sql",
        "",
        Some(r#"{"db":"hep","q":"SELECT count(*) AS n FROM hep_1 WHERE method = 'INVITE'"}"#),
    )
    .await;
    assert_eq!((s, b.as_str()), (200, r#"[{"n":50}]"#));
    let (s, b) = api(
        &r,
        "GET",
        "/query",
        &format!("q={}", urlencode("DROP TABLE hep_1")),
        None,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(serde_json::from_str::<Value>(&b).unwrap()["error"].is_string());

    // The same batch again, then re-split in halves (bisect on error): no duplicates.
    ingest_all(&store, &events).await;
    for e in &events {
        let mid = e.records.len() / 2;
        for half in [&e.records[..mid], &e.records[mid..]] {
            let mut ev = KinesisEvent::default();
            ev.records = half.to_vec();
            ingest_all(&store, &[ev]).await;
        }
    }
    assert_eq!(count(&r, "SELECT count(*) AS n FROM hep_1").await, 350);
    assert_eq!(count(&r, "SELECT count(*) AS n FROM hep_5").await, 100);

    // An undecodable record is quarantined, not retried forever.
    let mut bad = serde_json::to_value(&events[0]).unwrap();
    let recs = bad["Records"].as_array_mut().unwrap();
    recs.truncate(1);
    recs[0]["kinesis"]["data"] =
        json!(base64::engine::general_purpose::STANDARD.encode(b"HEPK\x07garbage"));
    recs[0]["kinesis"]["sequenceNumber"] = json!("4242");
    let (resp, report) = functions::ingest::handle(
        &store,
        &Default::default(),
        &serde_json::from_value(bad).unwrap(),
    )
    .await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(report.quarantined, 1);
    let q: Vec<_> = futures_list(&store, "_quarantine").await;
    assert!(q.iter().any(|p| p.ends_with("4242.bin")), "{q:?}");
    assert!(
        q.iter()
            .all(|p| lake::paths::Quarantined::parse(&p.as_str().into()).is_some()),
        "{q:?}"
    );
}

async fn futures_list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    store
        .list(Some(&prefix.into()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run ./scripts/test"]
async fn kinesis_unreachable_for_a_while_then_drained_nothing_lost() {
    aws_env();
    let (stream, bucket) = (unique("hep-outage"), unique("hep-outage"));
    create_bucket(&bucket);
    let client = kinesis(&endpoint()).await;
    create_stream(&client, &stream, 1).await;
    let proxy = Proxy::start(endpoint().trim_start_matches("http://").to_owned()).await;
    let relay = start_relay(
        &format!("http://{}", proxy.addr),
        &stream,
        Duration::from_secs(1),
    )
    .await;
    let now = chrono::Utc::now().timestamp_micros() - 60_000_000;
    let before = packets(10, 10, now);
    send_udp(relay.hep, &before);
    until(
        "the first records in Kinesis",
        Duration::from_secs(20),
        || relay_metric(relay.metrics, "records_put_total") > 0,
    )
    .await;
    proxy.set_down(true);
    let mut during = Vec::new();
    for i in 0..8 {
        let burst = packets(20 + i, 5, now);
        send_udp(relay.hep, &burst);
        during.extend(burst);
        let want = (before.len() + during.len()) as u64;
        until("the burst to arrive", Duration::from_secs(20), || {
            relay_metric(relay.metrics, "decoded_total") == want
        })
        .await;
    }
    until("batches on disk", Duration::from_secs(30), || {
        relay_metric(relay.metrics, "spooled_batches_total") > 0
    })
    .await;
    proxy.set_down(false);
    // Drain: the relay probes with backoff (≤ 1 s here) and empties its spool.
    until("the spool to drain", Duration::from_secs(60), || {
        relay_metric(relay.metrics, "spool_bytes") == 0
            && relay_metric(relay.metrics, "unspooled_batches_total")
                == relay_metric(relay.metrics, "spooled_batches_total")
    })
    .await;
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();

    let events = read_stream(&client, &stream).await;
    let mut got = std::collections::HashSet::new();
    for e in &events {
        for r in &e.records {
            for p in kinesis_record::messages(&r.kinesis.data.0).unwrap() {
                got.insert(p);
            }
        }
    }
    for p in before.iter().chain(&during) {
        assert!(
            got.contains(p),
            "a message sent while Kinesis was unreachable was lost"
        );
    }
    let store = lake(&bucket);
    let ingested = ingest_all(&store, &events).await;
    assert!(ingested >= before.len() + during.len());
    let r = router(&store);
    // Re-sent spool batches may repeat messages in Kinesis; the lake may then hold a message
    // twice only if a batch was delivered and spooled both: count distinct calls exactly.
    assert_eq!(
        count(&r, "SELECT count(DISTINCT call_id) AS n FROM hep_1").await,
        10 + 8 * 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run ./scripts/test"]
async fn compaction_on_s3_while_queries_run() {
    aws_env();
    let bucket = unique("hep-compact");
    create_bucket(&bucket);
    let store = lake(&bucket);
    // Twelve records, twelve small bundles (one object per attempt), and one that settles them.
    let (start, records) = settled_records_of_a_closed_hour(12, 10, 100);
    // One record per batch, as a quiet stream delivers them: thirteen attempts.
    let events: Vec<KinesisEvent> = records
        .into_iter()
        .map(|r| serde_json::from_value(json!({ "Records": [r] })).unwrap())
        .collect();
    assert_eq!(ingest_all(&store, &events).await, 1300);
    let hour = chrono::DateTime::from_timestamp_micros(start)
        .unwrap()
        .format("%Y-%m-%dT%H:00:00")
        .to_string();
    let sql = format!(
        "SELECT count(*) AS n FROM hep_1 WHERE time >= '{hour}' AND time < '{hour}'::timestamp + interval '1 hour'"
    );
    // The compactor's clock jumps past the grace period below; a listing kept
    // for `listing_ttl` of real time would outlive it, which the real grace
    // (300 s against 5 s) never allows: this query function keeps none.
    let r = functions::query_router(
        store.clone(),
        lake::engine::QueryLimits {
            listing_ttl: Duration::ZERO,
            ..Default::default()
        },
        &Default::default(),
    )
    .unwrap();
    assert_eq!(count(&r, &sql).await, 840);

    // The commit protocol rests on create-if-absent PUTs: S3 (here LocalStack) must refuse a second one.
    let probe = object_store::path::Path::from("_probe/create-once");
    store
        .put_opts(&probe, "a".into(), object_store::PutMode::Create.into())
        .await
        .unwrap();
    let again = store
        .put_opts(&probe, "b".into(), object_store::PutMode::Create.into())
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );

    // Readers and the compactor interleave on one task (the lambda_http
    // adapter's future is not Send); every await is a point where they switch.
    let stop = AtomicBool::new(false);
    let queries = std::sync::atomic::AtomicUsize::new(0);
    let reader = || async {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            assert_eq!(
                count(&r, &sql).await,
                840,
                "a query saw a row twice or missed one"
            );
            queries.fetch_add(1, Ordering::SeqCst);
            n += 1;
        }
        n
    };
    // Lets the readers finish a few queries against the current state.
    let queries_run = || async {
        let seen = queries.load(Ordering::SeqCst);
        while queries.load(Ordering::SeqCst) < seen + 3 {
            tokio::task::yield_now().await;
        }
    };
    let compactor = async {
        let cfg = lake::compact::CompactionConfig {
            target_file_bytes: 64 << 20,
            retention: None,
            ..Default::default()
        };
        let now = chrono::Utc::now().timestamp_micros();
        let rep = lake::compact::run(&store, &cfg, now, lake::compact::Sweep::Full, None).await;
        // Twelve small bundles (a quiet attempt's SIP, RTCP and logs in one object),
        // each merged by hep_1, hep_5 and hep_100.
        assert_eq!(
            (rep.files_in, rep.files_out, rep.errors.len()),
            (36, 3, 0),
            "{rep:?}"
        );
        queries_run().await;
        // After the grace period the replaced files go, still under concurrent queries.
        let rep = lake::compact::run(
            &store,
            &cfg,
            chrono::Utc::now().timestamp_micros() + 301_000_000,
            lake::compact::Sweep::Full,
            None,
        )
        .await;
        // Each bundle once, when all three tables have retired it.
        assert_eq!(rep.deleted, 12, "{rep:?}");
        queries_run().await;
        stop.store(true, Ordering::SeqCst);
    };
    let (a, b, c, ()) = tokio::join!(reader(), reader(), reader(), compactor);
    let queries = a + b + c;
    assert!(queries >= 6, "queries ran during compaction ({queries})");
    assert_eq!(count(&r, &sql).await, 840);
}

/// Feeds `event` to the ingest handler as Lambda's event source mapping does
/// with ReportBatchItemFailures: after a failure the batch is sent again from
/// the first failed record on. `between` runs after each failed attempt;
/// returns the attempts that failed. Gives up (returning the batch left) after
/// `max_failures`, as a mapping with bounded retries would.
async fn ingest_with_retries(
    store: &Arc<dyn ObjectStore>,
    mut event: KinesisEvent,
    max_failures: usize,
    mut between: impl FnMut(usize),
) -> (usize, Option<KinesisEvent>) {
    let mut failures = 0;
    loop {
        let (resp, _) = functions::ingest::handle(store, &Default::default(), &event).await;
        let Some(first) = resp
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .min_by(|a, b| {
                if reingest::sequence_le(a, b) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            })
        else {
            return (failures, None);
        };
        failures += 1;
        event
            .records
            .retain(|r| reingest::sequence_le(&first, &r.kinesis.sequence_number));
        if failures == max_failures {
            return (failures, Some(event));
        }
        between(failures);
    }
}

/// Lambda's on-failure record for what is left of a batch.
fn on_failure_record(stream: &str, shard: &str, left: &KinesisEvent) -> String {
    let seq = |i: usize| left.records[i].kinesis.sequence_number.clone();
    json!({
        "requestContext": { "requestId": "r", "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:ingest",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3 },
        "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
        "version": "1.0", "timestamp": "2026-11-29T10:00:00.000Z",
        "KinesisBatchInfo": { "shardId": shard, "startSequenceNumber": seq(0),
            "endSequenceNumber": seq(left.records.len() - 1), "batchSize": left.records.len(),
            "approximateArrivalOfFirstRecord": "2026-11-29T09:59:00Z", "approximateArrivalOfLastRecord": "2026-11-29T09:59:01Z",
            "streamArn": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}") }
    })
    .to_string()
}

/// S3 unreachable (a proxy switched off) while the ingest function runs:
/// its records fail and are retried until S3 is back; a batch whose retries
/// ran out is named in the on-failure queue and `hepop-reingest` stores it
/// from the stream. Every message ends up stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run ./scripts/test"]
async fn s3_unreachable_for_a_while_then_back_every_message_stored_once() {
    aws_env();
    let (stream, bucket) = (unique("hep-s3-outage"), unique("hep-s3-outage"));
    create_bucket(&bucket);
    let client = kinesis(&endpoint()).await;
    create_stream(&client, &stream, 1).await;
    let relay = start_relay(&endpoint(), &stream, Duration::from_secs(10)).await;
    let now = chrono::Utc::now().timestamp_micros() - 60_000_000;
    let first = packets(60, 20, now);
    let second = packets(61, 10, now);
    send_udp(relay.hep, &first);
    until(
        "the first calls in Kinesis",
        Duration::from_secs(30),
        || {
            relay_metric(relay.metrics, "decoded_total") == first.len() as u64
                && relay_metric(relay.metrics, "queued_bytes") == 0
                && relay_metric(relay.metrics, "records_put_total") > 0
        },
    )
    .await;
    // The relay's last record goes out at stop: stop it between the two batches.
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();
    let batch_one = read_stream(&client, &stream).await.remove(0);
    let relay = start_relay(&endpoint(), &stream, Duration::from_secs(10)).await;
    send_udp(relay.hep, &second);
    until("the second calls", Duration::from_secs(30), || {
        relay_metric(relay.metrics, "decoded_total") == second.len() as u64
    })
    .await;
    relay.stop.cancel();
    relay.task.await.unwrap().unwrap();
    let mut batch_two = read_stream(&client, &stream).await.remove(0);
    let seen: std::collections::HashSet<_> = batch_one
        .records
        .iter()
        .map(|r| r.kinesis.sequence_number.clone())
        .collect();
    batch_two
        .records
        .retain(|r| !seen.contains(&r.kinesis.sequence_number));
    assert!(!batch_two.records.is_empty());

    // The ingest function reaches S3 through the proxy; its S3 retries end in 2 s.
    let proxy = Proxy::start(endpoint().trim_start_matches("http://").to_owned()).await;
    let through_proxy = lake::store::open_with(
        &format!("s3://{bucket}/lake"),
        &lake::store::S3Settings {
            endpoint: Some(format!("http://{}", proxy.addr)),
            retry_timeout: Duration::from_secs(2),
        },
    )
    .unwrap();
    proxy.set_down(true);
    // Retried while S3 is down; back after the third failed attempt.
    let (failures, left) = ingest_with_retries(&through_proxy, batch_one, 100, |n| {
        if n == 3 {
            proxy.set_down(false);
        }
    })
    .await;
    assert_eq!(failures, 3, "every attempt failed while S3 was down");
    assert!(left.is_none());

    // The second batch runs out of retries while S3 is down: the on-failure queue names it.
    proxy.set_down(true);
    let (_, left) = ingest_with_retries(&through_proxy, batch_two, 2, |_| {}).await;
    let left = left.expect("retries ran out");
    let shard = left.records[0]
        .event_id
        .as_deref()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let aws = aws_setup::sdk_config(Some("us-east-1".into()), Some(endpoint())).await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    // A one-second visibility timeout: a kept record is soon visible again.
    let queue = sqs
        .create_queue()
        .queue_name(unique("ingest-failures"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&queue)
        .message_body(on_failure_record(&stream, &shard, &left))
        .send()
        .await
        .unwrap();
    // While S3 is still down, re-ingesting fails and the record stays queued.
    let r = reingest::drain_queue(&sqs, &queue, &client, &through_proxy, &Default::default())
        .await
        .unwrap();
    assert_eq!((r.batches, r.kept), (0, 1), "{r:?}");
    proxy.set_down(false);
    let until_visible = Instant::now();
    let r = loop {
        let r = reingest::drain_queue(&sqs, &queue, &client, &through_proxy, &Default::default())
            .await
            .unwrap();
        if r.batches > 0 {
            break r;
        }
        assert!(until_visible.elapsed() < Duration::from_secs(60), "{r:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (r.batches, r.kept, r.records),
        (1, 0, left.records.len()),
        "{r:?}"
    );
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let waiting = |k: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&k))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        (
            waiting(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
            waiting(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        ),
        ("0".to_owned(), "0".to_owned()),
        "the on-failure record is deleted once stored"
    );

    // Every message once: as many rows as messages sent, each distinct.
    let r = router(&lake(&bucket));
    let sent = (first.len() + second.len()) as i64;
    let all = count(&r, "SELECT count(*) AS n FROM hep_1").await
        + count(&r, "SELECT count(*) AS n FROM hep_5").await
        + count(&r, "SELECT count(*) AS n FROM hep_100").await;
    assert_eq!(all, sent, "every message stored, none twice");
    let distinct = count(
        &r,
        "SELECT count(*) AS n FROM (SELECT DISTINCT call_id, cseq_num, method, status FROM hep_1)",
    )
    .await;
    assert_eq!(distinct, count(&r, "SELECT count(*) AS n FROM hep_1").await);
}

/// `n` records captured a second apart three hours ago (a closed hour), and
/// record `n`, of now, which shows the checkpoint passed them (they are
/// settled); with the hour's start (µs).
fn settled_records_of_a_closed_hour(n: u64, calls: u64, seed: u64) -> (i64, Vec<Value>) {
    let start =
        (chrono::Utc::now().timestamp_micros() / 3_600_000_000 - 3) * 3_600_000_000 + 60_000_000;
    let records = stream_records(0..n + 1, calls, seed, |k| {
        if k == n {
            chrono::Utc::now().timestamp_micros()
        } else {
            start + k as i64 * 1_000_000
        }
    });
    (start, records)
}

/// Kinesis event records of one shard, `k` → sequence `k`, each holding
/// `calls` calls' messages (run `seed + k`) captured at `sent(k)`; arrival is
/// now, so capture times hours ago are inside the accepted window.
fn stream_records(
    ks: std::ops::Range<u64>,
    calls: u64,
    seed: u64,
    sent: impl Fn(u64) -> i64,
) -> Vec<Value> {
    let arrival = chrono::Utc::now().timestamp() as f64;
    ks.map(|k| {
        let mut b = kinesis_record::RecordBuilder::new();
        for p in packets(seed + k, calls, sent(k)) {
            b.push(&p).unwrap();
        }
        let data = b.finish().remove(0);
        json!({
            "kinesis": { "kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": format!("{:056}", k),
                "data": base64::engine::general_purpose::STANDARD.encode(&data), "approximateArrivalTimestamp": arrival },
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{:056}", k),
            "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::0:role/x", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:0:stream/s"
        })
    })
    .collect()
}

/// The Delta tables on S3, read by the Python `deltalake` package (an
/// independent delta-rs), DuckDB and Polars after Kinesis retries of every
/// shape and two compactors at once: each row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack: run ./scripts/test"]
async fn delta_on_s3_after_retries_and_two_compactors_is_exact_for_outside_readers() {
    aws_env();
    let bucket = unique("hep-delta");
    create_bucket(&bucket);
    let store = lake(&bucket);
    let (start, records) = settled_records_of_a_closed_hour(20, 2, 500);
    let batch = |r: std::ops::Range<usize>| -> KinesisEvent {
        serde_json::from_value(json!({ "Records": records[r].to_vec() })).unwrap()
    };
    // As the event source mapping delivers from the shard's checkpoint: whole, the same
    // batch again (its answer lost), bisected after an error, longer after a lost answer.
    let deliveries = [
        batch(0..5),
        batch(0..5),
        batch(5..10),
        batch(5..7),
        batch(7..10),
        batch(10..13),
        batch(10..16),
        batch(16..20),
        batch(20..21),
    ];
    ingest_all(&store, &deliveries).await;
    // Every SIP message of the closed hour, once.
    let sip_per_record = Call::new(0, 0)
        .all(0)
        .iter()
        .filter(|m| m.proto_type == 1)
        .count() as i64
        * 2;
    let expected = 20 * sip_per_record;
    let hour = chrono::DateTime::from_timestamp_micros(start)
        .unwrap()
        .format("%Y-%m-%dT%H:00:00")
        .to_string();
    let sql = format!(
        "SELECT count(*) AS n FROM hep_1 WHERE time >= '{hour}' AND time < '{hour}'::timestamp + interval '1 hour'"
    );
    assert_eq!(count(&router(&store), &sql).await, expected);

    // Two compactors at once, twice: the Delta commits race, and Delta's conflict check settles them.
    let cfg = lake::compact::CompactionConfig {
        retention: None,
        ..Default::default()
    };
    let mut conflicts = 0;
    for _ in 0..2 {
        let now = chrono::Utc::now().timestamp_micros();
        let (a, b) = tokio::join!(
            lake::compact::run(&store, &cfg, now, lake::compact::Sweep::Full, None),
            lake::compact::run(&store, &cfg, now, lake::compact::Sweep::Full, None),
        );
        assert!(a.errors.is_empty() && b.errors.is_empty(), "{a:?} {b:?}");
        conflicts += a.delta_conflicts + b.delta_conflicts + a.conflicts + b.conflicts;
    }
    assert_eq!(count(&router(&store), &sql).await, expected);

    let options = json!({
        "AWS_ENDPOINT_URL": endpoint(), "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
    });
    let got = readers::read_delta(&format!("s3://{bucket}/lake"), "hep_1", Some(&options));
    let date = &hour[..10];
    let hour_of_day: i64 = hour[11..13].parse().unwrap();
    let in_hour: i64 = got["by_hour"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] == date && r[1] == hour_of_day)
        .map(|r| r[2].as_i64().unwrap())
        .sum();
    assert_eq!(in_hour, expected, "{got} ({conflicts} conflicts)");
    assert_eq!(got["duckdb"], got["deltalake"], "{got}");
    assert_eq!(got["polars"], got["deltalake"], "{got}");
    assert_eq!(got["duckdb_distinct"], got["duckdb"], "no row twice: {got}");
}
