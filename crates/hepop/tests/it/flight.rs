//! Arrow Flight SQL against the real binary, driven by Apache Arrow's ADBC
//! Flight SQL driver (PyPI `adbc-driver-flightsql`, `tests/flight/client.py`)
//! as Grafana's Flight SQL data source and ADBC users call it.
use crate::support;

use support::*;

const TOKEN: &str = "flight-t0ken-0123456789abcdef";

#[test]
#[ignore = "needs the ADBC Flight SQL driver (tests/flight/tools.sh): run ./scripts/test"]
fn adbc_runs_statements_prepared_statements_and_catalog_calls_with_the_apis_rules() {
    let python = run_ok(
        &mut Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/flight/tools.sh"
        )),
        "installing the ADBC Flight SQL driver",
    );
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let mut srv = Server::start(&[
        "--api-token",
        TOKEN,
        "--flight-port",
        "0",
        "--query-timeout-secs",
        "3",
    ]);
    srv.token = Some(TOKEN.into());
    let flight = srv
        .flight
        .expect("the start line names the Flight SQL address");
    assert!(flight.ip().is_loopback() || srv.http.ip() == flight.ip());

    let msgs = calls(chrono_now() as u64, 5);
    let sip = msgs.iter().filter(|m| m.proto_type == 1).count() as i64;
    let call_id = String::from_utf8_lossy(&msgs[0].payload)
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: ").map(str::to_owned))
        .unwrap();
    let packets: Vec<Vec<u8>> = msgs.iter().map(|m| encode_v3(m).unwrap()).collect();
    send_udp(srv.udp, &packets);
    srv.wait_written(msgs.len() as u64);

    let out = run_ok(
        Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/flight/client.py"
            ))
            .arg(format!("grpc://{flight}"))
            .arg(TOKEN)
            .arg(&call_id),
        "the ADBC client",
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["count"], sip, "{seen}");
    assert_eq!(
        seen["flow"],
        json!(["INVITE", "100", "180", "200", "ACK", "BYE", "200"]),
        "{seen}"
    );
    assert_eq!(seen["no_rows"], json!([]));
    assert_eq!(seen["vendor_name"], "HEPop");
    let tables: Vec<&str> = seen["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["hep_1", "hep_5", "hep_100"] {
        assert!(tables.contains(&t), "{t} in {tables:?}");
    }
    let columns = seen["hep_1_columns"].to_string();
    for c in ["\"time\"", "\"call_id\"", "\"payload\""] {
        assert!(columns.contains(c), "{c} in {columns}");
    }
    assert_eq!(seen["basic"], 42);
    let said = |k: &str| seen[k].as_str().unwrap_or_default().to_owned();
    assert!(
        said("write_refused").contains("not supported") || said("write_refused").contains("DDL"),
        "{seen}"
    );
    assert!(said("hostile").to_lowercase().contains("time"), "{seen}");
    assert!(said("anonymous").contains("missing API token"), "{seen}");
    assert!(said("wrong_token").contains("invalid API token"), "{seen}");

    // The same queries on /query still answer: the Flight SQL slots were released.
    assert_eq!(srv.count("SELECT count(*) AS n FROM hep_1"), sip);
}
