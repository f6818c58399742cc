//! The ingest handler against an in-memory lake: the capture-time rule is
//! the server's, applied at the record's arrival time.
use std::sync::Arc;

use arrow::array::{Array, TimestampMicrosecondArray};
use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use functions::ingest::{IngestConfig, Metered, handle, handle_attempt, handle_metered};
use hep::TimeWindow;
use hep::sample::Call;
use lake::catalog::list_partition;
use lake::paths::Partition;
use object_store::ObjectStore;
use object_store::memory::InMemory;

fn event(arrival_micros: i64, sent: &[i64]) -> KinesisEvent {
    let mut b = kinesis_record::RecordBuilder::new();
    for (i, &t) in sent.iter().enumerate() {
        let mut m = Call::new(7, i as u64).sip_flow(t).remove(0);
        m.time_sec = (t / 1_000_000) as u32;
        m.time_usec = (t % 1_000_000) as u32;
        b.push(&hep::encode_v3(&m).unwrap()).unwrap();
    }
    let mut r = KinesisEventRecord::default();
    r.event_id = Some("shardId-000000000003:4960".into());
    r.kinesis.sequence_number = "4960".into();
    *r.kinesis.data = b.finish().remove(0);
    r.kinesis.approximate_arrival_timestamp =
        SecondTimestamp(chrono::DateTime::from_timestamp_micros(arrival_micros).unwrap());
    let mut e = KinesisEvent::default();
    e.records.push(r);
    e
}

async fn original_times(store: &Arc<dyn ObjectStore>, p: Partition) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for f in list_partition(store, p).await.unwrap().visible() {
        for b in lake::parquet_io::read_all(store, &f.location)
            .await
            .unwrap()
        {
            let c = b
                .column(b.schema().index_of("original_time").unwrap())
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .clone();
            out.extend((0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i))));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn times_outside_the_window_are_stored_at_the_records_arrival() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let arrival = 1_764_374_400_000_000; // 2025-11-29T00:00:00Z
    let (y2100, y1970, fine) = (4_102_444_800_000_000, 1_000_000, arrival - 5_000_000);
    let (resp, report) = handle(
        &store,
        &IngestConfig::default(),
        &event(arrival, &[y2100, y1970, fine]),
    )
    .await;
    assert!(resp.batch_item_failures.is_empty(), "{report:?}");
    assert_eq!((report.messages, report.time_replaced), (3, 2));
    // The fine one is in the previous hour; the other two at arrival, with their original time.
    assert_eq!(
        original_times(&store, Partition::for_micros(1, arrival)).await,
        vec![Some(y1970), Some(y2100)]
    );
    assert_eq!(
        original_times(&store, Partition::for_micros(1, fine)).await,
        vec![None]
    );

    // Accepting any time puts them in their own hours.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cfg = IngestConfig {
        window: TimeWindow {
            accept_any: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, report) = handle(&store, &cfg, &event(arrival, &[y2100])).await;
    assert_eq!(report.time_replaced, 0);
    assert_eq!(
        original_times(&store, Partition::for_micros(1, y2100)).await,
        vec![None]
    );
}

/// A recent arrival time half an hour from any hour's edge, so that a call
/// captured around it stays in one hour whenever the test runs.
fn mid_hour_arrival() -> i64 {
    const HOUR: i64 = 3_600_000_000;
    let now = chrono::Utc::now().timestamp_micros();
    now - now.rem_euclid(HOUR) - HOUR / 2
}

/// `n` records of shard 3 from sequence number `first` on (sparse), each
/// holding one call's SIP flow, arrived now.
fn records(first: usize, n: usize, arrival: i64) -> Vec<KinesisEventRecord> {
    (first..first + n)
        .map(|k| {
            let msgs = Call::new(9, k as u64).sip_flow(arrival - 1_000_000);
            record(3, &format!("{}", 1_000 + k * 37), &msgs, arrival)
        })
        .collect()
}

/// The event of one batch of `records`.
fn batch(records: &[KinesisEventRecord]) -> KinesisEvent {
    let mut e = KinesisEvent::default();
    e.records = records.to_vec();
    e
}

/// Kinesis record `seq` of shard `shard` holding `msgs`, arrived at `arrival`.
fn record(shard: u32, seq: &str, msgs: &[hep::HepMessage], arrival: i64) -> KinesisEventRecord {
    let mut b = kinesis_record::RecordBuilder::new();
    for m in msgs {
        b.push(&hep::encode_v3(m).unwrap()).unwrap();
    }
    let mut r = KinesisEventRecord::default();
    r.event_id = Some(format!("shardId-{shard:012}:{seq}"));
    r.kinesis.sequence_number = seq.to_owned();
    *r.kinesis.data = b.finish().remove(0);
    r.kinesis.approximate_arrival_timestamp =
        SecondTimestamp(chrono::DateTime::from_timestamp_micros(arrival).unwrap());
    r
}

/// Call-IDs of every SIP row a reader sees in `p`, with how often each is seen.
async fn calls_seen(
    store: &Arc<dyn ObjectStore>,
    p: Partition,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for f in list_partition(store, p).await.unwrap().visible() {
        for b in lake::parquet_io::read_all(store, &f.location)
            .await
            .unwrap()
        {
            let c = arrow::compute::cast(
                b.column(b.schema().index_of("call_id").unwrap()),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            for v in c
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap()
            {
                *seen.entry(v.unwrap().to_owned()).or_default() += 1;
            }
        }
    }
    seen
}

#[tokio::test]
async fn one_file_per_batch_and_retries_in_any_shape_store_each_row_once() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cfg = IngestConfig::default();
    let arrival = mid_hour_arrival();
    let p = Partition::for_micros(1, arrival - 1_000_000);
    let all = records(0, 12, arrival);
    let per_call = {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        handle_attempt(&store, &cfg, &batch(&all[..1]), 1).await;
        calls_seen(&store, p).await.into_values().next().unwrap()
    };
    // Ten records in one attempt: one file (all SIP, one hour), not ten.
    let (resp, report) = handle_attempt(&store, &cfg, &batch(&all[..10]), 100).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!((report.records, report.files), (10, 1), "{report:?}");
    // Its answer was lost: the mapping bisects (0..5, then 5..10), then a
    // retry from the checkpoint in the middle comes longer (5..12), and the
    // same batch comes whole again.
    for (n, (from, to)) in [(0, 5), (5, 10), (5, 12), (5, 12)].into_iter().enumerate() {
        let (resp, _) = handle_attempt(&store, &cfg, &batch(&all[from..to]), 200 + n as i64).await;
        assert!(resp.batch_item_failures.is_empty());
    }
    let seen = calls_seen(&store, p).await;
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert!(
        seen.values().all(|&n| n == per_call),
        "each call's {per_call} messages once: {seen:?}"
    );
    assert_eq!(
        list_partition(&store, p).await.unwrap().visible().len(),
        2,
        "the attempts over 0..5 and 5..12"
    );
}

/// Capture ids of every row of `hep_type` a reader sees in the hour of `at`.
async fn rows_seen(store: &Arc<dyn ObjectStore>, hep_type: u8, at: i64) -> Vec<i64> {
    let p = Partition::for_micros(hep_type, at);
    let mut ids = Vec::new();
    for f in list_partition(store, p).await.unwrap().visible() {
        for b in lake::parquet_io::read_table_rows(store, &f.location, hep_type)
            .await
            .unwrap()
        {
            let c = b.column(b.schema().index_of("time").unwrap());
            let c = c
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            ids.extend(c.values().iter().copied());
        }
    }
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn a_quiet_batch_of_three_tables_is_one_object_and_retries_keep_each_row_once() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cfg = IngestConfig::default();
    let arrival = mid_hour_arrival();
    let start = arrival - 30_000_000;
    // Four records, each a whole call: SIP, RTCP reports and a log line.
    let all: Vec<KinesisEventRecord> = (0..4u64)
        .map(|k| {
            let msgs = Call::new(11, k).all(start + k as i64 * 1_000);
            record(1, &format!("{}", 7_000 + k * 11), &msgs, arrival)
        })
        .collect();
    let (resp, report) = handle_attempt(&store, &cfg, &batch(&all), 100).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        report.files, 1,
        "one PUT for SIP, RTCP and logs: {report:?}"
    );
    let expected: Vec<Vec<i64>> = {
        let mut v = Vec::new();
        for t in [1, 5, 100] {
            v.push(rows_seen(&store, t, start).await);
        }
        v
    };
    assert!(expected.iter().all(|rows| !rows.is_empty()), "{expected:?}");
    // The answer was lost: bisected, then from the checkpoint in the middle, then whole again.
    for (n, (from, to)) in [(0, 2), (2, 4), (1, 4), (0, 4)].into_iter().enumerate() {
        let (resp, _) = handle_attempt(&store, &cfg, &batch(&all[from..to]), 200 + n as i64).await;
        assert!(resp.batch_item_failures.is_empty());
    }
    for (i, t) in [1u8, 5, 100].into_iter().enumerate() {
        assert_eq!(rows_seen(&store, t, start).await, expected[i], "hep_{t}");
    }
}

/// The embedded-metric documents printed for one invocation, by metric name
/// and dimension values.
async fn metered(
    store: &Arc<dyn ObjectStore>,
    event: &KinesisEvent,
    state: &mut Metered,
) -> (usize, std::collections::BTreeMap<String, f64>) {
    let mut out = Vec::new();
    let (resp, _) = handle_metered(store, &IngestConfig::default(), event, state, &mut out).await;
    let mut seen = std::collections::BTreeMap::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let spec = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], functions::ingest::METRICS_NAMESPACE);
        let name = spec["Metrics"][0]["Name"].as_str().unwrap();
        let dims: Vec<String> = spec["Dimensions"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                format!(
                    "{}={}",
                    d.as_str().unwrap(),
                    doc[d.as_str().unwrap()].as_str().unwrap()
                )
            })
            .collect();
        seen.insert(
            format!("{name}{{{}}}", dims.join(",")),
            doc[name].as_f64().unwrap(),
        );
    }
    (resp.batch_item_failures.len(), seen)
}

#[tokio::test]
async fn the_function_prints_heplify_series_as_embedded_metrics_of_what_it_stored() {
    let arrival = mid_hour_arrival();
    let four_calls = batch(&records(0, 4, arrival));
    let invites = "heplify_method_response{node_id=2001,response=INVITE,method=INVITE}";
    let sip = "heplify_packets_total{type=sip}";

    // A lake that cannot be written (its root is a file): nothing stored, nothing counted.
    let not_a_dir = tempfile::NamedTempFile::new().unwrap();
    let broken: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(not_a_dir.path()).unwrap());
    let mut state = Metered::default();
    let (failures, seen) = metered(&broken, &four_calls, &mut state).await;
    assert_eq!((failures, seen.len()), (1, 0), "{seen:?}");

    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (failures, seen) = metered(&store, &four_calls, &mut state).await;
    assert_eq!(failures, 0);
    assert_eq!(seen.get(sip), Some(&28.0), "{seen:?}");
    assert_eq!(seen.get(invites), Some(&4.0), "{seen:?}");
    assert_eq!(
        seen.get("heplify_method_response{node_id=2001,response=200,method=INVITE}"),
        Some(&4.0)
    );
    assert!(seen.contains_key("heplify_kpi_srd{}"), "{seen:?}");

    // The same batch again (its answer was lost): packets count again, as
    // heplify-server counts them, calls do not; only what grew is printed.
    let (_, seen) = metered(&store, &four_calls, &mut state).await;
    assert_eq!(seen.get(sip), Some(&28.0), "{seen:?}");
    assert_eq!(seen.get(invites), None, "{seen:?}");
}
