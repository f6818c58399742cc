//! `cargo bench -p lake`: the ingest hot path on one core (HEP decode → SIP
//! extraction → Arrow → sorted, zstd Parquet with statistics and bloom
//! filters), and bytes on disk per stored SIP message before and after
//! compaction.
use std::time::Instant;

use hep::sample::Call;
use lake::parquet_io::{EncodeOptions, encode};
use lake::rows::BatchBuilder;

fn main() {
    // Realistic mix: per call 7 SIP, 2 RTCP, 1 log.
    let calls = 60_000u64;
    let msgs: Vec<_> = (0..calls)
        .flat_map(|i| Call::new(7, i).all(1_764_000_000_000_000 + i as i64 * 20_000))
        .collect();
    let packets: Vec<Vec<u8>> = msgs.iter().map(|m| hep::encode_v3(m).unwrap()).collect();
    let raw_sip: usize = msgs
        .iter()
        .filter(|m| m.proto_type == 1)
        .map(|m| m.payload.len())
        .sum();
    let sip_count = msgs.iter().filter(|m| m.proto_type == 1).count();
    println!(
        "{} messages ({} SIP, {:.0} bytes average SIP payload)",
        packets.len(),
        sip_count,
        raw_sip as f64 / sip_count as f64
    );

    // Files as the server cuts them: up to 100k rows per table and flush.
    let batch_rows = 100_000;
    for round in 0..2 {
        let t = Instant::now();
        let mut sip_file_bytes = 0usize;
        let mut files = 0;
        let mut sip_batches = Vec::new();
        for chunk in packets.chunks(batch_rows) {
            let mut builders: std::collections::BTreeMap<u8, BatchBuilder> = Default::default();
            for p in chunk {
                let m = hep::decode(p).unwrap();
                builders
                    .entry(m.proto_type)
                    .or_insert_with(|| BatchBuilder::new(m.proto_type))
                    .append(&m);
            }
            for (t, mut b) in builders {
                let batch = b.finish();
                let bytes = encode(std::slice::from_ref(&batch), t, EncodeOptions::INGEST).unwrap();
                files += 1;
                if t == 1 {
                    sip_file_bytes += bytes.len();
                    sip_batches.push(batch);
                }
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "round {round}: decode+extract+write {:>9.0} msgs/s/core ({} msgs, {files} files, {s:.2} s)",
            packets.len() as f64 / s,
            packets.len()
        );
        if round == 1 {
            println!(
                "ingest files:    {:>6.1} bytes per SIP message",
                sip_file_bytes as f64 / sip_count as f64
            );
            let t = Instant::now();
            let compacted = encode(&sip_batches, 1, EncodeOptions::COMPACT).unwrap();
            println!(
                "after compaction: {:>6.1} bytes per SIP message ({:.1} MB for {sip_count} messages, {:.0} raw bytes each; compaction {:.2} s)",
                compacted.len() as f64 / sip_count as f64,
                compacted.len() as f64 / 1e6,
                raw_sip as f64 / sip_count as f64,
                t.elapsed().as_secs_f64()
            );
        }
    }
}
