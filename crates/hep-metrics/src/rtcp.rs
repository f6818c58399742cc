//! heplify-server's RTCP gauges: the first report block of the latest RTCP
//! report (heplify's JSON, HEP type 5) per capture node.
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct LastReport {
    #[serde(default)]
    fraction_lost: f64,
    #[serde(default)]
    packets_lost: f64,
    #[serde(default)]
    ia_jitter: f64,
    #[serde(default)]
    dlsr: f64,
}

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    report_blocks: Vec<LastReport>,
}

impl LastReport {
    /// The first report block, or None when the payload is not such a report
    /// or has no block (a goodbye, an SDES-only packet).
    pub(crate) fn from_json(payload: &[u8]) -> Option<Self> {
        let r: Report = serde_json::from_slice(payload).ok()?;
        r.report_blocks.into_iter().next()
    }
}

type Pick = fn(&LastReport) -> f64;

/// Name, help and value of each gauge, as heplify-server names them.
pub(crate) const GAUGES: [(&str, &str, Pick); 4] = [
    ("heplify_rtcp_fraction_lost", "RTCP fraction lost", |r| {
        r.fraction_lost
    }),
    ("heplify_rtcp_packets_lost", "RTCP packets lost", |r| {
        r.packets_lost
    }),
    ("heplify_rtcp_jitter", "RTCP jitter", |r| r.ia_jitter),
    ("heplify_rtcp_dlsr", "RTCP dlsr", |r| r.dlsr),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_block_is_read_and_anything_else_is_none() {
        let r = LastReport::from_json(br#"{"type":201,"report_blocks":[{"fraction_lost":12,"packets_lost":-3,"ia_jitter":9,"dlsr":65536},{"packets_lost":99}]}"#).unwrap();
        assert_eq!(
            GAUGES.map(|(_, _, pick)| pick(&r)),
            [12.0, -3.0, 9.0, 65536.0]
        );
        assert!(LastReport::from_json(br#"{"type":203,"report_blocks":[]}"#).is_none());
        assert!(LastReport::from_json(b"\x80\xc8 binary").is_none());
    }
}
