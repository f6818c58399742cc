//! [`CaptureMetrics`] as CloudWatch embedded metric format: JSON lines a
//! Lambda prints to its log, which CloudWatch turns into metrics with no API
//! call. Counters are reported as what they grew by since the last report,
//! gauges when they change; labels with a value become dimensions.
use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::{CaptureMetrics, Kind};

/// What was last reported of each sample, to report only what changed.
#[derive(Debug)]
pub struct Emf {
    namespace: String,
    reported: HashMap<String, f64>,
}

impl Emf {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            reported: HashMap::new(),
        }
    }

    /// One JSON document per sample that changed since the last call.
    pub fn report(&mut self, metrics: &CaptureMetrics, timestamp_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for s in metrics.series() {
            for (labels, v) in &s.samples {
                let key = format!("{}{labels:?}", s.name);
                let before = self.reported.insert(key, *v);
                let value = match s.kind {
                    Kind::Counter => v - before.unwrap_or(0.0),
                    Kind::Gauge if before == Some(*v) => continue,
                    Kind::Gauge => *v,
                };
                if s.kind == Kind::Counter && value == 0.0 {
                    continue;
                }
                let mut doc = Map::new();
                let dims: Vec<&str> = labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| {
                        doc.insert((*k).to_string(), Value::from(v.as_str()));
                        *k
                    })
                    .collect();
                let unit = match s.kind {
                    Kind::Counter => "Count",
                    Kind::Gauge => "None",
                };
                doc.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": self.namespace,
                            "Dimensions": [dims],
                            "Metrics": [{"Name": s.name, "Unit": unit}],
                        }],
                    }),
                );
                doc.insert(s.name.into(), json!(value));
                out.push(Value::Object(doc).to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hep::sample::Call;

    #[test]
    fn counters_report_their_growth_and_gauges_their_changes() {
        let mut m = CaptureMetrics::default();
        let mut emf = Emf::new("HEPop");
        for msg in Call::new(7, 1).all(1_700_000_000_000_000) {
            m.observe(&msg);
        }
        let first = emf.report(&m, 1_700_000_000_000);
        let doc = first
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|d| d.get("heplify_packets_total").is_some() && d["type"] == "sip")
            .expect("a packets document");
        assert_eq!(doc["heplify_packets_total"], 7.0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["type"]])
        );
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "HEPop");
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000i64);
        // Empty labels (heplify's target_name, direction) are not dimensions.
        let mr = first
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|d| d.get("heplify_method_response").is_some())
            .unwrap();
        assert_eq!(
            mr["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["node_id", "response", "method"]])
        );

        // Nothing new: nothing reported. One more call: its growth only.
        assert!(emf.report(&m, 1).is_empty());
        for msg in Call::new(7, 2).sip_flow(1_700_000_100_000_000) {
            m.observe(&msg);
        }
        let second: Vec<Value> = emf
            .report(&m, 2)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let sip = second
            .iter()
            .find(|d| d.get("heplify_packets_total").is_some())
            .unwrap();
        assert_eq!(sip["heplify_packets_total"], 7.0);
        assert!(
            second
                .iter()
                .all(|d| d.get("heplify_rtcp_jitter").is_none())
        );
    }
}
