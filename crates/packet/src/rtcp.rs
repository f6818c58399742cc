//! RTCP sender and receiver reports (RFC 3550) rebuilt from the JSON that
//! heplify sends in HEP type 5:
//! `{"type":200,"ssrc":…,"sender_information":{…},"report_blocks":[{…}]}`.
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(rename = "type")]
    packet_type: u8,
    ssrc: u32,
    sender_information: Option<SenderInfo>,
    #[serde(default)]
    report_blocks: Vec<Block>,
}

#[derive(Debug, Deserialize)]
struct SenderInfo {
    ntp_timestamp_sec: u32,
    ntp_timestamp_usec: u32,
    rtp_timestamp: u32,
    packets: u32,
    octets: u32,
}

#[derive(Debug, Deserialize)]
struct Block {
    source_ssrc: u32,
    fraction_lost: u8,
    packets_lost: i32,
    highest_seq_no: u32,
    ia_jitter: u32,
    lsr: u32,
    dlsr: u32,
}

const SR: u8 = 200;
const RR: u8 = 201;

/// The RTCP packet a JSON report describes; None when it is not one (binary
/// RTCP, or a type other than SR and RR).
pub fn from_json(json: &[u8]) -> Option<Vec<u8>> {
    let r: Report = serde_json::from_slice(json).ok()?;
    let blocks = &r.report_blocks[..r.report_blocks.len().min(31)];
    let mut out = vec![0x80 | blocks.len() as u8, r.packet_type, 0, 0];
    out.extend_from_slice(&r.ssrc.to_be_bytes());
    match (r.packet_type, &r.sender_information) {
        (SR, Some(s)) => {
            // NTP: seconds since 1900 in the JSON already; the fraction from µs.
            let frac = ((u64::from(s.ntp_timestamp_usec) << 32) / 1_000_000) as u32;
            for v in [
                s.ntp_timestamp_sec,
                frac,
                s.rtp_timestamp,
                s.packets,
                s.octets,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        (RR, _) => {}
        _ => return None,
    }
    for b in blocks {
        out.extend_from_slice(&b.source_ssrc.to_be_bytes());
        // Cumulative lost: 24-bit signed, clamped.
        let lost = b.packets_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32 & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
        for v in [b.highest_seq_no, b.ia_jitter, b.lsr, b.dlsr] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    let words = (out.len() / 4 - 1) as u16;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_report_as_heplify_sends_it() {
        let json = br#"{"sender_information":{"ntp_timestamp_sec":3913000000,"ntp_timestamp_usec":500000,"rtp_timestamp":16000,"packets":100,"octets":17200},"ssrc":1234,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":5678,"fraction_lost":12,"packets_lost":-3,"highest_seq_no":400,"ia_jitter":9,"lsr":0,"dlsr":0}],"report_blocks_xr":{},"sdes_ssrc":1234}"#;
        let p = from_json(json).unwrap();
        assert_eq!(p.len(), 4 + 4 + 20 + 24);
        assert_eq!(
            &p[..4],
            &[0x81, 200, 0, 12],
            "V=2, one block, SR, 12 words after the first"
        );
        assert_eq!(u32::from_be_bytes(p[4..8].try_into().unwrap()), 1234);
        assert_eq!(
            u32::from_be_bytes(p[12..16].try_into().unwrap()),
            1 << 31,
            "half a second"
        );
        assert_eq!(u32::from_be_bytes(p[28..32].try_into().unwrap()), 5678);
        assert_eq!(p[32], 12, "fraction lost");
        assert_eq!(&p[33..36], &[0xff, 0xff, 0xfd], "-3 in 24 bits");
        assert_eq!(
            u32::from_be_bytes(p[40..44].try_into().unwrap()),
            9,
            "jitter"
        );
    }

    #[test]
    fn receiver_reports_and_what_is_not_a_report() {
        let rr = from_json(br#"{"type":201,"ssrc":1,"report_blocks":[]}"#).unwrap();
        assert_eq!(rr, [0x80, 201, 0, 1, 0, 0, 0, 1]);
        assert_eq!(from_json(br#"{"type":202,"ssrc":1}"#), None);
        assert_eq!(from_json(b"\x80\xc8\x00\x06binary"), None);
    }
}

/// The JSON heplify sends for an RTCP sender or receiver report (the first
/// SR or RR of a compound packet), fields in its order; None when the bytes
/// hold neither.
pub fn to_json(packet: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(packet.get(at..at + 4)?.try_into().ok()?))
    };
    if packet.first()? >> 6 != 2 {
        return None;
    }
    let (count, pt) = (usize::from(packet[0] & 0x1f), *packet.get(1)?);
    let ssrc = word(4)?;
    let (sender, mut at) = match pt {
        SR => {
            let usec = ((u64::from(word(12)?) * 1_000_000 + (1 << 31)) >> 32) as u32;
            (
                format!(
                    r#""sender_information":{{"ntp_timestamp_sec":{},"ntp_timestamp_usec":{usec},"rtp_timestamp":{},"packets":{},"octets":{}}},"#,
                    word(8)?,
                    word(16)?,
                    word(20)?,
                    word(24)?
                ),
                28,
            )
        }
        RR => (String::new(), 8),
        _ => return None,
    };
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let lost = word(at + 4)?;
        // 24-bit signed.
        let cumulative = ((lost << 8) as i32) >> 8;
        blocks.push(format!(
            r#"{{"source_ssrc":{},"fraction_lost":{},"packets_lost":{cumulative},"highest_seq_no":{},"ia_jitter":{},"lsr":{},"dlsr":{}}}"#,
            word(at)?,
            lost >> 24,
            word(at + 8)?,
            word(at + 12)?,
            word(at + 16)?,
            word(at + 20)?
        ));
        at += 24;
    }
    Some(format!(
        r#"{{{sender}"ssrc":{ssrc},"type":{pt},"report_count":{count},"report_blocks":[{}],"report_blocks_xr":{{}},"sdes_ssrc":{ssrc}}}"#,
        blocks.join(",")
    ))
}

#[cfg(test)]
mod round_trip {
    use super::*;

    #[test]
    fn json_to_packet_and_back_is_the_same_text() {
        let sr = r#"{"sender_information":{"ntp_timestamp_sec":1795946400,"ntp_timestamp_usec":123457,"rtp_timestamp":40000,"packets":250,"octets":43000},"ssrc":99,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":7,"fraction_lost":3,"packets_lost":-2,"highest_seq_no":250,"ia_jitter":12,"lsr":5,"dlsr":6}],"report_blocks_xr":{},"sdes_ssrc":99}"#;
        assert_eq!(
            to_json(&from_json(sr.as_bytes()).unwrap()).as_deref(),
            Some(sr)
        );
        let rr = r#"{"ssrc":1,"type":201,"report_count":0,"report_blocks":[],"report_blocks_xr":{},"sdes_ssrc":1}"#;
        assert_eq!(
            to_json(&from_json(rr.as_bytes()).unwrap()).as_deref(),
            Some(rr)
        );
        assert_eq!(to_json(b"INVITE sip:a@b SIP/2.0"), None);
        assert_eq!(to_json(&[0x80, 200, 0, 6]), None, "cut short");
    }
}
