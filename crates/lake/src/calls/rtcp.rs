//! Media quality from RTCP: heplify's JSON reports, by Call-ID and sender,
//! folded to the most packets lost and the worst jitter. Pure, no I/O.
use std::collections::{BTreeMap, HashMap};

use arrow::array::RecordBatch;

use super::build::{max_some, text, value};
use crate::Result;

/// The RTCP (`hep_5`) columns a record's media quality is built from: the
/// reports are heplify's JSON, correlated to the call by its Call-ID.
pub const RTCP_COLUMNS: [&str; 3] = ["correlation_id", "src_ip", "payload"];

/// What the RTCP reports sent from one address say about the media it
/// received: the most packets lost (the counter is cumulative) and the
/// worst interarrival jitter (in RTP timestamp units, as reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quality {
    pub reports: i64,
    pub lost: Option<i64>,
    pub jitter_max: Option<i64>,
}

impl Quality {
    pub(super) fn merge(&mut self, other: Quality) {
        self.reports += other.reports;
        self.lost = max_some(self.lost, other.lost);
        self.jitter_max = max_some(self.jitter_max, other.jitter_max);
    }
}

/// RTCP reports by Call-ID, then by the address that sent them.
pub type Reports = HashMap<String, BTreeMap<String, Quality>>;

#[derive(serde::Deserialize)]
struct RtcpJson {
    #[serde(default)]
    report_blocks: Vec<RtcpBlock>,
}

#[derive(serde::Deserialize)]
struct RtcpBlock {
    packets_lost: Option<f64>,
    ia_jitter: Option<f64>,
}

/// One report's quality; a report that is not heplify's JSON counts only as a report.
fn quality_of(payload: Option<&str>) -> Quality {
    let mut q = Quality {
        reports: 1,
        ..Default::default()
    };
    let Some(r) = payload.and_then(|p| serde_json::from_str::<RtcpJson>(p).ok()) else {
        return q;
    };
    for b in r.report_blocks {
        q.lost = max_some(q.lost, b.packets_lost.map(|v| v as i64));
        q.jitter_max = max_some(q.jitter_max, b.ia_jitter.map(|v| v as i64));
    }
    q
}

/// Folds every RTCP row of `batch` (see [`RTCP_COLUMNS`]) into `reports`.
pub fn fold_rtcp(reports: &mut Reports, batch: &RecordBatch) -> Result<()> {
    let (ids, src, payload) = (
        text(batch, "correlation_id")?,
        text(batch, "src_ip")?,
        text(batch, "payload")?,
    );
    for i in 0..batch.num_rows() {
        let Some(id) = value(&ids, i).filter(|v| !v.is_empty()) else {
            continue;
        };
        let q = quality_of(value(&payload, i));
        let from = value(&src, i).unwrap_or_default();
        let by_sender = match reports.get_mut(id) {
            Some(m) => m,
            None => reports.entry(id.to_owned()).or_default(),
        };
        match by_sender.get_mut(from) {
            Some(have) => have.merge(q),
            None => {
                by_sender.insert(from.to_owned(), q);
            }
        }
    }
    Ok(())
}

/// The media quality of one direction of a call, from the RTCP reports its
/// receiving side sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Direction {
    pub lost: Option<i64>,
    pub jitter_max: Option<i64>,
}

impl Direction {
    pub(super) fn add(&mut self, q: &Quality) {
        self.lost = max_some(self.lost, q.lost);
        self.jitter_max = max_some(self.jitter_max, q.jitter_max);
    }
}
