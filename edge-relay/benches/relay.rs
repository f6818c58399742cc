//! `cargo bench -p edge-relay`: the relay's per-message work on one core
//! (validate → batch → zstd record → PutRecords groups) into an in-process
//! sink, and Kinesis bytes per HEP message against raw HEP bytes.
use std::time::{Duration, Instant};

use edge_relay::batcher::{Batcher, BatcherConfig, into_puts};
use hep::sample::Call;

fn main() {
    let packets: Vec<Vec<u8>> = (0..60_000u64)
        .flat_map(|i| Call::new(5, i).all(1_764_000_000_000_000 + i as i64 * 20_000))
        .map(|m| hep::encode_v3(&m).unwrap())
        .collect();
    let raw: usize = packets.iter().map(Vec::len).sum();
    for round in 0..2 {
        let mut batcher = Batcher::new(
            BatcherConfig {
                linger: Duration::from_secs(3600),
                ..Default::default()
            },
            1,
        );
        let (mut records, mut calls, mut kinesis_bytes) = (0, 0, 0);
        let t = Instant::now();
        let now = Instant::now();
        let mut sink = |recs: Vec<edge_relay::batcher::Record>| {
            for put in into_puts(recs) {
                calls += 1;
                records += put.len();
                kinesis_bytes += put.iter().map(|r| r.size()).sum::<usize>();
            }
        };
        for p in &packets {
            // Validation, as the listener does it.
            let m = hep::decode(p).unwrap();
            std::hint::black_box(&m);
            sink(batcher.push(p, now));
        }
        sink(batcher.flush());
        let s = t.elapsed().as_secs_f64();
        println!(
            "round {round}: {:.0} msgs/s/core ({} msgs in {s:.2} s); {records} records in {calls} PutRecords; {:.1} Kinesis bytes per message vs {:.1} raw (1/{:.1})",
            packets.len() as f64 / s,
            packets.len(),
            kinesis_bytes as f64 / packets.len() as f64,
            raw as f64 / packets.len() as f64,
            raw as f64 / kinesis_bytes as f64
        );
    }
}
