//! `cargo bench -p hep`: decode, encode and SIP extraction throughput on one
//! core, over realistic traffic (SIP flows with SDP, RTCP, logs).
use std::hint::black_box;
use std::time::Instant;

use hep::sample::Call;

fn rate(label: &str, n: usize, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    let s = t.elapsed().as_secs_f64();
    println!(
        "{label:<28} {:>12.0} msgs/s  ({n} in {s:.3} s)",
        n as f64 / s
    );
}

fn main() {
    let msgs: Vec<_> = (0..30_000u64)
        .flat_map(|i| Call::new(1, i).all(1_764_000_000_000_000 + i as i64 * 1000))
        .collect();
    let packets: Vec<Vec<u8>> = msgs.iter().map(|m| hep::encode_v3(m).unwrap()).collect();
    let sip: Vec<&[u8]> = msgs
        .iter()
        .filter(|m| m.proto_type == 1)
        .map(|m| m.payload.as_slice())
        .collect();
    let bytes: usize = packets.iter().map(Vec::len).sum();
    println!(
        "{} messages, {:.0} bytes average HEP packet",
        packets.len(),
        bytes as f64 / packets.len() as f64
    );
    for round in 0..2 {
        println!("round {round}");
        rate("decode (HEPv3)", packets.len(), || {
            for p in &packets {
                black_box(hep::decode(black_box(p)).unwrap());
            }
        });
        rate("sip::extract", sip.len(), || {
            for p in &sip {
                black_box(hep::sip::extract(black_box(p)));
            }
        });
        rate("decode + extract", packets.len(), || {
            for p in &packets {
                let m = hep::decode(black_box(p)).unwrap();
                if m.proto_type == 1 {
                    black_box(hep::sip::extract(&m.payload));
                }
                black_box(m);
            }
        });
        let mut out = Vec::with_capacity(bytes);
        rate("encode (HEPv3)", msgs.len(), || {
            for m in &msgs {
                hep::encode_v3_into(black_box(m), &mut out).unwrap();
            }
        });
        let mut framer = hep::StreamFramer::new();
        rate("TCP framing (64 KiB reads)", packets.len(), || {
            let mut frames = 0;
            for chunk in out.chunks(65_536) {
                framer.push(chunk);
                while let Some(f) = framer.next_frame() {
                    black_box(f);
                    frames += 1;
                }
            }
            assert_eq!(frames, packets.len());
        });
    }
}
