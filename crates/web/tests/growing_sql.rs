//! Every way SQL can grow a string or a list, nested and combined at random:
//! chains of `||`, growing functions inside each other, many growing columns,
//! `string_agg` and `array_agg` over many rows, CTEs that double their input,
//! and the `array_*` functions (not built in: refused). Every answer is 200
//! or 400 with a message, and the process's peak memory stays within the
//! query pool and a fixed allowance. Its own process, so the peak is its own.
#[path = "common/fuzz.rs"]
mod fuzz;
#[path = "../../lake/tests/it/support.rs"]
mod support;

use std::time::Duration;

use axum::http::StatusCode;
use fuzz::{Lake, peak_rss_bytes, reset_peak_rss};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

const POOL: usize = 256 << 20;
/// What the process may hold beyond the pool: the runtime, the plan, one
/// batch being encoded, a function's output before it is counted.
const ALLOWANCE: u64 = 384 << 20;

/// A text expression over the row source `s`(`p` a SIP payload, `v` a number as text).
fn text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("p".to_owned()),
        Just("v".to_owned()),
        (1u64..5_000_000).prop_map(|n| format!("repeat('x', {n})")),
        (1u64..50_000).prop_map(|n| format!("repeat(p, {n})")),
        (1u64..10_000_000).prop_map(|n| format!("lpad(v, {n})")),
    ];
    leaf.prop_recursive(5, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..8).prop_map(|xs| xs.join(" || ")),
            prop::collection::vec(inner.clone(), 2..8)
                .prop_map(|xs| format!("concat({})", xs.join(", "))),
            (inner.clone(), 1u64..1000).prop_map(|(x, n)| format!("repeat({x}, {n})")),
            (inner.clone(), 1u64..100_000_000).prop_map(|(x, n)| format!("rpad({x}, {n}, 'ab')")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("replace({x}, 'a', {y})")),
            inner.clone().prop_map(|x| format!("upper({x})")),
            inner.clone().prop_map(|x| format!("reverse({x})")),
            (inner.clone(), inner).prop_map(|(x, y)| format!("coalesce({x}, {y})")),
        ]
    })
}

fn source() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("(SELECT payload AS p, call_id AS v FROM hep_1) s".to_owned()),
        (1u64..200_000).prop_map(|n| format!(
            "(SELECT 'INVITE sip:a@b SIP/2.0' AS p, CAST(value AS VARCHAR) AS v FROM generate_series(1, {n})) s"
        )),
    ]
}

fn growing() -> impl Strategy<Value = String> {
    prop_oneof![
        (text(), source()).prop_map(|(e, s)| format!("SELECT max(length({e})) AS n FROM {s}")),
        (text(), source()).prop_map(|(e, s)| format!("SELECT {e} AS t FROM {s} LIMIT 3")),
        (prop::collection::vec(text(), 1..12), source()).prop_map(|(es, s)| {
            let cols: Vec<String> = es
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS c{i}"))
                .collect();
            format!(
                "SELECT length(concat_ws(',', {})) AS n FROM (SELECT {} FROM {s}) t",
                {
                    (0..es.len())
                        .map(|i| format!("c{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                cols.join(", ")
            )
        }),
        (text(), text(), source())
            .prop_map(|(e, sep, s)| format!("SELECT length(string_agg({e}, {sep})) AS n FROM {s}")),
        (text(), source()).prop_map(|(e, s)| format!(
            "SELECT count(*) AS n FROM (SELECT array_agg({e}) AS a FROM {s} GROUP BY length(v)) t"
        )),
        (text(), source(), 1usize..12).prop_map(|(e, s, k)| {
            let mut sql = format!("WITH t0 AS (SELECT {e} AS x FROM {s})");
            for i in 1..=k {
                sql += &format!(", t{i} AS (SELECT x || x AS x FROM t{})", i - 1);
            }
            format!("{sql} SELECT max(length(x)) AS n FROM t{k}")
        }),
        (text(), 1u64..1_000_000).prop_map(|(e, n)| format!(
            "SELECT array_length(array_repeat({e}, {n})) AS n FROM (SELECT 'x' AS p, '1' AS v) s"
        )),
        text().prop_map(|e| format!(
            "SELECT make_array({e}, {e}) AS a FROM (SELECT 'x' AS p, '1' AS v) s"
        )),
    ]
}

#[test]
fn growing_strings_and_lists_stay_within_the_query_memory_pool() {
    let lake = Lake::new(Duration::from_secs(20), POOL);
    let baseline = peak_rss_bytes();

    let cases = std::env::var("GROWING_SQL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::new());
    // Shrinking reports the simplest failing case; the first one is the
    // query that really grew, so it is kept whole for the message.
    let first_failure = std::sync::Mutex::new(None::<String>);
    let most_grown = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&growing(), |sql| {
        reset_peak_rss();
        let (status, body) = lake.ask(&sql);
        let outcome = (|| {
            let shown: String = sql.chars().take(300).collect();
            prop_assert!(
                lake.wait_idle(Duration::from_secs(300)),
                "{shown}: still running five minutes after its answer"
            );
            prop_assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{status} for {shown}: {body}"
            );
            if status == StatusCode::BAD_REQUEST {
                let v: Value = serde_json::from_str(&body).unwrap();
                prop_assert!(!v["error"].as_str().unwrap_or_default().is_empty());
            }
            let grown = peak_rss_bytes().saturating_sub(baseline);
            most_grown.fetch_max(grown, std::sync::atomic::Ordering::Relaxed);
            prop_assert!(
                grown < POOL as u64 + ALLOWANCE,
                "peak memory grew {} MiB over a {} MiB pool after {shown}",
                grown >> 20,
                POOL >> 20
            );
            *statuses.lock().unwrap().entry(status.as_u16()).or_insert(0) += 1;
            Ok(())
        })();
        if outcome.is_err() {
            first_failure.lock().unwrap().get_or_insert_with(|| {
                format!("{sql}\n  -> {status}, peak {} MiB", peak_rss_bytes() >> 20)
            });
        }
        outcome
    });
    if let Err(e) = result {
        panic!(
            "{e}\nfirst failing case, before shrinking:\n{}",
            first_failure.lock().unwrap().take().unwrap_or_default()
        );
    }
    let statuses = statuses.into_inner().unwrap();
    eprintln!(
        "{cases} cases, answers {statuses:?}, a case's peak RSS at most {} MiB over the baseline of {} MiB, pool {} MiB",
        most_grown.into_inner() >> 20,
        baseline >> 20,
        POOL >> 20
    );
    assert!(
        statuses.contains_key(&200) && statuses.contains_key(&400),
        "{statuses:?}"
    );
}
