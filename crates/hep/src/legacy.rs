//! HEPv1 and HEPv2, the fixed-header formats Kamailio/OpenSIPS siptrace,
//! captagent and sngrep still send: version, header length, family,
//! protocol, ports (network order), addresses, and for v2 the C struct
//! `hep_timehdr` (u32 seconds, u32 microseconds, u16 capture id, 2 bytes of
//! padding: 12 bytes) in the sender's host order, little-endian on every
//! agent in practice. The payload is the rest.
//!
//! `hp_l` is not trusted: Kamailio and captagent put the fixed plus address
//! header length there, sngrep the low byte of the total length in network
//! order (usually 0). The version and family fix the header length anyway.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{DecodeError, HepMessage, ip_family};

const BASE: usize = 8;
/// sizeof(struct hep_timehdr), padding included.
const TIME: usize = 12;

pub(crate) fn decode(buf: &[u8]) -> Result<HepMessage, DecodeError> {
    if buf.len() < BASE {
        return Err(DecodeError::Truncated {
            needed: BASE,
            have: buf.len(),
        });
    }
    let version = buf[0];
    let family = buf[2];
    let addr_len = match family {
        ip_family::IPV4 => 8,
        ip_family::IPV6 => 32,
        other => return Err(DecodeError::BadFamily(other)),
    };
    let time_len = if version == 2 { TIME } else { 0 };
    let header = BASE + addr_len + time_len;
    if buf.len() < header {
        return Err(DecodeError::Truncated {
            needed: header,
            have: buf.len(),
        });
    }
    let a = &buf[BASE..BASE + addr_len];
    let (src_ip, dst_ip) = if family == ip_family::IPV4 {
        let s: [u8; 4] = a[..4].try_into().expect("length checked");
        let d: [u8; 4] = a[4..8].try_into().expect("length checked");
        (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)))
    } else {
        let s: [u8; 16] = a[..16].try_into().expect("length checked");
        let d: [u8; 16] = a[16..32].try_into().expect("length checked");
        (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
    };
    let mut msg = HepMessage {
        version,
        ip_family: family,
        protocol: buf[3],
        src_ip: Some(src_ip),
        dst_ip: Some(dst_ip),
        src_port: u16::from_be_bytes([buf[4], buf[5]]),
        dst_port: u16::from_be_bytes([buf[6], buf[7]]),
        // v1/v2 carry SIP only.
        proto_type: 1,
        ..Default::default()
    };
    if version == 2 {
        let t = &buf[BASE + addr_len..header];
        msg.time_sec = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        msg.time_usec = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        msg.capture_id = u16::from_le_bytes([t[8], t[9]]) as u32;
    }
    msg.payload = buf[header..].to_vec();
    Ok(msg)
}

/// Encodes a HEPv1/v2 datagram (tests and the sender's legacy mode).
pub fn encode_legacy(msg: &HepMessage, version: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.payload.len() + 60);
    let mut addrs = Vec::with_capacity(32);
    let family = match (msg.src_ip, msg.dst_ip) {
        (Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => {
            addrs.extend_from_slice(&s.octets());
            addrs.extend_from_slice(&d.octets());
            ip_family::IPV6
        }
        (s, d) => {
            let v4 = |ip: Option<IpAddr>| match ip {
                Some(IpAddr::V4(a)) => a.octets(),
                _ => [0; 4],
            };
            addrs.extend_from_slice(&v4(s));
            addrs.extend_from_slice(&v4(d));
            ip_family::IPV4
        }
    };
    out.push(version);
    // Kamailio's convention: fixed plus address header.
    out.push((BASE + addrs.len()) as u8);
    out.push(family);
    out.push(msg.protocol);
    out.extend_from_slice(&msg.src_port.to_be_bytes());
    out.extend_from_slice(&msg.dst_port.to_be_bytes());
    out.extend_from_slice(&addrs);
    if version == 2 {
        out.extend_from_slice(&msg.time_sec.to_le_bytes());
        out.extend_from_slice(&msg.time_usec.to_le_bytes());
        out.extend_from_slice(&(msg.capture_id as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&msg.payload);
    out
}
