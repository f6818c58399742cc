//! Realistic synthetic traffic: SIP call flows with SDP, RTCP reports, log
//! lines. Used by `hepop send`, the benchmarks and the tests, so all three
//! exercise the same shapes of message an operator's agents send.
use std::net::{IpAddr, Ipv4Addr};

use crate::HepMessage;

/// Deterministic 64-bit mix (splitmix64): unique-looking ids without a RNG dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One step of a SIP flow: offset (µs), from the caller?, first line, CSeq method, To tag?, SDP body.
type FlowStep<'a> = (i64, bool, String, &'a str, bool, Option<String>);

/// One call's identity: endpoints, users and ids.
#[derive(Debug, Clone)]
pub struct Call {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub uac: Ipv4Addr,
    pub uas: Ipv4Addr,
    from_tag: String,
    to_tag: String,
    branch: u64,
}

impl Call {
    /// Call number `n` of run `run` (e.g. the sender's start time): distinct runs never share Call-IDs.
    pub fn new(run: u64, n: u64) -> Self {
        let h = mix(run ^ mix(n));
        let ip = |x: u64| {
            Ipv4Addr::new(
                10,
                (x >> 8) as u8,
                (x >> 16) as u8,
                1 + (x >> 24) as u8 % 250,
            )
        };
        Self {
            call_id: format!("{:016x}@{}", h, ip(h)),
            caller: format!("+1555{:07}", h % 10_000_000),
            callee: format!("+1666{:07}", (h >> 24) % 10_000_000),
            uac: ip(h),
            uas: ip(h >> 32),
            from_tag: format!("{:08x}", h as u32),
            to_tag: format!("{:08x}", (h >> 32) as u32),
            branch: mix(h),
        }
    }

    fn sdp(&self, ip: Ipv4Addr, port: u16) -> String {
        format!(
            "v=0\r\no=- {b} {b} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            b = self.branch % 100_000
        )
    }

    fn sip(
        &self,
        first_line: &str,
        cseq: &str,
        to_tag: bool,
        from_uac: bool,
        body: Option<String>,
    ) -> String {
        let (via_ip, contact_ip) = if from_uac {
            (self.uac, self.uac)
        } else {
            (self.uac, self.uas)
        };
        let to_tag = if to_tag {
            format!(";tag={}", self.to_tag)
        } else {
            String::new()
        };
        let body = body.unwrap_or_default();
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{first_line}\r\nVia: SIP/2.0/UDP {via_ip}:5060;branch=z9hG4bK{b:x};rport\r\nMax-Forwards: 70\r\n\
From: \"{caller}\" <sip:{caller}@{uac}>;tag={ft}\r\nTo: <sip:{callee}@{uas}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n\
Contact: <sip:{caller}@{contact_ip}:5060>\r\nUser-Agent: hepop-send/1.0\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n{ctype}Content-Length: {len}\r\n\r\n{body}",
            b = self.branch,
            caller = self.caller,
            callee = self.callee,
            uac = self.uac,
            uas = self.uas,
            ft = self.from_tag,
            cid = self.call_id,
            len = body.len(),
        )
    }

    fn hep(
        &self,
        proto_type: u8,
        from_uac: bool,
        t: i64,
        payload: String,
        ports: (u16, u16),
    ) -> HepMessage {
        let (src, dst) = if from_uac {
            (self.uac, self.uas)
        } else {
            (self.uas, self.uac)
        };
        HepMessage {
            version: 3,
            ip_family: crate::ip_family::IPV4,
            protocol: 17,
            src_ip: Some(IpAddr::V4(src)),
            dst_ip: Some(IpAddr::V4(dst)),
            src_port: ports.0,
            dst_port: ports.1,
            time_sec: (t.div_euclid(1_000_000)) as u32,
            time_usec: (t.rem_euclid(1_000_000)) as u32,
            proto_type,
            capture_id: 2001,
            capture_pass: Some("myHep".into()),
            payload: payload.into_bytes(),
            correlation_id: (proto_type != 1).then(|| self.call_id.clone()),
            vlan: None,
            node_name: Some("hepop-send".into()),
            keep_alive: None,
            original_time_micros: None,
        }
    }

    fn ruri(&self) -> String {
        format!("sip:{}@{}", self.callee, self.uas)
    }

    /// INVITE (SDP) at 0, and 100 Trying back 2 ms later: how every generated call opens.
    fn opening(&self) -> Vec<FlowStep<'static>> {
        vec![
            (
                0,
                true,
                format!("INVITE {} SIP/2.0", self.ruri()),
                "1 INVITE",
                false,
                Some(self.sdp(self.uac, 16_000)),
            ),
            (
                2_000,
                false,
                "SIP/2.0 100 Trying".into(),
                "1 INVITE",
                false,
                None,
            ),
        ]
    }

    /// INVITE (SDP), 100, 180, 200 (SDP), ACK, BYE, 200: seven messages, 1 ms to 2 s apart.
    pub fn sip_flow(&self, start_micros: i64) -> Vec<HepMessage> {
        let ruri = self.ruri();
        let mut steps = self.opening();
        steps.extend([
            (
                40_000,
                false,
                "SIP/2.0 180 Ringing".into(),
                "1 INVITE",
                true,
                None,
            ),
            (
                2_000_000,
                false,
                "SIP/2.0 200 OK".into(),
                "1 INVITE",
                true,
                Some(self.sdp(self.uas, 20_000)),
            ),
            (
                2_010_000,
                true,
                format!("ACK {ruri} SIP/2.0"),
                "1 ACK",
                true,
                None,
            ),
            (
                9_000_000,
                true,
                format!("BYE {ruri} SIP/2.0"),
                "2 BYE",
                true,
                None,
            ),
            (
                9_020_000,
                false,
                "SIP/2.0 200 OK".into(),
                "2 BYE",
                true,
                None,
            ),
        ]);
        self.flow(start_micros, steps)
    }

    /// An unanswered call: INVITE (SDP), 100, then `status` (e.g. `486 Busy Here`)
    /// 40 ms later, and the caller's ACK: four messages.
    pub fn failed_flow(&self, start_micros: i64, status: &str) -> Vec<HepMessage> {
        let mut steps = self.opening();
        steps.extend([
            (
                40_000,
                false,
                format!("SIP/2.0 {status}"),
                "1 INVITE",
                true,
                None,
            ),
            (
                41_000,
                true,
                format!("ACK {} SIP/2.0", self.ruri()),
                "1 ACK",
                true,
                None,
            ),
        ]);
        self.flow(start_micros, steps)
    }

    fn flow(&self, start_micros: i64, steps: Vec<FlowStep>) -> Vec<HepMessage> {
        steps
            .into_iter()
            .map(|(dt, from_uac, line, cseq, tt, body)| {
                let payload = self.sip(&line, cseq, tt, from_uac, body);
                self.hep(1, from_uac, start_micros + dt, payload, (5060, 5060))
            })
            .collect()
    }

    /// An RTCP sender report as heplify sends it (JSON, HEP type 5).
    pub fn rtcp_report(&self, t: i64, seq: u32) -> HepMessage {
        let payload = format!(
            r#"{{"sender_information":{{"ntp_timestamp_sec":{s},"ntp_timestamp_usec":{u},"rtp_timestamp":{r},"packets":{p},"octets":{o}}},"ssrc":{ssrc},"type":200,"report_count":1,"report_blocks":[{{"source_ssrc":{ssrc2},"fraction_lost":0,"packets_lost":{lost},"highest_seq_no":{seq},"ia_jitter":{j},"lsr":0,"dlsr":0}}],"report_blocks_xr":{{}},"sdes_ssrc":{ssrc}}}"#,
            s = t / 1_000_000,
            u = t % 1_000_000,
            r = seq * 160,
            p = seq,
            o = seq * 172,
            ssrc = self.branch as u32,
            ssrc2 = (self.branch >> 32) as u32,
            lost = seq % 3,
            j = seq % 17,
        );
        self.hep(5, true, t, payload, (16_001, 20_001))
    }

    /// A proxy log line (HEP type 100).
    pub fn log_line(&self, t: i64) -> HepMessage {
        let payload = format!(
            "NOTICE: <script>: call {} from {} to {} routed to {}",
            self.call_id, self.caller, self.callee, self.uas
        );
        self.hep(100, true, t, payload, (5060, 5060))
    }

    /// Everything one call produces: the SIP flow, two RTCP reports, one log line.
    pub fn all(&self, start_micros: i64) -> Vec<HepMessage> {
        let mut v = self.sip_flow(start_micros);
        v.push(self.rtcp_report(start_micros + 5_000_000, 250));
        v.push(self.rtcp_report(start_micros + 8_000_000, 400));
        v.push(self.log_line(start_micros + 1_000));
        v.sort_by_key(HepMessage::time_micros);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_extract_and_roundtrip() {
        let c = Call::new(1, 2);
        let msgs = c.all(1_700_000_000_000_000);
        assert_eq!(msgs.len(), 10);
        for m in &msgs {
            assert_eq!(&crate::decode(&crate::encode_v3(m).unwrap()).unwrap(), m);
        }
        let invite = crate::sip::extract(&msgs[0].payload);
        assert_eq!(invite.method.as_deref(), Some("INVITE"));
        assert_eq!(invite.call_id.as_deref(), Some(c.call_id.as_str()));
        assert_eq!(invite.from_user.as_deref(), Some(c.caller.as_str()));
        assert_eq!(invite.ruri_user.as_deref(), Some(c.callee.as_str()));
        assert_ne!(Call::new(1, 2).call_id, Call::new(2, 2).call_id);
        assert_ne!(Call::new(1, 2).call_id, Call::new(1, 3).call_id);
    }
}
