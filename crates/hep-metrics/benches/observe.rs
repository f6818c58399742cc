//! `cargo bench -p hep-metrics`: what counting heplify-server's series costs
//! per message on one core, over the codec bench's traffic (SIP flows with
//! SDP, RTCP JSON reports, log lines), to set beside the write path's rate.
use std::hint::black_box;
use std::time::Instant;

use hep::sample::Call;
use hep_metrics::CaptureMetrics;

fn main() {
    let msgs: Vec<_> = (0..30_000u64)
        .flat_map(|i| Call::new(1, i).all(1_764_000_000_000_000 + i as i64 * 1000))
        .collect();
    // The server's writer extracts SIP fields for its rows anyway: its cost is observe_parsed.
    let fields: Vec<_> = msgs
        .iter()
        .map(|m| (m.proto_type == 1).then(|| hep::sip::extract(&m.payload)))
        .collect();
    for round in 0..2 {
        let mut m = CaptureMetrics::default();
        let t = Instant::now();
        for msg in &msgs {
            m.observe(black_box(msg));
        }
        let s = t.elapsed().as_secs_f64();
        let mut text = String::new();
        m.prometheus(&mut text);
        println!(
            "round {round}: observe        {:>10.0} msgs/s ({} in {s:.3} s); {} Call-ID entries remembered",
            msgs.len() as f64 / s,
            msgs.len(),
            m.sip().remembered()
        );
        let mut m = CaptureMetrics::default();
        let t = Instant::now();
        for (msg, sip) in msgs.iter().zip(&fields) {
            m.observe_parsed(black_box(msg), sip.as_ref());
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "round {round}: observe_parsed {:>10.0} msgs/s",
            msgs.len() as f64 / s
        );
    }
}
