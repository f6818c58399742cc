//! How the relay meets Kinesis errors: one that no retry gets past (a
//! missing stream) stops the start, or stops the shipping into the spool
//! with a log line and a gauge; one that may pass (an endpoint that does not
//! answer) is retried and spooled, never refused. The relay binary, against
//! LocalStack and a stopped endpoint.
use std::collections::HashSet;

use crate::crash::{new_stream, packets, relay_command, send_tcp, start};

fn relay_output(stream: &str, kinesis: &str) -> std::process::Output {
    let spool = tempfile::tempdir().unwrap();
    relay_command(spool.path(), stream, kinesis)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs LocalStack: run ./scripts/test"]
fn a_missing_stream_stops_the_start_with_a_message() {
    e2e::aws_env();
    let stream = e2e::unique("no-such-stream");
    let out = relay_output(&stream, &e2e::endpoint());
    assert!(!out.status.success(), "started without its stream");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Kinesis stream {stream:?} cannot be written"))
            && err.contains("ResourceNotFoundException"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening"), "it listened: {stdout}");
}

/// Nothing listens on port 9: connection refused is retried, and the
/// batches spool; the relay never calls it permanent.
#[test]
fn a_stopped_endpoint_is_retried_and_spooled_not_refused() {
    let spool = tempfile::tempdir().unwrap();
    let relay = start(spool.path(), "s", "http://127.0.0.1:9");
    let burst = packets(1, 10);
    send_tcp(relay.tcp, &burst);
    relay.wait("the burst spooled", |r| {
        r.metric("spooled_batches_total") > 0 && r.metric("queued_bytes") == 0
    });
    assert!(relay.metric("put_retries_total") > 0);
    assert_eq!(relay.metric("permanent_errors_total"), 0);
    assert_eq!(relay.metric("shipping_blocked"), 0);
    assert_eq!(relay.metric("lost_records_total"), 0);
    relay.kill9();
}

/// The stream deleted under a running relay: the next put is refused for
/// good, so it is not retried; batches go to the spool, the gauge says
/// why. Once the stream is back, the spool drains into it.
#[test]
#[ignore = "needs LocalStack: run ./scripts/test"]
fn a_stream_deleted_under_the_relay_stops_shipping_into_the_spool() {
    let (rt, client, stream) = new_stream("hep-deleted");
    let spool = tempfile::tempdir().unwrap();
    let relay = start(spool.path(), &stream, &e2e::endpoint());
    let first = packets(1, 10);
    send_tcp(relay.tcp, &first);
    relay.wait("the first burst put", |r| {
        r.metric("records_put_total") > 0
            && r.metric("queued_bytes") == 0
            && r.metric("open_record_messages") == 0
    });

    rt.block_on(e2e::delete_stream(&client, &stream));
    let retries = relay.metric("put_retries_total");
    let second = packets(2, 10);
    send_tcp(relay.tcp, &second);
    relay.wait("shipping blocked, the burst spooled", |r| {
        r.metric("shipping_blocked") == 1
            && r.metric("spooled_batches_total") > 0
            && r.metric("queued_bytes") == 0
            && r.metric("open_record_messages") == 0
    });
    assert!(relay.metric("permanent_errors_total") >= 1);
    assert_eq!(
        relay.metric("put_retries_total"),
        retries,
        "a permanent error is not retried"
    );
    assert_eq!(relay.metric("lost_records_total"), 0);

    // The stream is back (re-created empty): the probe finds it, the spool drains.
    rt.block_on(e2e::create_stream(&client, &stream, 1));
    relay.wait("the spool drained", |r| {
        r.metric("spool_bytes") == 0 && r.metric("shipping_blocked") == 0
    });
    relay.kill9();
    let mut seen = HashSet::new();
    for e in rt.block_on(e2e::read_stream(&client, &stream)) {
        for r in &e.records {
            seen.extend(kinesis_record::messages(&r.kinesis.data.0).unwrap());
        }
    }
    let missing = second.iter().filter(|p| !seen.contains(*p)).count();
    assert_eq!(
        missing,
        0,
        "of {} messages sent while blocked",
        second.len()
    );
}
