//! Packets on the wire, for Wireshark: libpcap files of Ethernet frames
//! carrying IPv4 or IPv6 and UDP or TCP, with valid checksums, and RTCP
//! packets rebuilt from the JSON reports heplify sends. Pure: bytes in,
//! bytes out, no I/O.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

pub mod read;
pub mod rtcp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One captured message: when, between whom, over what.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub time_micros: i64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: &'a [u8],
}

/// libpcap, microsecond timestamps, link type Ethernet.
const MAGIC: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 262_144;

/// Bytes of IP payload a frame carries at most (an IPv4 total length is 16 bits).
const MAX_IP_PAYLOAD: usize = 65_535 - 60;

/// Writes `packets` as a libpcap file. TCP segments of one direction follow
/// each other in sequence (from 1), so Wireshark reassembles them.
pub fn pcap<'a>(packets: impl IntoIterator<Item = Packet<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    let mut seq: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    for p in packets {
        let next = seq.entry((p.src, p.dst)).or_insert(1);
        let frame = ethernet_frame(&p, *next);
        if p.transport == Transport::Tcp {
            *next = next.wrapping_add(p.payload.len().min(MAX_IP_PAYLOAD - 20) as u32);
        }
        let (sec, usec) = (
            p.time_micros.div_euclid(1_000_000),
            p.time_micros.rem_euclid(1_000_000),
        );
        out.extend_from_slice(&(sec as u32).to_le_bytes());
        out.extend_from_slice(&(usec as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

/// Ones' complement sum of 16-bit words, as IP, UDP and TCP checksums add.
fn sum16(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Both addresses of one family: an IPv4 address meeting an IPv6 one is
/// written as its IPv4-mapped IPv6 form.
fn same_family(src: IpAddr, dst: IpAddr) -> (IpAddr, IpAddr) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V6(d)) => (IpAddr::V6(s.to_ipv6_mapped()), IpAddr::V6(d)),
        (IpAddr::V6(s), IpAddr::V4(d)) => (IpAddr::V6(s), IpAddr::V6(d.to_ipv6_mapped())),
        other => other,
    }
}

fn ethernet_frame(p: &Packet<'_>, tcp_seq: u32) -> Vec<u8> {
    let payload = &p.payload[..p.payload.len().min(MAX_IP_PAYLOAD - 20)];
    let (proto, mut segment) = match p.transport {
        Transport::Udp => (17u8, udp_header(p.src.port(), p.dst.port(), payload.len())),
        Transport::Tcp => (6u8, tcp_header(p.src.port(), p.dst.port(), tcp_seq)),
    };
    segment.extend_from_slice(payload);
    let (src, dst) = same_family(p.src.ip(), p.dst.ip());
    // The transport checksum covers a pseudo-header of addresses, protocol and length.
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum16(sum16(0, &s.octets()), &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum16(sum16(0, &s.octets()), &d.octets()),
        _ => unreachable!("same_family"),
    } + u32::from(proto)
        + segment.len() as u32;
    let check_at = if proto == 17 { 6 } else { 16 };
    let mut check = fold(sum16(pseudo, &segment));
    if proto == 17 && check == 0 {
        check = 0xffff; // UDP: zero means "no checksum".
    }
    segment[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());

    let mut frame = Vec::with_capacity(14 + 40 + segment.len());
    // Made-up but stable MAC addresses: 02:00 (locally administered) + the IPv4 or the low IPv6 bytes.
    for ip in [dst, src] {
        let o = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets()[12..].to_vec(),
        };
        frame.extend_from_slice(&[0x02, 0x00]);
        frame.extend_from_slice(&o);
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = Vec::with_capacity(20);
            ip.extend_from_slice(&[0x45, 0]);
            ip.extend_from_slice(&((20 + segment.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]); // id, DF, TTL 64
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let check = fold(sum16(0, &ip));
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            frame.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&(segment.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[proto, 64]);
            frame.extend_from_slice(&s.octets());
            frame.extend_from_slice(&d.octets());
        }
        _ => unreachable!("same_family"),
    }
    frame.extend_from_slice(&segment);
    frame
}

fn udp_header(src: u16, dst: u16, payload: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + payload);
    h.extend_from_slice(&src.to_be_bytes());
    h.extend_from_slice(&dst.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

fn tcp_header(src: u16, dst: u16, seq: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&src.to_be_bytes());
    h.extend_from_slice(&dst.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&1u32.to_be_bytes()); // ack number
    h.extend_from_slice(&[0x50, 0x18]); // 5 words, PSH and ACK
    h.extend_from_slice(&0xffffu16.to_be_bytes()); // window
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum of data that includes its own checksum folds to zero.
    fn verifies(pseudo: u32, bytes: &[u8]) -> bool {
        fold(sum16(pseudo, bytes)) == 0
    }

    #[test]
    fn ipv4_udp_frame_checksums_verify() {
        let p = Packet {
            time_micros: 1_700_000_000_123_456,
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5070".parse().unwrap(),
            transport: Transport::Udp,
            payload: b"OPTIONS sip:a@b SIP/2.0\r\n\r\n",
        };
        let f = ethernet_frame(&p, 1);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let ip = &f[14..34];
        assert!(verifies(0, ip), "IPv4 header checksum");
        let udp = &f[34..];
        assert_eq!(udp.len(), 8 + p.payload.len());
        let pseudo = sum16(sum16(0, &ip[12..16]), &ip[16..20]) + 17 + udp.len() as u32;
        assert!(verifies(pseudo, udp), "UDP checksum");
        let file = pcap([p.clone(), p]);
        assert_eq!(file.len(), 24 + 2 * (16 + f.len()));
        assert_eq!(&file[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    }

    #[test]
    fn ipv6_tcp_segments_follow_in_sequence() {
        let p = |payload: &'static [u8]| Packet {
            time_micros: 0,
            src: "[2001:db8::1]:5060".parse().unwrap(),
            dst: "[2001:db8::2]:5060".parse().unwrap(),
            transport: Transport::Tcp,
            payload,
        };
        let f = ethernet_frame(&p(b"abc"), 7);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let (ip, tcp) = (&f[14..54], &f[54..]);
        let pseudo = sum16(sum16(0, &ip[8..24]), &ip[24..40]) + 6 + tcp.len() as u32;
        assert!(verifies(pseudo, tcp), "TCP checksum");
        assert_eq!(u32::from_be_bytes(tcp[4..8].try_into().unwrap()), 7);
        // The second segment of the flow starts where the first ended.
        let file = pcap([p(b"abcd"), p(b"ef")]);
        let second = 24 + 16 + 14 + 40 + 20 + 4 + 16 + 14 + 40;
        assert_eq!(
            u32::from_be_bytes(file[second + 4..second + 8].try_into().unwrap()),
            5
        );
    }
}
