//! The lake as other engines read it: Delta tables, counted by the `deltalake`
//! Python package (an independent delta-rs build), DuckDB over its dataset
//! and Polars (`tests/delta/read.py`), before and after a compaction whose
//! replaced files are still on disk.
use crate::support::*;

#[path = "../../../../tests/delta/read_delta.rs"]
mod readers;
use readers::read_delta;

fn compact(lake: &Path, extra: &[&str]) -> Value {
    let out = run_ok(
        Command::new(BIN)
            .args(["compact", "--data"])
            .arg(lake)
            .args(extra),
        "hepop compact",
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], json!([]), "{report}");
    report
}

#[test]
fn delta_rs_duckdb_and_polars_count_each_row_once_before_and_after_compaction() {
    let srv = Server::start(&[]);
    let lake = srv.dir.as_ref().unwrap().path().to_owned();
    // Three files of 300 calls each (7 SIP messages a call), over TCP.
    for round in 1..=3u64 {
        send_over_tcp(srv.tcp, "sip", 2100);
        srv.wait_written(2100 * round);
    }
    let served = srv.count("SELECT count(*) AS n FROM hep_1");
    assert_eq!(served, 6300);
    let distinct = srv.count(
        "SELECT count(DISTINCT coalesce(call_id, '') || '|' || CAST(time AS VARCHAR) || '|' || payload) AS n FROM hep_1",
    );

    // The first run publishes the server's files as they are (young: not merged yet).
    let r = compact(&lake, &[]);
    assert_eq!(
        (r["jobs"].as_u64(), r["delta_commits"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    let before = read_delta(lake.to_str().unwrap(), "hep_1", None);
    for reader in ["deltalake", "duckdb", "polars"] {
        assert_eq!(before[reader], served, "{reader}: {before}");
    }

    // Merged, with the default grace: the replaced files stay on disk for readers mid-query.
    let r = compact(&lake, &["--compact-young-after-secs", "0"]);
    assert!(r["jobs"].as_u64() >= Some(1), "{r}");
    assert!(r["delta_files_removed"].as_u64() >= Some(3), "{r}");
    let after = read_delta(lake.to_str().unwrap(), "hep_1", None);
    for reader in ["deltalake", "duckdb", "polars"] {
        assert_eq!(after[reader], served, "{reader}: {after}");
    }
    assert_eq!(after["duckdb_distinct"], distinct, "{after}");
    assert_eq!(
        after["duckdb_raw_parquet"],
        2 * served,
        "every Parquet file under the table, Delta aside, holds the rows twice during the grace period: {after}"
    );
    assert_eq!(srv.count("SELECT count(*) AS n FROM hep_1"), served);
}

/// `hepop serve` keeps the Delta tables itself: its compactor publishes what
/// arrives, says so in /metrics, and outside readers count what it serves.
#[test]
fn serve_publishes_to_delta_and_counts_its_commits() {
    let srv = Server::start(&["--compact-every-secs", "1"]);
    let lake = srv.dir.as_ref().unwrap().path().to_owned();
    send_over_tcp(srv.tcp, "all", 2000);
    srv.wait_written(2000);
    let written_files = srv.metric("files_written");
    // Every file written so far is published once the commits pass the files' count.
    srv.wait_metric_at_least("delta_commits", 2);
    let served = srv.count("SELECT count(*) AS n FROM hep_1");
    let start = Instant::now();
    loop {
        let got = read_delta(lake.to_str().unwrap(), "hep_1", None);
        if got["deltalake"] == served && got["polars"] == served {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Delta never caught up with {served} rows ({written_files} files): {got}"
        );
        srv.wait_metric_at_least("delta_commits", srv.metric("delta_commits") + 1);
    }
    assert_eq!(srv.metric("delta_conflicts"), 0);
}

/// `hepop serve` builds the call records of the hours that settled: calls
/// captured five hours ago, in the lake when it starts, are one row each in
/// `calls`, with the delays they were made with, for its engine and for the
/// outside readers.
#[test]
fn serve_builds_the_call_records_of_settled_hours() {
    let t = chrono_now() - 5 * 3_600_000_000;
    let msgs: Vec<hep::HepMessage> = (0..20)
        .flat_map(|i| hep::sample::Call::new(31, i).sip_flow(t + i as i64 * 1_000_000))
        .collect();
    let srv = serve_compacting(&msgs);
    let lake = srv.dir.as_ref().unwrap().path().to_owned();
    srv.wait_metric_at_least("call_records_built", 20);
    assert_eq!(srv.count("SELECT count(*) AS n FROM calls"), 20);
    let exact = "SELECT count(*) AS n FROM calls \
                 WHERE pdd_ms = 40 AND setup_ms = 2000 AND duration_ms = 7000 AND messages = 7";
    assert_eq!(srv.count(exact), 20);
    let got = read_delta(lake.to_str().unwrap(), "calls", None);
    assert_eq!(
        (got["deltalake"].as_i64(), got["duckdb_distinct"].as_i64()),
        (Some(20), Some(20)),
        "{got}"
    );
}
