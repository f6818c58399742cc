//! HEPv3 (also "EEP1"): magic, 16-bit total length, then TLV chunks of
//! vendor id (u16), type id (u16), length (u16, header included), value.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{DecodeError, HepMessage};

const CHUNK_HEADER: usize = 6;
const HEADER: usize = 6;

mod chunk {
    pub const IP_FAMILY: u16 = 1;
    pub const IP_PROTOCOL: u16 = 2;
    pub const IPV4_SRC: u16 = 3;
    pub const IPV4_DST: u16 = 4;
    pub const IPV6_SRC: u16 = 5;
    pub const IPV6_DST: u16 = 6;
    pub const SRC_PORT: u16 = 7;
    pub const DST_PORT: u16 = 8;
    pub const TIME_SEC: u16 = 9;
    pub const TIME_USEC: u16 = 10;
    pub const PROTO_TYPE: u16 = 11;
    pub const CAPTURE_ID: u16 = 12;
    pub const KEEP_ALIVE: u16 = 13;
    pub const AUTH_KEY: u16 = 14;
    pub const PAYLOAD: u16 = 15;
    pub const COMPRESSED_PAYLOAD: u16 = 16;
    pub const CORRELATION_ID: u16 = 17;
    pub const VLAN: u16 = 18;
    pub const NODE_NAME: u16 = 19;
}

/// Reads the declared total length of a HEPv3 message from its first 6 bytes.
pub(crate) fn declared_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER || !is_magic(&buf[..4]) {
        return None;
    }
    Some(u16::from_be_bytes([buf[4], buf[5]]) as usize)
}

pub(crate) fn is_magic(b: &[u8]) -> bool {
    b == b"HEP3" || b == b"EEP1"
}

fn fixed<const N: usize>(kind: u16, v: &[u8]) -> Result<[u8; N], DecodeError> {
    v.try_into().map_err(|_| DecodeError::BadChunkSize {
        kind,
        expected: N,
        actual: v.len(),
    })
}

fn text(v: &[u8]) -> String {
    // Agents pad strings with NULs (C strings); strip them, keep the rest lossily.
    let end = v.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&v[..end]).into_owned()
}

pub(crate) fn decode(buf: &[u8]) -> Result<HepMessage, DecodeError> {
    if buf.len() < HEADER {
        return Err(DecodeError::Truncated {
            needed: HEADER,
            have: buf.len(),
        });
    }
    if !is_magic(&buf[..4]) {
        return Err(DecodeError::BadMagic);
    }
    let declared = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    if declared != buf.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: buf.len(),
        });
    }
    let mut msg = HepMessage {
        version: 3,
        ..Default::default()
    };
    let mut has_payload = false;
    let mut pos = HEADER;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < CHUNK_HEADER {
            return Err(DecodeError::Truncated {
                needed: CHUNK_HEADER,
                have: rest.len(),
            });
        }
        let vendor = u16::from_be_bytes([rest[0], rest[1]]);
        let kind = u16::from_be_bytes([rest[2], rest[3]]);
        let len = u16::from_be_bytes([rest[4], rest[5]]) as usize;
        if len < CHUNK_HEADER {
            return Err(DecodeError::ChunkTooShort { vendor, kind, len });
        }
        if len > rest.len() {
            return Err(DecodeError::ChunkOverrun { vendor, kind, len });
        }
        let v = &rest[CHUNK_HEADER..len];
        pos += len;
        // Vendor chunks (vendor id != 0) carry private meanings: skip them.
        if vendor != 0 {
            continue;
        }
        match kind {
            chunk::IP_FAMILY => msg.ip_family = fixed::<1>(kind, v)?[0],
            chunk::IP_PROTOCOL => msg.protocol = fixed::<1>(kind, v)?[0],
            chunk::IPV4_SRC => msg.src_ip = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(kind, v)?))),
            chunk::IPV4_DST => msg.dst_ip = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(kind, v)?))),
            chunk::IPV6_SRC => msg.src_ip = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(kind, v)?))),
            chunk::IPV6_DST => msg.dst_ip = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(kind, v)?))),
            chunk::SRC_PORT => msg.src_port = u16::from_be_bytes(fixed(kind, v)?),
            chunk::DST_PORT => msg.dst_port = u16::from_be_bytes(fixed(kind, v)?),
            chunk::TIME_SEC => msg.time_sec = u32::from_be_bytes(fixed(kind, v)?),
            chunk::TIME_USEC => msg.time_usec = u32::from_be_bytes(fixed(kind, v)?),
            chunk::PROTO_TYPE => msg.proto_type = fixed::<1>(kind, v)?[0],
            chunk::CAPTURE_ID => msg.capture_id = u32::from_be_bytes(fixed(kind, v)?),
            chunk::KEEP_ALIVE => msg.keep_alive = Some(u16::from_be_bytes(fixed(kind, v)?)),
            chunk::AUTH_KEY => msg.capture_pass = Some(text(v)),
            chunk::PAYLOAD => {
                msg.payload = v.to_vec();
                has_payload = true;
            }
            chunk::COMPRESSED_PAYLOAD => return Err(DecodeError::CompressedPayloadUnsupported),
            chunk::CORRELATION_ID => msg.correlation_id = Some(text(v)),
            chunk::VLAN => msg.vlan = Some(u16::from_be_bytes(fixed(kind, v)?)),
            chunk::NODE_NAME => msg.node_name = Some(text(v)),
            // MACs, TOS, TCP flags, MOS and future chunks: not stored, skipped safely.
            _ => {}
        }
    }
    if !has_payload {
        return Err(DecodeError::MissingPayload);
    }
    if msg.ip_family == 0 {
        msg.ip_family = match msg.src_ip {
            Some(IpAddr::V6(_)) => crate::ip_family::IPV6,
            _ => crate::ip_family::IPV4,
        };
    }
    Ok(msg)
}

fn put_chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((value.len() + CHUNK_HEADER) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Encodes `msg` as HEPv3. Fails only when the result would exceed 64 KiB.
pub fn encode_v3(msg: &HepMessage) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(msg.payload.len() + 128);
    encode_v3_into(msg, &mut out)?;
    Ok(out)
}

/// Appends `msg` as HEPv3 to `out` (reuse one buffer when sending many).
pub fn encode_v3_into(msg: &HepMessage, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let start = out.len();
    out.extend_from_slice(b"HEP3\0\0");
    put_chunk(out, chunk::IP_FAMILY, &[msg.ip_family]);
    put_chunk(out, chunk::IP_PROTOCOL, &[msg.protocol]);
    for (ip, v4, v6) in [
        (msg.src_ip, chunk::IPV4_SRC, chunk::IPV6_SRC),
        (msg.dst_ip, chunk::IPV4_DST, chunk::IPV6_DST),
    ] {
        match ip {
            Some(IpAddr::V4(a)) => put_chunk(out, v4, &a.octets()),
            Some(IpAddr::V6(a)) => put_chunk(out, v6, &a.octets()),
            None => {}
        }
    }
    put_chunk(out, chunk::SRC_PORT, &msg.src_port.to_be_bytes());
    put_chunk(out, chunk::DST_PORT, &msg.dst_port.to_be_bytes());
    put_chunk(out, chunk::TIME_SEC, &msg.time_sec.to_be_bytes());
    put_chunk(out, chunk::TIME_USEC, &msg.time_usec.to_be_bytes());
    put_chunk(out, chunk::PROTO_TYPE, &[msg.proto_type]);
    put_chunk(out, chunk::CAPTURE_ID, &msg.capture_id.to_be_bytes());
    if let Some(k) = msg.keep_alive {
        put_chunk(out, chunk::KEEP_ALIVE, &k.to_be_bytes());
    }
    if let Some(p) = &msg.capture_pass {
        put_chunk(out, chunk::AUTH_KEY, p.as_bytes());
    }
    if let Some(c) = &msg.correlation_id {
        put_chunk(out, chunk::CORRELATION_ID, c.as_bytes());
    }
    if let Some(v) = msg.vlan {
        put_chunk(out, chunk::VLAN, &v.to_be_bytes());
    }
    if let Some(n) = &msg.node_name {
        put_chunk(out, chunk::NODE_NAME, n.as_bytes());
    }
    // A chunk's length is 16 bits too: check before writing the payload.
    let total = out.len() - start + CHUNK_HEADER + msg.payload.len();
    if total > crate::MAX_MESSAGE_LEN {
        out.truncate(start);
        return Err(DecodeError::TooLarge(total));
    }
    put_chunk(out, chunk::PAYLOAD, &msg.payload);
    let len = (out.len() - start) as u16;
    out[start + 4..start + 6].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The HEPv3 message `buf` with its auth-key chunk's value replaced by
/// `value` (the relay stores the key's name, never the secret). None when
/// `buf` is not a well-formed HEPv3 message or has no auth-key chunk.
pub fn replace_auth_key(buf: &[u8], value: &str) -> Option<Vec<u8>> {
    let total = declared_len(buf)?;
    if total != buf.len() {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + value.len());
    out.extend_from_slice(&buf[..HEADER]);
    let mut at = HEADER;
    let mut replaced = false;
    while at < total {
        let head = buf.get(at..at + CHUNK_HEADER)?;
        let (vendor, kind) = (
            u16::from_be_bytes([head[0], head[1]]),
            u16::from_be_bytes([head[2], head[3]]),
        );
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        if len < CHUNK_HEADER || at + len > total {
            return None;
        }
        if vendor == 0 && kind == chunk::AUTH_KEY {
            let new_len = u16::try_from(CHUNK_HEADER + value.len()).ok()?;
            out.extend_from_slice(&head[..4]);
            out.extend_from_slice(&new_len.to_be_bytes());
            out.extend_from_slice(value.as_bytes());
            replaced = true;
        } else {
            out.extend_from_slice(&buf[at..at + len]);
        }
        at += len;
    }
    let new_total = u16::try_from(out.len()).ok()?;
    out[4..6].copy_from_slice(&new_total.to_be_bytes());
    replaced.then_some(out)
}
