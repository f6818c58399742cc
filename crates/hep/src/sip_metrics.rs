//! SIP counters and delays computed the way heplify-server computes them, so
//! the Grafana dashboards and alert rules built on its series work on HEPop's
//! `/metrics`. Pure: fed SIP messages in arrival order, read as a snapshot,
//! bounded in memory whatever the traffic.
//!
//! - `heplify_method_response{response,method}`: `response` is the first
//!   line's method or status code, `method` the CSeq method; each (Call-ID,
//!   response, method) counts once in ten minutes, so retransmissions and a
//!   message captured at both ends of a link count once.
//! - `heplify_kpi_srd` / `heplify_kpi_rrd`: nanoseconds from the first INVITE
//!   (REGISTER) of a Call-ID sent by an address to the first 18x or 200 answer
//!   to that address (the last value seen, a gauge, as heplify-server keeps it).
//!
//! Labels are bounded: known request methods, status codes 100-699, anything
//! else `other`; node labels at most [`MAX_NODES`]. Users, IPs and Call-IDs
//! never become labels.
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::sip::SipFields;

/// How long a Call-ID's message kind counts as seen, and a request waits for
/// its answer (heplify-server's cache lifetime).
pub const REMEMBER_MICROS: i64 = 600 * 1_000_000;
/// At most this many Call-ID entries are remembered; the oldest go first.
pub const MAX_REMEMBERED: usize = 1 << 20;
/// Distinct `node_id` labels; further capture nodes are counted as `other`.
pub const MAX_NODES: usize = 64;

const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// A label value from a bounded set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    Method(&'static str),
    Status(u16),
    Other,
}

impl Label {
    fn method(m: &str) -> Label {
        METHODS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(m))
            .map_or(Label::Other, |k| Label::Method(k))
    }

    fn status(s: u16) -> Label {
        match s {
            100..=699 => Label::Status(s),
            _ => Label::Other,
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Method(m) => f.write_str(m),
            Label::Status(s) => write!(f, "{s}"),
            Label::Other => f.write_str("other"),
        }
    }
}

/// Keys remembered for [`REMEMBER_MICROS`], at most [`MAX_REMEMBERED`].
#[derive(Debug, Default)]
struct Recent {
    at: HashMap<u64, i64>,
    order: VecDeque<(i64, u64)>,
}

impl Recent {
    fn expire(&mut self, now: i64) {
        while let Some(&(t, k)) = self.order.front() {
            if now - t < REMEMBER_MICROS && self.order.len() <= MAX_REMEMBERED {
                break;
            }
            self.order.pop_front();
            if self.at.get(&k) == Some(&t) {
                self.at.remove(&k);
            }
        }
    }

    fn get(&self, k: u64) -> Option<i64> {
        self.at.get(&k).copied()
    }

    fn insert(&mut self, k: u64, t: i64) {
        self.at.insert(k, t);
        self.order.push_back((t, k));
    }

    fn remove(&mut self, k: u64) {
        self.at.remove(&k);
    }
}

fn key(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// One SIP message as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub time_micros: i64,
    pub src_ip: &'a str,
    pub dst_ip: &'a str,
    pub sip: &'a SipFields<'a>,
}

/// heplify-server's SIP series, accumulated.
#[derive(Debug, Default)]
pub struct SipMetrics {
    method_response: BTreeMap<(Label, Label), u64>,
    seen: Recent,
    waiting: Recent,
    /// Last session (INVITE) and registration request delays, nanoseconds.
    pub srd_nanos: Option<u64>,
    pub rrd_nanos: Option<u64>,
    /// How many delays were measured, for a rate beside the gauges.
    pub srd_count: u64,
    pub rrd_count: u64,
    latest: i64,
}

impl SipMetrics {
    pub fn observe(&mut self, m: Observed<'_>) {
        let (Some(call_id), Some(cseq)) = (m.sip.call_id.as_deref(), m.sip.cseq_method.as_deref())
        else {
            return;
        };
        self.latest = self.latest.max(m.time_micros);
        self.seen.expire(self.latest);
        self.waiting.expire(self.latest);
        let (first, first_text) = match (&m.sip.method, m.sip.status) {
            (Some(method), _) => (Label::method(method), method.to_ascii_uppercase()),
            (None, Some(s)) => (Label::status(s), s.to_string()),
            (None, None) => return,
        };
        let cseq_label = Label::method(cseq);
        let is_cseq = |name: &str| cseq.eq_ignore_ascii_case(name);

        // The request starts the clock once per Call-ID, keyed by its sender.
        if first == cseq_label && (is_cseq("INVITE") || is_cseq("REGISTER")) {
            let by_call = key(&["call", call_id]);
            if self.waiting.get(by_call).is_none() {
                self.waiting.insert(by_call, m.time_micros);
                self.waiting
                    .insert(key(&[m.src_ip, call_id]), m.time_micros);
            }
        }
        // The first ringing or success answer back to that sender stops it.
        if matches!(m.sip.status, Some(180..=183) | Some(200))
            && (is_cseq("INVITE") || is_cseq("REGISTER"))
        {
            let to_sender = key(&[m.dst_ip, call_id]);
            if let Some(started) = self.waiting.get(to_sender) {
                let nanos = (m.time_micros - started).max(0) as u64 * 1000;
                if is_cseq("INVITE") {
                    self.srd_nanos = Some(nanos);
                    self.srd_count += 1;
                } else {
                    self.rrd_nanos = Some(nanos);
                    self.rrd_count += 1;
                    self.waiting.remove(key(&["call", call_id]));
                }
                self.waiting.remove(to_sender);
            }
        }
        let once = key(&["seen", call_id, &first_text, &cseq.to_ascii_uppercase()]);
        if self.seen.get(once).is_none() {
            self.seen.insert(once, m.time_micros);
            *self.method_response.entry((first, cseq_label)).or_insert(0) += 1;
        }
    }

    /// `(response, method) → count`, in label order.
    pub fn method_responses(&self) -> impl Iterator<Item = (&Label, &Label, u64)> {
        self.method_response.iter().map(|((r, m), n)| (r, m, *n))
    }

    /// Call-ID entries held now (bounded by [`MAX_REMEMBERED`] each).
    pub fn remembered(&self) -> usize {
        self.seen.at.len() + self.waiting.at.len()
    }

    /// Prometheus text exposition of these series.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP heplify_method_response SIP method and response counter\n");
        out.push_str("# TYPE heplify_method_response counter\n");
        for (r, m, n) in self.method_responses() {
            let _ = writeln!(
                out,
                "heplify_method_response{{target_name=\"\",direction=\"\",node_id=\"\",response=\"{r}\",method=\"{m}\"}} {n}"
            );
        }
        for (name, help, v) in [
            (
                "heplify_kpi_srd",
                "SIP Session Request Delay KPI",
                self.srd_nanos,
            ),
            (
                "heplify_kpi_rrd",
                "SIP Registration Request Delay",
                self.rrd_nanos,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            if let Some(v) = v {
                let _ = writeln!(out, "{name}{{target_name=\"\",node_id=\"\"}} {v}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::extract;

    fn msg(first: &str, call: &str, cseq: &str) -> Vec<u8> {
        format!(
            "{first}\r\nCall-ID: {call}\r\nCSeq: 1 {cseq}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\n\r\n"
        )
        .into_bytes()
    }

    fn feed(m: &mut SipMetrics, t: i64, src: &str, dst: &str, payload: &[u8]) {
        let sip = extract(payload);
        m.observe(Observed {
            time_micros: t,
            src_ip: src,
            dst_ip: dst,
            sip: &sip,
        });
    }

    #[test]
    fn answered_and_failed_calls_count_once_each_and_srd_is_invite_to_first_ring() {
        let mut m = SipMetrics::default();
        let invite = msg("INVITE sip:b@y SIP/2.0", "c1", "INVITE");
        feed(&mut m, 1_000, "10.0.0.1", "10.0.0.2", &invite);
        // A retransmission neither counts nor restarts the clock.
        feed(&mut m, 501_000, "10.0.0.1", "10.0.0.2", &invite);
        feed(
            &mut m,
            2_000,
            "10.0.0.2",
            "10.0.0.1",
            &msg("SIP/2.0 100 Trying", "c1", "INVITE"),
        );
        feed(
            &mut m,
            41_000,
            "10.0.0.2",
            "10.0.0.1",
            &msg("SIP/2.0 180 Ringing", "c1", "INVITE"),
        );
        feed(
            &mut m,
            90_000,
            "10.0.0.2",
            "10.0.0.1",
            &msg("SIP/2.0 200 OK", "c1", "INVITE"),
        );
        feed(
            &mut m,
            1_000,
            "10.0.0.1",
            "10.0.0.2",
            &msg("INVITE sip:b@y SIP/2.0", "c2", "INVITE"),
        );
        feed(
            &mut m,
            3_000,
            "10.0.0.2",
            "10.0.0.1",
            &msg("SIP/2.0 486 Busy Here", "c2", "INVITE"),
        );
        let counts: Vec<String> = m
            .method_responses()
            .map(|(r, k, n)| format!("{r}/{k}={n}"))
            .collect();
        assert_eq!(
            counts,
            [
                "INVITE/INVITE=2",
                "100/INVITE=1",
                "180/INVITE=1",
                "200/INVITE=1",
                "486/INVITE=1"
            ]
        );
        assert_eq!(m.srd_nanos, Some(40_000_000));
        assert_eq!(m.srd_count, 1);
    }

    #[test]
    fn rrd_is_register_to_its_200_and_labels_stay_bounded() {
        let mut m = SipMetrics::default();
        feed(
            &mut m,
            0,
            "a",
            "r",
            &msg("REGISTER sip:y SIP/2.0", "r1", "REGISTER"),
        );
        feed(
            &mut m,
            7_000,
            "r",
            "a",
            &msg("SIP/2.0 200 OK", "r1", "REGISTER"),
        );
        assert_eq!(m.rrd_nanos, Some(7_000_000));
        // A thousand made-up methods (letters only, as SIP has them) make one label.
        for i in 0..1000i64 {
            let name: String = i
                .to_string()
                .bytes()
                .map(|d| (d - b'0' + b'A') as char)
                .collect();
            let method = format!("X{name} sip:y SIP/2.0");
            feed(
                &mut m,
                10_000 + i,
                "a",
                "r",
                &msg(&method, &format!("x{i}"), &format!("X{name}")),
            );
        }
        assert_eq!(
            m.method_responses()
                .filter(|(r, _, _)| **r == Label::Other)
                .count(),
            1
        );
    }

    #[test]
    fn remembered_entries_expire_after_ten_minutes_of_message_time() {
        let mut m = SipMetrics::default();
        for i in 0..100 {
            let inv = msg("INVITE sip:b@y SIP/2.0", &format!("c{i}"), "INVITE");
            feed(&mut m, i, "a", "b", &inv);
        }
        assert!(m.remembered() >= 100);
        let bye = msg("BYE sip:b@y SIP/2.0", "late", "BYE");
        feed(&mut m, REMEMBER_MICROS + 1_000, "a", "b", &bye);
        assert_eq!(m.remembered(), 1);
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("heplify_method_response{target_name=\"\",direction=\"\",node_id=\"\",response=\"INVITE\",method=\"INVITE\"} 100"), "{text}");
    }
}
