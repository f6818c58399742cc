//! The series heplify-server derives from captured traffic, computed the same
//! way, so the Grafana dashboards and alert rules built on heplify-server work
//! on HEPop: `heplify_packets_total`, `heplify_packets_size`,
//! `heplify_method_response`, `heplify_reason_isup_total`, `heplify_kpi_srd`,
//! `heplify_kpi_rrd` and `heplify_rtcp_{fraction_lost,packets_lost,jitter,dlsr}`.
//!
//! Pure: fed decoded HEP messages in arrival order, read as [`Series`] and
//! rendered as Prometheus text ([`CaptureMetrics::prometheus`]) or as
//! CloudWatch embedded metric format ([`emf::Emf`]). Every label set is
//! bounded whatever a sender puts in its packets: HEP types (256), capture
//! node ids (the first [`MAX_NODES`], later ones `other`), SIP methods and
//! status codes, Q.850 causes. Users, addresses and Call-IDs never become
//! labels.
pub mod emf;
mod rtcp;
pub mod sip;

use std::collections::BTreeMap;
use std::fmt::Write;

use hep::HepMessage;
use hep::sip::SipFields;

/// Distinct `node_id` labels; messages of further capture nodes count as `other`.
pub const MAX_NODES: usize = 64;

/// A capture node's label: its HEP capture id, or `other` past [`MAX_NODES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Id(u32),
    Other,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Id(id) => write!(f, "{id}"),
            Node::Other => f.write_str("other"),
        }
    }
}

/// heplify-server's name for a HEP payload type.
fn type_label(proto_type: u8) -> String {
    match proto_type {
        1 => "sip".into(),
        5 => "rtcp".into(),
        38 => "horaclifix".into(),
        100 => "log".into(),
        t => t.to_string(),
    }
}

/// Whether a series only grows (a counter) or is the latest value (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its samples, each a label set and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PacketCount {
    total: u64,
    last_size: u64,
}

/// Everything heplify-server would count of the traffic seen so far.
#[derive(Debug, Default)]
pub struct CaptureMetrics {
    nodes: BTreeMap<u32, ()>,
    packets: BTreeMap<u8, PacketCount>,
    sip: sip::SipMetrics,
    /// Q.850 cause (1-127) from `Reason` headers, by node.
    reason_isup: BTreeMap<(Node, u8), u64>,
    rtcp: BTreeMap<Node, rtcp::LastReport>,
}

impl CaptureMetrics {
    fn node(&mut self, capture_id: u32) -> Node {
        if self.nodes.contains_key(&capture_id) {
            return Node::Id(capture_id);
        }
        if self.nodes.len() < MAX_NODES {
            self.nodes.insert(capture_id, ());
            return Node::Id(capture_id);
        }
        Node::Other
    }

    /// Counts one decoded message.
    pub fn observe(&mut self, m: &HepMessage) {
        if m.proto_type == 1 {
            self.observe_parsed(m, Some(&hep::sip::extract(&m.payload)));
        } else {
            self.observe_parsed(m, None);
        }
    }

    /// [`Self::observe`] with the SIP fields already extracted from a SIP
    /// message's payload (the writer extracts them for its rows).
    pub fn observe_parsed(&mut self, m: &HepMessage, sip: Option<&SipFields<'_>>) {
        let p = self.packets.entry(m.proto_type).or_default();
        p.total += 1;
        p.last_size = m.payload.len() as u64;
        let node = self.node(m.capture_id);
        match m.proto_type {
            1 => {
                let Some(fields) = sip else { return };
                self.sip.observe(
                    node,
                    sip::Observed {
                        time_micros: m.time_micros(),
                        src_ip: m.src_ip,
                        dst_ip: m.dst_ip,
                        sip: fields,
                    },
                );
                let ends_something = matches!(fields.status, Some(300..))
                    || fields.method.as_deref().is_some_and(|x| {
                        x.eq_ignore_ascii_case("BYE") || x.eq_ignore_ascii_case("CANCEL")
                    });
                if ends_something && let Some(cause) = sip::q850_cause(&m.payload) {
                    *self.reason_isup.entry((node, cause)).or_insert(0) += 1;
                }
            }
            5 => {
                if let Some(r) = rtcp::LastReport::from_json(&m.payload) {
                    self.rtcp.insert(node, r);
                }
            }
            _ => {}
        }
    }

    /// The SIP part, for callers that read counts directly.
    pub fn sip(&self) -> &sip::SipMetrics {
        &self.sip
    }

    /// Every family, in a stable order; families without samples included
    /// (their HELP and TYPE tell a scraper they exist).
    pub fn series(&self) -> Vec<Series> {
        let label = |pairs: &[(&'static str, String)]| pairs.to_vec();
        let mut out = Vec::new();
        out.push(Series {
            name: "heplify_packets_total",
            help: "Total packets by HEP type",
            kind: Kind::Counter,
            samples: self
                .packets
                .iter()
                .map(|(t, p)| (label(&[("type", type_label(*t))]), p.total as f64))
                .collect(),
        });
        out.push(Series {
            name: "heplify_packets_size",
            help: "Packet size by HEP type",
            kind: Kind::Gauge,
            samples: self
                .packets
                .iter()
                .map(|(t, p)| (label(&[("type", type_label(*t))]), p.last_size as f64))
                .collect(),
        });
        out.push(Series {
            name: "heplify_method_response",
            help: "SIP method and response counter",
            kind: Kind::Counter,
            samples: self
                .sip
                .method_responses()
                .map(|(node, r, m, n)| {
                    (
                        label(&[
                            ("target_name", String::new()),
                            ("direction", String::new()),
                            ("node_id", node.to_string()),
                            ("response", r.to_string()),
                            ("method", m.to_string()),
                        ]),
                        n as f64,
                    )
                })
                .collect(),
        });
        out.push(Series {
            name: "heplify_reason_isup_total",
            help: "ISUP Q.850 cause from reason header",
            kind: Kind::Counter,
            samples: self
                .reason_isup
                .iter()
                .map(|((node, cause), n)| {
                    (
                        label(&[("cause", cause.to_string()), ("node_id", node.to_string())]),
                        *n as f64,
                    )
                })
                .collect(),
        });
        for (name, help, v) in [
            (
                "heplify_kpi_srd",
                "SIP Session Request Delay KPI",
                self.sip.srd_nanos,
            ),
            (
                "heplify_kpi_rrd",
                "SIP Registration Request Delay",
                self.sip.rrd_nanos,
            ),
        ] {
            out.push(Series {
                name,
                help,
                kind: Kind::Gauge,
                samples: v
                    .map(|v| {
                        (
                            label(&[
                                ("src_target_name", String::new()),
                                ("dst_target_name", String::new()),
                            ]),
                            v as f64,
                        )
                    })
                    .into_iter()
                    .collect(),
            });
        }
        for (name, help, pick) in rtcp::GAUGES {
            out.push(Series {
                name,
                help,
                kind: Kind::Gauge,
                samples: self
                    .rtcp
                    .iter()
                    .map(|(node, r)| (label(&[("node_id", node.to_string())]), pick(r)))
                    .collect(),
            });
        }
        out
    }

    /// Prometheus text exposition (version 0.0.4) of [`Self::series`].
    pub fn prometheus(&self, out: &mut String) {
        for s in self.series() {
            let kind = match s.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {kind}",
                s.name, s.help, s.name
            );
            for (labels, v) in &s.samples {
                out.push_str(s.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(val));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {v}");
            }
        }
    }
}

/// Label values are from bounded sets of plain text; escaping keeps the
/// exposition valid should one ever hold a quote or backslash.
fn escape_label(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['"', '\\', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hep::sample::Call;

    #[test]
    fn packets_count_by_type_and_nodes_stay_bounded() {
        let mut m = CaptureMetrics::default();
        let call = Call::new(1, 1);
        let msgs = call.all(1_700_000_000_000_000);
        for msg in &msgs {
            m.observe(msg);
        }
        let mut text = String::new();
        m.prometheus(&mut text);
        assert!(
            text.contains("heplify_packets_total{type=\"sip\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("heplify_packets_total{type=\"rtcp\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("heplify_packets_total{type=\"log\"} 1\n"),
            "{text}"
        );
        // The second report's first block: packets_lost 400 % 3, ia_jitter 400 % 17.
        assert!(
            text.contains("heplify_rtcp_packets_lost{node_id=\"2001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("heplify_rtcp_jitter{node_id=\"2001\"} 9\n"),
            "{text}"
        );
        assert!(text.contains(
            "heplify_method_response{target_name=\"\",direction=\"\",node_id=\"2001\",response=\"200\",method=\"INVITE\"} 1\n"
        ), "{text}");

        // A thousand capture ids make at most MAX_NODES + 1 node labels.
        let report = msgs.iter().find(|m| m.proto_type == 5).unwrap();
        for id in 0..1000u32 {
            let mut msg = report.clone();
            msg.capture_id = id;
            m.observe(&msg);
        }
        let nodes: std::collections::BTreeSet<String> = m
            .series()
            .iter()
            .flat_map(|s| s.samples.iter())
            .flat_map(|(l, _)| l.iter())
            .filter(|(k, _)| *k == "node_id")
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(nodes.len(), MAX_NODES + 1, "{nodes:?}");
        assert!(nodes.contains("other"));
    }

    #[test]
    fn q850_causes_of_failed_calls_are_counted() {
        let mut m = CaptureMetrics::default();
        let mut msg = Call::new(1, 2).sip_flow(0)[0].clone();
        msg.payload = b"SIP/2.0 503 Service Unavailable\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nReason: Q.850;cause=34;text=\"No circuit\"\r\n\r\n".to_vec();
        m.observe(&msg);
        let mut text = String::new();
        m.prometheus(&mut text);
        assert!(
            text.contains("heplify_reason_isup_total{cause=\"34\",node_id=\"2001\"} 1\n"),
            "{text}"
        );
    }
}
