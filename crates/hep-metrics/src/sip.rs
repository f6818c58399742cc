//! SIP counters and delays computed the way heplify-server computes them.
//! Fed SIP messages in arrival order; bounded in memory whatever the traffic.
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
//! else `other`. Users, IPs and Call-IDs never become labels.
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

use hep::sip::SipFields;

use crate::Node;

/// How long a Call-ID's message kind counts as seen, and a request waits for
/// its answer (heplify-server's cache lifetime).
pub const REMEMBER_MICROS: i64 = 600 * 1_000_000;
/// At most this many Call-ID entries are remembered; the oldest go first.
pub const MAX_REMEMBERED: usize = 1 << 20;

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

/// What is remembered of a call, hashed with the metrics' own random key (so
/// crafted Call-IDs cannot aim at another call's entry).
#[derive(Hash)]
enum Key<'a> {
    /// A call whose request started a delay clock.
    Call(&'a str),
    /// The request's sender, to match the answer sent back to it.
    Sender(Option<IpAddr>, &'a str),
    /// A (first line, CSeq method) of a call already counted.
    Seen(&'a str, NoCase<'a>, NoCase<'a>),
}

/// Text hashed without regard to ASCII case, as SIP methods compare.
struct NoCase<'a>(&'a str);

impl Hash for NoCase<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // In chunks: a hasher call per byte costs more than the rest of a message.
        let mut buf = [0u8; 32];
        for chunk in self.0.as_bytes().chunks(buf.len()) {
            let upper = &mut buf[..chunk.len()];
            upper.copy_from_slice(chunk);
            upper.make_ascii_uppercase();
            h.write(upper);
        }
        h.write_u8(0xff);
    }
}

/// One SIP message as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub time_micros: i64,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub sip: &'a SipFields<'a>,
}

/// heplify-server's SIP series, accumulated.
#[derive(Debug, Default)]
pub struct SipMetrics {
    method_response: BTreeMap<(Node, Label, Label), u64>,
    seen: Recent,
    waiting: Recent,
    keys: RandomState,
    /// Last session (INVITE) and registration request delays, nanoseconds.
    pub srd_nanos: Option<u64>,
    pub rrd_nanos: Option<u64>,
    /// How many delays were measured, for a rate beside the gauges.
    pub srd_count: u64,
    pub rrd_count: u64,
    latest: i64,
}

impl SipMetrics {
    pub fn observe(&mut self, node: Node, m: Observed<'_>) {
        let (Some(call_id), Some(cseq)) = (m.sip.call_id.as_deref(), m.sip.cseq_method.as_deref())
        else {
            return;
        };
        self.latest = self.latest.max(m.time_micros);
        self.seen.expire(self.latest);
        self.waiting.expire(self.latest);
        let status_text;
        let (first, first_text) = match (&m.sip.method, m.sip.status) {
            (Some(method), _) => (Label::method(method), method.as_ref()),
            (None, Some(s)) => {
                status_text = s.to_string();
                (Label::status(s), status_text.as_str())
            }
            (None, None) => return,
        };
        let key = |k: Key<'_>| self.keys.hash_one(k);
        let cseq_label = Label::method(cseq);
        let is_cseq = |name: &str| cseq.eq_ignore_ascii_case(name);

        // The request starts the clock once per Call-ID, keyed by its sender.
        if first == cseq_label && (is_cseq("INVITE") || is_cseq("REGISTER")) {
            let by_call = key(Key::Call(call_id));
            if self.waiting.get(by_call).is_none() {
                self.waiting.insert(by_call, m.time_micros);
                self.waiting
                    .insert(key(Key::Sender(m.src_ip, call_id)), m.time_micros);
            }
        }
        // The first ringing or success answer back to that sender stops it.
        if matches!(m.sip.status, Some(180..=183) | Some(200))
            && (is_cseq("INVITE") || is_cseq("REGISTER"))
        {
            let to_sender = key(Key::Sender(m.dst_ip, call_id));
            if let Some(started) = self.waiting.get(to_sender) {
                let nanos = (m.time_micros - started).max(0) as u64 * 1000;
                if is_cseq("INVITE") {
                    self.srd_nanos = Some(nanos);
                    self.srd_count += 1;
                } else {
                    self.rrd_nanos = Some(nanos);
                    self.rrd_count += 1;
                    self.waiting.remove(key(Key::Call(call_id)));
                }
                self.waiting.remove(to_sender);
            }
        }
        let once = key(Key::Seen(call_id, NoCase(first_text), NoCase(cseq)));
        if self.seen.get(once).is_none() {
            self.seen.insert(once, m.time_micros);
            *self
                .method_response
                .entry((node, first, cseq_label))
                .or_insert(0) += 1;
        }
    }

    /// `(node, response, method) → count`, in label order.
    pub fn method_responses(&self) -> impl Iterator<Item = (&Node, &Label, &Label, u64)> {
        self.method_response
            .iter()
            .map(|((d, r, m), n)| (d, r, m, *n))
    }

    /// Call-ID entries held now (bounded by [`MAX_REMEMBERED`] each).
    pub fn remembered(&self) -> usize {
        self.seen.at.len() + self.waiting.at.len()
    }
}

/// The Q.850 cause of a `Reason: Q.850;cause=N` header (RFC 3326), 1-127.
/// Reads headers only, up to the blank line.
pub fn q850_cause(payload: &[u8]) -> Option<u8> {
    let head = payload
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(payload, |end| &payload[..end]);
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if !line[..colon].trim_ascii().eq_ignore_ascii_case(b"Reason") {
            continue;
        }
        let Ok(value) = std::str::from_utf8(&line[colon + 1..]) else {
            continue;
        };
        // One header may list several reasons: `SIP;cause=480, Q.850;cause=18`.
        for reason in value.split(',') {
            let mut parts = reason.split(';').map(str::trim);
            if !parts
                .next()
                .is_some_and(|p| p.eq_ignore_ascii_case("Q.850"))
            {
                continue;
            }
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("cause")
                {
                    return v.trim().parse().ok().filter(|c| (1..=127).contains(c));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hep::sip::extract;

    fn msg(first: &str, call: &str, cseq: &str) -> Vec<u8> {
        format!(
            "{first}\r\nCall-ID: {call}\r\nCSeq: 1 {cseq}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\n\r\n"
        )
        .into_bytes()
    }

    fn feed(m: &mut SipMetrics, t: i64, src: &str, dst: &str, payload: &[u8]) {
        let sip = extract(payload);
        let ip = |name: &str| -> Option<IpAddr> {
            // Hosts named by one letter in the tests below.
            Some(IpAddr::from([10, 0, 0, name.bytes().last().unwrap()]))
        };
        m.observe(
            Node::Id(1),
            Observed {
                time_micros: t,
                src_ip: ip(src),
                dst_ip: ip(dst),
                sip: &sip,
            },
        );
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
            .map(|(_, r, k, n)| format!("{r}/{k}={n}"))
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
                .filter(|(_, r, _, _)| **r == Label::Other)
                .count(),
            1
        );
    }

    #[test]
    fn q850_causes_are_read_from_reason_headers_only() {
        let m = |h: &str| {
            format!("SIP/2.0 480 Unavailable\r\nCall-ID: x\r\n{h}\r\n\r\nReason: Q.850;cause=9")
                .into_bytes()
        };
        assert_eq!(
            q850_cause(&m("Reason: Q.850 ;cause=17;text=\"Busy\"")),
            Some(17)
        );
        assert_eq!(
            q850_cause(&m("reason: SIP;cause=480, Q.850;cause=18")),
            Some(18)
        );
        assert_eq!(q850_cause(&m("Reason: Q.850;cause=300")), None);
        assert_eq!(q850_cause(&m("X-Reason: Q.850;cause=16")), None);
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
    }
}
