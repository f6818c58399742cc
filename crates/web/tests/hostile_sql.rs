//! Random and hostile SQL at the HTTP API: every statement kind, table
//! functions, huge literals, deep nesting, huge IN lists, cross joins,
//! garbage. Every answer is 200 or 400 (with a message) within the timeout
//! plus a little, nothing panics, and the process's peak memory stays near
//! the query pool's size (a 2 GB `repeat` would show).
#[path = "common/fuzz.rs"]
mod fuzz;
#[path = "../../lake/tests/it/support.rs"]
mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fuzz::{Lake, peak_rss_bytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(2);
const POOL: usize = 256 << 20;

fn table() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("hep_1".to_owned()),
        Just("hep_5".to_owned()),
        Just("hep_100".to_owned()),
        Just("information_schema.tables".to_owned()),
        Just("'/etc/passwd'".to_owned()),
        Just("nope".to_owned()),
        (1u64..100_000_000_000).prop_map(|n| format!("generate_series(1, {n})")),
        (1u64..100_000_000_000).prop_map(|n| format!("range({n})")),
    ]
}

fn huge_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..2_000_000_000).prop_map(|n| format!("repeat('x', {n})")),
        (1u64..2_000_000_000).prop_map(|n| format!("lpad('x', {n})")),
        (1u64..2_000_000_000).prop_map(|n| format!("rpad('y', {n}, 'ab')")),
        (1usize..3).prop_map(|k| format!(
            "replace(repeat('a', 1000000), 'a', repeat('b', {}))",
            10usize.pow(k as u32 + 2)
        )),
        Just("regexp_replace(repeat('a', 100000), '', repeat('b', 1000), 'g')".to_owned()),
        (1usize..200_000).prop_map(|n| format!("'{}'", "z".repeat(n))),
        (1usize..30)
            .prop_map(|k| format!("concat({})", vec!["repeat('q', 30000000)"; k].join(", "))),
        Just("99999999999999999999999999999999999999999".to_owned()),
        Just("CAST('nan' AS DOUBLE)".to_owned()),
    ]
}

fn nested(depth: usize, kind: u8) -> String {
    match kind % 4 {
        0 => format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth)),
        1 => format!("SELECT {}true", "NOT ".repeat(depth)),
        2 => format!(
            "SELECT * FROM {}hep_1{}",
            "(SELECT * FROM ".repeat(depth),
            ")".repeat(depth)
        ),
        _ => format!("SELECT 1{}", " + 1".repeat(depth * 20)),
    }
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        // Every statement kind the parser knows, most refused.
        prop::sample::select(vec![
            "INSERT INTO hep_1 (call_id) VALUES ('x')",
            "CREATE TABLE t AS SELECT 1",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE VIEW v AS SELECT * FROM hep_1",
            "DROP TABLE hep_1",
            "DELETE FROM hep_1",
            "UPDATE hep_1 SET call_id = 'x'",
            "COPY hep_1 TO '/tmp/hepop-stolen.csv'",
            "COPY (SELECT 1) TO '/tmp/hepop-x.parquet'",
            "SET datafusion.execution.batch_size = 1",
            "SET datafusion.runtime.memory_limit = '100G'",
            "EXPLAIN ANALYZE SELECT count(*) FROM hep_1",
            "EXPLAIN SELECT * FROM hep_1",
            "DESCRIBE hep_1",
            "SHOW TABLES",
            "SHOW ALL",
            "PREPARE p AS SELECT $1",
            "EXECUTE p(1)",
            "BEGIN",
            "CREATE FUNCTION f() RETURNS INT RETURN 1",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
            "SELECT * FROM hep_1; DROP TABLE hep_1",
            "SELECT $1",
            "",
            ";;;",
        ])
        .prop_map(str::to_owned),
        (table(), table(), table())
            .prop_map(|(a, b, c)| format!("SELECT count(*) FROM {a} a, {b} b, {c} c")),
        (table(), 0usize..3).prop_map(|(t, k)| match k {
            0 => format!("SELECT * FROM {t}"),
            1 => format!("SELECT count(*), max(length(payload)) FROM {t}"),
            _ => format!("SELECT * FROM {t} ORDER BY 1 DESC LIMIT 5"),
        }),
        huge_literal().prop_map(|e| format!("SELECT length({e}) AS n")),
        huge_literal().prop_map(|e| format!("SELECT call_id FROM hep_1 WHERE payload LIKE {e} LIMIT 1")),
        (huge_literal(), 1usize..6).prop_map(|(e, n)| {
            let cols: Vec<String> = (0..n).map(|i| format!("length({e}) AS c{i}")).collect();
            format!("SELECT {}", cols.join(", "))
        }),
        (1usize..600, any::<u8>()).prop_map(|(d, k)| nested(d, k)),
        (1usize..50_000).prop_map(|n| {
            let list: Vec<String> = (0..n).map(|i| format!("'c{i}'")).collect();
            format!("SELECT count(*) AS n FROM hep_1 WHERE call_id IN ({})", list.join(","))
        }),
        prop::collection::vec(
            prop::sample::select(vec![
                "SELECT", "*", "FROM", "hep_1", "WHERE", "(", ")", "'", "\"", ",", "UNION", "JOIN",
                "ON", "1", "NULL", "--", "/*", "*/", "\\", "\u{0}", "é", "ORDER BY", "GROUP BY",
                "generate_series(1, 1e12)", "repeat('x', 2000000000)", "LIMIT", "-1",
            ]),
            1..40,
        )
        .prop_map(|words| words.join(" ")),
        "\\PC{0,200}",
    ]
}

#[test]
fn hostile_sql_gets_200_or_400_in_time_and_memory_stays_bounded() {
    let lake = Lake::new(TIMEOUT, POOL);
    let baseline = peak_rss_bytes();

    let mut runner = TestRunner::new(Config {
        cases: 80,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::new());
    runner
        .run(&hostile(), |sql| {
            let started = Instant::now();
            let (status, body) = lake.ask(&sql);
            let took = started.elapsed();
            let shown: String = sql.chars().take(200).collect();
            prop_assert!(
                lake.wait_idle(Duration::from_secs(15)),
                "{shown}: still running"
            );
            prop_assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{status} for {shown}: {body}"
            );
            if status == StatusCode::BAD_REQUEST {
                let v: Value = serde_json::from_str(&body).unwrap();
                prop_assert!(!v["error"].as_str().unwrap_or_default().is_empty());
            }
            prop_assert!(took < TIMEOUT + Duration::from_secs(2), "{shown}: {took:?}");
            *statuses.lock().unwrap().entry(status.as_u16()).or_insert(0) += 1;
            Ok(())
        })
        .unwrap();
    // The refused statements really did nothing.
    let (status, body) =
        lake.ask("SELECT count(*) AS n FROM hep_1 WHERE time > now() - interval '1 hour'");
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"[{"n":2000}]"#));
    assert!(!std::path::Path::new("/tmp/hepop-stolen.csv").exists());
    let statuses = statuses.into_inner().unwrap();
    let grown = peak_rss_bytes().saturating_sub(baseline);
    assert!(
        grown < (POOL as u64) + (512 << 20),
        "peak memory grew {} MiB over a {} MiB pool; answers {statuses:?}",
        grown >> 20,
        POOL >> 20
    );
    assert!(statuses.contains_key(&400), "{statuses:?}");
}
