use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use lake::engine::{QueryEngine, QueryError, QueryLimits};
use object_store::ObjectStore;
use support::{Instrumented, Op, micros, sip, write};

struct Lake {
    _dir: tempfile::TempDir,
    inst: Arc<Instrumented>,
    store: Arc<dyn ObjectStore>,
}

fn lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instrumented::new(lake::store::open(dir.path().to_str().unwrap()).unwrap());
    let store: Arc<dyn ObjectStore> = inst.clone();
    Lake {
        _dir: dir,
        inst,
        store,
    }
}

fn engine(store: &Arc<dyn ObjectStore>) -> QueryEngine {
    QueryEngine::new(store.clone(), QueryLimits::default()).unwrap()
}

async fn count(e: &QueryEngine, sql: &str) -> i64 {
    let r = e.query(sql).await.unwrap();
    let b = &r.batches[0];
    b.column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[tokio::test]
async fn no_time_condition_means_last_ten_minutes() {
    let l = lake();
    let t = now();
    let msgs = vec![
        sip(1, 0, t - 30_000_000),
        sip(2, 0, t - 9 * 60_000_000),
        sip(3, 0, t - 11 * 60_000_000),
        sip(4, 0, t - 3 * 3_600_000_000),
    ];
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    assert_eq!(count(&e, "SELECT count(*) FROM hep_1").await, 2);
    // Selecting columns without `time` still applies the window.
    assert_eq!(
        e.query("SELECT call_id FROM hep_1")
            .await
            .unwrap()
            .num_rows(),
        2
    );
    assert_eq!(
        count(&e, "SELECT count(*) FROM hep_1 WHERE call_id LIKE 'call-%'").await,
        2
    );
    // Any condition on time replaces the window.
    let since = chrono::DateTime::from_timestamp_micros(t - 4 * 3_600_000_000)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S");
    assert_eq!(
        count(
            &e,
            &format!("SELECT count(*) FROM hep_1 WHERE time >= '{since}'")
        )
        .await,
        4
    );
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM hep_1 WHERE time > now() - interval '1 hour'"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn time_conditions_prune_partitions_before_listing_or_reading() {
    let l = lake();
    let mut msgs = vec![];
    for (i, hour) in [
        "2025-02-07T19",
        "2025-02-08T18",
        "2025-02-08T19",
        "2025-02-08T20",
    ]
    .iter()
    .enumerate()
    {
        for k in 0..5 {
            msgs.push(sip(
                i * 10 + k,
                k,
                micros(&format!("{hour}:{:02}:00", 10 + k)),
            ));
        }
    }
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    let touched = |ops: &[Op], hour: &str| {
        ops.iter().any(|op| match op {
            Op::Get(p) | Op::List(p) | Op::ListDelim(p) => p.contains(hour),
            _ => false,
        })
    };
    for (sql, expected) in [
        (
            "SELECT count(*) FROM hep_1 WHERE time >= '2025-02-08T19:00:00' AND time < '2025-02-08T20:00:00'",
            5,
        ),
        (
            "SELECT count(*) FROM hep_1 WHERE time BETWEEN '2025-02-08T19:05:00' AND '2025-02-08T19:59:59'",
            5,
        ),
        (
            "SELECT count(*) FROM hep_1 WHERE time BETWEEN '2025-02-08T19:11:00' AND '2025-02-08T19:12:00'",
            2,
        ),
        // INVITE and the three responses whose CSeq says INVITE.
        (
            "SELECT count(*) FROM hep_1 WHERE '2025-02-08T19:00:00' <= time AND time <= '2025-02-08T19:30:00' AND payload LIKE '%INVITE%' OR false",
            4,
        ),
        // Functions of `time` that floor it bound it too.
        (
            "SELECT count(*) FROM hep_1 WHERE date_trunc('hour', time) = '2025-02-08T19:00:00Z'",
            5,
        ),
        (
            "SELECT count(*) FROM hep_1 WHERE date_trunc('minute', time) BETWEEN '2025-02-08T19:11:00' AND '2025-02-08T19:12:00'",
            2,
        ),
        (
            "SELECT count(*) FROM hep_1 WHERE time >= to_timestamp(1739041200) AND time < to_timestamp(1739041200 + 3600)",
            5,
        ),
    ] {
        // A fresh engine each time: nothing cached, the hour must be read.
        let e = engine(&l.store);
        l.inst.take_ops();
        let n = count(&e, sql).await;
        let ops = l.inst.take_ops();
        assert_eq!(n, expected, "{sql}");
        assert!(touched(&ops, "date=2025-02-08/hour=19"), "{sql}: {ops:?}");
        for other in [
            "date=2025-02-08/hour=18",
            "date=2025-02-08/hour=20",
            "date=2025-02-07",
        ] {
            assert!(!touched(&ops, other), "{sql} touched {other}: {ops:?}");
        }
    }
    assert_eq!(count(&e, "SELECT count(*) FROM hep_1 WHERE time >= '2025-02-08T19:00:00' AND time < '2025-02-08T20:00:00'").await, 5);
    // Lower bound only: everything from 18:00 on, nothing of the 7th read.
    l.inst.take_ops();
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM hep_1 WHERE time > '2025-02-08T18:00:00'"
        )
        .await,
        15
    );
    assert!(!touched(&l.inst.take_ops(), "date=2025-02-07"));
    // Empty range reads nothing at all.
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM hep_1 WHERE time > '2025-02-09' AND time < '2025-02-08'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn sql_features_work() {
    let l = lake();
    let t = now() - 60_000_000;
    let msgs: Vec<_> = (0..10)
        .flat_map(|c| (0..7).map(move |s| sip(c, s, t + (c * 7 + s) as i64 * 1000)))
        .collect();
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    assert_eq!(
        count(&e, "SELECT count(*) FROM hep_1 WHERE method = 'INVITE'").await,
        10
    );
    let r = e.query("SELECT call_id, count(*) AS n, min(time) AS first FROM hep_1 GROUP BY call_id ORDER BY n DESC, call_id LIMIT 3 OFFSET 1").await.unwrap();
    assert_eq!(r.num_rows(), 3);
    let b = &r.batches[0];
    let call = b.column(0).as_string_view();
    assert_eq!(call.value(0), "call-1@10.0.0.1");
    assert_eq!(b.column(1).as_primitive::<Int64Type>().value(0), 7);
    assert_eq!(count(&e, "SELECT count(DISTINCT call_id) FROM hep_1 WHERE status >= 200 AND payload LIKE '%SIP/2.0 2%'").await, 10);
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM (SELECT src_ip FROM hep_1 ORDER BY time DESC LIMIT 5)"
        )
        .await,
        5
    );
    let r = e
        .query("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'hep_%'")
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 1);
}

#[tokio::test]
async fn refuses_anything_but_reads() {
    let l = lake();
    write(&l.store, &[sip(1, 0, now())]).await;
    let e = engine(&l.store);
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'",
        "CREATE VIEW v AS SELECT * FROM hep_1",
        "DROP TABLE hep_1",
        "INSERT INTO hep_1 SELECT * FROM hep_1",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('https://example.com/x.csv')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT 1; SELECT 2",
        "SELEC nonsense",
        "SELECT nope FROM hep_1",
        "SELECT * FROM hep_99",
        "",
    ] {
        match e.query(sql).await {
            Err(err) => assert!(err.is_user_error(), "{sql}: {err}"),
            Ok(_) => panic!("{sql} was accepted"),
        }
    }
}

#[tokio::test]
async fn too_many_rows_and_too_slow_end_with_clear_errors() {
    let l = lake();
    let t = now();
    write(
        &l.store,
        &(0..50).map(|i| sip(i, 0, t - i as i64)).collect::<Vec<_>>(),
    )
    .await;
    let small = QueryEngine::new(
        l.store.clone(),
        QueryLimits {
            max_rows: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        small.query("SELECT * FROM hep_1").await,
        Err(QueryError::TooManyRows(10))
    ));
    assert_eq!(
        small
            .query("SELECT * FROM hep_1 LIMIT 10")
            .await
            .unwrap()
            .num_rows(),
        10
    );
    let slow = QueryEngine::new(
        l.store.clone(),
        QueryLimits {
            timeout: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let r = slow
        .query("SELECT count(*) FROM generate_series(1, 10000000000) a")
        .await;
    assert!(matches!(r, Err(QueryError::Timeout(_))), "{:?}", r.err());
    assert!(started.elapsed() < Duration::from_secs(5));
    let tight = QueryEngine::new(
        l.store.clone(),
        QueryLimits {
            memory_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let r = tight.query("SELECT a.value, b.value FROM generate_series(1, 3000000) a, generate_series(1, 2) b ORDER BY a.value DESC LIMIT 1").await;
    assert!(
        matches!(r, Err(QueryError::ResourcesExhausted(_))),
        "{:?}",
        r.err()
    );
}

/// Time bounds are applied by the scan itself, and only to the hours they cut:
/// every form of bound, at and around an hour's edges, counts exactly the rows
/// a plain comparison does (rows of hours wholly inside are not filtered).
#[tokio::test]
async fn time_bounds_hold_exactly_at_hour_edges() {
    let l = lake();
    let edge = micros("2025-02-08T19:00:00");
    let hour = 3_600_000_000;
    let times: Vec<i64> = [
        -hour - 1,
        -hour,
        -hour / 2,
        -2,
        -1,
        0,
        1,
        hour / 2,
        hour - 1,
        hour,
        hour + 1,
        2 * hour + 5,
    ]
    .iter()
    .map(|d| edge + d)
    .collect();
    let msgs: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, t)| sip(i, 0, *t))
        .collect();
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    let iso = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    let n = |f: &dyn Fn(i64) -> bool| times.iter().filter(|t| f(**t)).count() as i64;
    for (a, b) in [
        (edge - hour, edge + hour),
        (edge, edge + hour),
        (edge - 1, edge + 1),
        (edge + 1, edge + hour - 1),
        (edge - hour - 1, edge + 2 * hour + 5),
        (edge + hour / 2, edge + hour / 2),
    ] {
        let (sa, sb) = (iso(a), iso(b));
        for (sql, expected) in [
            (
                format!("time >= '{sa}' AND time < '{sb}'"),
                n(&|t| t >= a && t < b),
            ),
            (
                format!("time > '{sa}' AND time <= '{sb}'"),
                n(&|t| t > a && t <= b),
            ),
            (
                format!("time BETWEEN '{sa}' AND '{sb}'"),
                n(&|t| t >= a && t <= b),
            ),
            (
                format!("'{sb}' > time AND '{sa}' <= time"),
                n(&|t| t >= a && t < b),
            ),
            (format!("time = '{sa}'"), n(&|t| t == a)),
            // Not a plain bound: DataFusion filters it, the scan keeps the hours.
            (
                format!("time >= '{sa}' AND time < '{sb}' AND (time < '{sa}' OR src_port = 5060)"),
                n(&|t| t >= a && t < b),
            ),
        ] {
            let got = count(&e, &format!("SELECT count(*) FROM hep_1 WHERE {sql}")).await;
            assert_eq!(got, expected, "{sql}");
        }
    }
    // Selecting columns without `time` while an edge hour is filtered by it.
    let r = e
        .query(&format!(
            "SELECT src_port FROM hep_1 WHERE time >= '{}' AND time < '{}'",
            iso(edge - 1),
            iso(edge + hour + 1)
        ))
        .await
        .unwrap();
    assert_eq!(
        r.num_rows() as i64,
        n(&|t| t >= edge - 1 && t < edge + hour + 1)
    );
    assert_eq!(r.schema.fields().len(), 1);
}

/// A B leg's INVITE as a B2BUA sends it: the A leg's Call-ID in a configured
/// header, an SDP offer. The correlation and flow columns hold what it says,
/// with the configured header list, not only the default one.
#[tokio::test]
async fn correlation_and_flow_columns_are_stored() {
    let l = lake();
    let t = now() - 1_000_000;
    let mut m = sip(3, 0, t);
    m.payload = b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-b3\r\n\
Call-ID: b-leg-3@sbc\r\n\
X-Leg: a-leg-3@pbx\r\n\
Contact: <sip:sbc@10.0.0.1:5060>\r\n\
Content-Type: application/sdp\r\n\r\n\
v=0\r\nc=IN IP4 192.0.2.7\r\nm=audio 30000 RTP/AVP 0\r\n"
        .to_vec();
    let mut buf = lake::writer::WriteBuffer::new(lake::writer::WriterConfig {
        aleg_headers: lake::rows::parse_aleg_headers("X-CID,X-Leg").unwrap(),
        ..Default::default()
    });
    buf.append(&m);
    buf.append(&sip(4, 0, t + 1));
    for f in buf.take_due(Instant::now(), true) {
        f.write(&l.store).await.unwrap();
    }
    let r = engine(&l.store)
        .query("SELECT aleg_id, via_branch, contact, content_type, sdp_media_ip, sdp_media_port FROM hep_1 ORDER BY time")
        .await
        .unwrap();
    let b = &r.batches[0];
    let text = |c: usize, i: usize| {
        let a = b.column(c).as_string_view();
        (!a.is_null(i)).then(|| a.value(i).to_owned())
    };
    assert_eq!(text(0, 0).as_deref(), Some("a-leg-3@pbx"));
    assert_eq!(text(1, 0).as_deref(), Some("z9hG4bK-b3"));
    assert_eq!(text(2, 0).as_deref(), Some("sip:sbc@10.0.0.1:5060"));
    assert_eq!(text(3, 0).as_deref(), Some("application/sdp"));
    assert_eq!(text(4, 0).as_deref(), Some("192.0.2.7"));
    let port = b.column(5).as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(port.value(0), 30000);
    // A message without them has nulls.
    assert_eq!((text(0, 1), text(4, 1)), (None, None));
    assert!(port.is_null(1));
}

#[tokio::test]
async fn each_table_reads_its_own_rows_of_a_bundle() {
    use lake::paths::FileName;
    let l = lake();
    let t = now() - 60_000_000;
    let typed = |call: usize, step: usize, hep_type: u8| {
        let mut m = sip(call, step, t + (call * 10 + step) as i64);
        m.proto_type = hep_type;
        m
    };
    // Attempt 1: 3 SIP, 2 RTCP, 1 log in one bundle; attempt 2: SIP alone, a file of hep_1.
    let bundled: Vec<_> = (0..3)
        .map(|s| typed(1, s, 1))
        .chain((0..2).map(|s| typed(1, s + 3, 5)))
        .chain([typed(1, 5, 100)])
        .collect();
    let name = |first: &str, started| FileName::kinesis_batch("shard-0", first, first, started);
    let headers = lake::rows::default_aleg_headers();
    let files = lake::writer::files_named(&bundled, &name("1", 10), &headers);
    assert_eq!(files.len(), 1);
    assert!(files[0].path.as_ref().starts_with("_bundles/t=1.5.100/"));
    let alone = lake::writer::files_named(&[typed(2, 0, 1)], &name("2", 20), &headers);
    assert!(alone[0].path.as_ref().starts_with("hep_1/"));
    for f in files.iter().chain(&alone) {
        f.write(&l.store).await.unwrap();
    }
    let e = engine(&l.store);
    assert_eq!(count(&e, "SELECT count(*) FROM hep_1").await, 4);
    assert_eq!(count(&e, "SELECT count(*) FROM hep_5").await, 2);
    assert_eq!(count(&e, "SELECT count(*) FROM hep_100").await, 1);
    assert_eq!(
        count(&e, "SELECT count(*) FROM hep_5 WHERE proto_type <> 5").await,
        0,
        "no other table's rows"
    );
    // The newest of hep_1 is in its own file; the next ones in the bundle.
    let r = e
        .query("SELECT coalesce(method, CAST(status AS VARCHAR)) FROM hep_1 ORDER BY time DESC LIMIT 2")
        .await
        .unwrap();
    let methods: Vec<String> = r
        .batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            c.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    // Call 2's INVITE (its own file), then call 1's 180 Ringing (the bundle).
    assert_eq!(methods, ["INVITE", "180"]);
    let sql = "SELECT count(*) FROM hep_1 WHERE call_id = 'call-1@10.0.0.1'";
    assert_eq!(
        count(&e, sql).await,
        3,
        "a lookup in the bundle's row group"
    );
}

/// Files are ordered by minute, so every file's `call_id` statistics span
/// nearly all calls: a lookup's bloom filters, checked while the scan is
/// planned, leave only the row groups that may hold the value, and a file
/// left with none is not opened. The answers are those of a scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_read_only_the_row_groups_their_bloom_filters_admit() {
    let l = lake();
    let base = micros("2025-02-08T19:00:00");
    // One file of eight ingest slices (8192 rows each, calls of 7 rows in
    // time order), and a second file of other calls in the same hour.
    let n = 8 * 8192;
    let first: Vec<_> = (0..n)
        .map(|i| sip(i / 7, i % 7, base + i as i64 * 10_000))
        .collect();
    write(&l.store, &first).await;
    let second: Vec<_> = (0..2 * 8192)
        .map(|i| sip(100_000 + i / 7, i % 7, base + i as i64 * 10_000))
        .collect();
    write(&l.store, &second).await;
    let e = engine(&l.store);
    let window = "time >= '2025-02-08T19:00:00Z' AND time < '2025-02-08T20:00:00Z'";
    let all = format!("SELECT count(*) FROM hep_1 WHERE {window}");
    assert_eq!(count(&e, &all).await, (n + 2 * 8192) as i64);
    // (condition, rows, row groups kept, files read)
    let cases = [
        // Call 100: rows 700-706, in the first slice.
        ("call_id = 'call-100@10.0.0.1'", 7, 1, 1),
        // Call 1170: rows 8190-8196, across the first two slices.
        ("call_id = 'call-1170@10.0.0.1'", 7, 2, 1),
        // One call of each file.
        (
            "call_id IN ('call-5002@10.0.0.1', 'call-100011@10.0.0.1')",
            14,
            2,
            2,
        ),
        ("from_user = 'alice100010'", 7, 1, 1),
        ("call_id = 'no-such-call'", 0, 0, 0),
    ];
    for (condition, rows, kept, files_read) in cases {
        let sql = format!("SELECT count(*) FROM hep_1 WHERE {window} AND {condition}");
        // Warm the caches; then count what the lookup plans and reads.
        assert_eq!(count(&e, &sql).await, rows, "{condition}");
        l.inst.take_ops();
        let before = e.cache_stats().row_groups;
        assert_eq!(count(&e, &sql).await, rows, "{condition}");
        let after = e.cache_stats().row_groups;
        let read: std::collections::BTreeSet<String> = l
            .inst
            .take_ops()
            .into_iter()
            .filter_map(|o| match o {
                Op::Get(p) if p.ends_with(".parquet") => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(
            (
                after.lookup_kept - before.lookup_kept,
                after.lookup_ruled_out - before.lookup_ruled_out,
            ),
            (kept, 10 - kept),
            "{condition}: row groups kept, ruled out of 8 + 2"
        );
        assert_eq!(read.len(), files_read, "{condition}: {read:?}");
        // The same rows through a condition no bloom filter answers.
        if !condition.contains(" IN (") {
            // (`LIKE` without a wildcard is simplified to `=`.)
            let scanned = condition.replace(" = '", " LIKE '%");
            let sql = format!("SELECT count(*) FROM hep_1 WHERE {window} AND {scanned}");
            assert_eq!(count(&e, &sql).await, rows, "{scanned}");
        }
    }
}

/// Rows are ordered by minute first, so each row group of a file holds a
/// stretch of time. Whatever form a window takes, the row groups it covers
/// are read without its filter, those it misses are not read, and only those
/// it cuts are filtered; the answers are those of a plain comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_filter_only_the_row_groups_they_cut() {
    let l = lake();
    let hour = 3_600_000_000i64;
    let base = micros("2025-02-08T19:00:00");
    // Eight ingest time slices (8192 rows each) of 7.5 minutes, one file.
    let n = 8 * 8192;
    let times: Vec<i64> = (0..n).map(|i| base + i * hour / n).collect();
    let msgs: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, t)| sip(i / 7, i % 7, *t))
        .collect();
    write(&l.store, &msgs).await;
    let e = engine(&l.store);
    let rows = |a: i64, b: i64| times.iter().filter(|t| (a..=b).contains(*t)).count() as i64;
    let m = |min: i64| base + min * 60_000_000;
    let s = 1_000_000;
    // The hour as people write it: only the slice holding 19:59:59.x is cut.
    let hour_forms = [
        "time >= '2025-02-08T19:00:00' AND time <= '2025-02-08T19:59:59'",
        "time BETWEEN '2025-02-08 19:00:00' AND '2025-02-08 19:59:59'",
        "time >= '2025-02-08T20:00:00+01:00' AND time <= '2025-02-08T20:59:59+01:00'",
        "time >= to_timestamp(1739041200) AND time <= to_timestamp(1739041200 + 3599)",
    ]
    .map(|w| (w, rows(base, m(60) - s), (7, 1, 0)));
    for (window, expected, (inside, cut, outside)) in hour_forms.into_iter().chain([
        // Ten minutes inside the hour: two slices cut, the rest not read.
        (
            "time >= '2025-02-08T19:10:00Z' AND time < '2025-02-08T19:20:00Z'",
            rows(m(10), m(20) - 1),
            (0, 2, 6),
        ),
        // Two slices and a half: the whole ones unfiltered.
        (
            "date_trunc('minute', time) BETWEEN '2025-02-08T19:15:00' AND '2025-02-08T19:33:00'",
            rows(m(15), m(34) - 1),
            (2, 1, 5),
        ),
    ]) {
        let before = e.cache_stats().row_groups;
        let got = count(&e, &format!("SELECT count(*) FROM hep_1 WHERE {window}")).await;
        let after = e.cache_stats().row_groups;
        assert_eq!(got, expected, "{window}");
        assert_eq!(
            (
                after.inside - before.inside,
                after.cut - before.cut,
                after.outside - before.outside
            ),
            (inside, cut, outside),
            "{window}"
        );
    }
    // A window relative to now, over rows written a minute ago.
    let l = lake();
    let t = now() - 60_000_000;
    write(&l.store, &[sip(1, 0, t), sip(2, 0, t - 2 * hour)]).await;
    let e = engine(&l.store);
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM hep_1 WHERE time > now() - interval '5 minutes'"
        )
        .await,
        1
    );
}
