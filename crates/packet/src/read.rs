//! Reading captures: libpcap (either byte order, micro- or nanosecond) and
//! pcapng files, Ethernet (with VLAN tags), Linux cooked (v1 and v2) and raw
//! IP links, IPv4 and IPv6, UDP and TCP. What is not one of these (ARP, ICMP,
//! fragments after the first, other link types) is counted and skipped.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Transport;

/// One UDP datagram or TCP segment with data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub time_micros: i64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Capture {
    pub packets: Vec<Captured>,
    /// Frames that carried no UDP or TCP data we read.
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("not a pcap or pcapng file (magic {0:02x?})")]
    NotACapture([u8; 4]),
    #[error("the capture is cut short at byte {0}")]
    Truncated(usize),
}

const LINK_ETHERNET: u32 = 1;
const LINK_RAW: u32 = 101;
const LINK_LINUX_SLL: u32 = 113;
const LINK_IPV4: u32 = 228;
const LINK_IPV6: u32 = 229;
const LINK_LINUX_SLL2: u32 = 276;

/// Reads a whole capture file.
pub fn read(file: &[u8]) -> Result<Capture, ReadError> {
    let magic: [u8; 4] = file
        .get(..4)
        .ok_or(ReadError::Truncated(0))?
        .try_into()
        .expect("4 bytes");
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => pcap(file, false, 1_000),
        [0xa1, 0xb2, 0xc3, 0xd4] => pcap(file, true, 1_000),
        [0x4d, 0x3c, 0xb2, 0xa1] => pcap(file, false, 1),
        [0xa1, 0xb2, 0x3c, 0x4d] => pcap(file, true, 1),
        [0x0a, 0x0d, 0x0d, 0x0a] => pcapng(file),
        m => Err(ReadError::NotACapture(m)),
    }
}

fn u16_at(b: &[u8], at: usize, be: bool) -> Option<u16> {
    let v: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if be {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    })
}

fn u32_at(b: &[u8], at: usize, be: bool) -> Option<u32> {
    let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    })
}

/// `per_micro`: 1 000 for microsecond files (the fraction is µs), 1 for nanosecond ones.
fn pcap(file: &[u8], be: bool, per_micro: i64) -> Result<Capture, ReadError> {
    let link = u32_at(file, 20, be).ok_or(ReadError::Truncated(file.len()))?;
    let mut out = Capture::default();
    let mut at = 24;
    while at < file.len() {
        let (Some(sec), Some(frac), Some(incl)) = (
            u32_at(file, at, be),
            u32_at(file, at + 4, be),
            u32_at(file, at + 8, be),
        ) else {
            return Err(ReadError::Truncated(at));
        };
        let data = file
            .get(at + 16..at + 16 + incl as usize)
            .ok_or(ReadError::Truncated(at))?;
        // Microsecond files give µs; nanosecond files give ns.
        let micros = i64::from(sec) * 1_000_000
            + if per_micro == 1_000 {
                i64::from(frac)
            } else {
                i64::from(frac) / 1_000
            };
        out.take(link, micros, data);
        at += 16 + incl as usize;
    }
    Ok(out)
}

fn pcapng(file: &[u8]) -> Result<Capture, ReadError> {
    let mut out = Capture::default();
    // Per interface: link type and ticks per second.
    let mut ifaces: Vec<(u32, u64)> = Vec::new();
    let mut be = false;
    let mut at = 0;
    while at + 12 <= file.len() {
        let kind = u32_at(file, at, be).ok_or(ReadError::Truncated(at))?;
        if kind == 0x0a0d_0d0a {
            // Section header: its byte-order magic decides how the section reads.
            be = file.get(at + 8..at + 12) == Some(&[0x1a, 0x2b, 0x3c, 0x4d]);
            ifaces.clear();
        }
        let len = u32_at(file, at + 4, be).ok_or(ReadError::Truncated(at))? as usize;
        if len < 12 || at + len > file.len() {
            return Err(ReadError::Truncated(at));
        }
        let body = &file[at + 8..at + len - 4];
        match kind {
            1 => {
                let link = u32::from(u16_at(body, 0, be).unwrap_or(0));
                ifaces.push((link, tsresol(&body[8.min(body.len())..], be)));
            }
            6 => {
                // Enhanced packet: interface, time (high, low), captured length.
                let (Some(iface), Some(hi), Some(lo), Some(caplen)) = (
                    u32_at(body, 0, be),
                    u32_at(body, 4, be),
                    u32_at(body, 8, be),
                    u32_at(body, 12, be),
                ) else {
                    return Err(ReadError::Truncated(at));
                };
                let data = body
                    .get(20..20 + caplen as usize)
                    .ok_or(ReadError::Truncated(at))?;
                match ifaces.get(iface as usize) {
                    Some(&(link, per_sec)) => {
                        let ticks = (u64::from(hi) << 32) | u64::from(lo);
                        let micros = (u128::from(ticks) * 1_000_000 / u128::from(per_sec)) as i64;
                        out.take(link, micros, data);
                    }
                    None => out.skipped += 1,
                }
            }
            3 => out.skipped += 1, // simple packet: no time
            _ => {}
        }
        at += len;
    }
    Ok(out)
}

/// Ticks per second from an interface block's options (`if_tsresol`, 9), µs by default.
fn tsresol(mut opts: &[u8], be: bool) -> u64 {
    while let (Some(code), Some(len)) = (u16_at(opts, 0, be), u16_at(opts, 2, be)) {
        if code == 0 {
            break;
        }
        if code == 9
            && let Some(&r) = opts.get(4)
        {
            return if r & 0x80 == 0 {
                10u64.saturating_pow(u32::from(r))
            } else {
                1u64 << (r & 0x7f).min(63)
            };
        }
        let padded = (usize::from(len) + 3) & !3;
        opts = opts.get(4 + padded..).unwrap_or_default();
    }
    1_000_000
}

impl Capture {
    fn take(&mut self, link: u32, micros: i64, frame: &[u8]) {
        match ip_packet(link, frame).and_then(|(v, ip)| transport(v, ip)) {
            Some((src, dst, transport, payload)) if !payload.is_empty() => {
                self.packets.push(Captured {
                    time_micros: micros,
                    src,
                    dst,
                    transport,
                    payload: payload.to_vec(),
                })
            }
            _ => self.skipped += 1,
        }
    }
}

/// The IP packet a frame carries, and its version.
fn ip_packet(link: u32, f: &[u8]) -> Option<(u8, &[u8])> {
    let (mut ethertype, mut rest) = match link {
        LINK_ETHERNET => (u16_at(f, 12, true)?, f.get(14..)?),
        LINK_LINUX_SLL => (u16_at(f, 14, true)?, f.get(16..)?),
        LINK_LINUX_SLL2 => (u16_at(f, 0, true)?, f.get(20..)?),
        LINK_RAW | LINK_IPV4 | LINK_IPV6 => {
            return Some((f.first()? >> 4, f));
        }
        _ => return None,
    };
    // 802.1Q and 802.1ad tags, possibly stacked.
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = u16_at(rest, 2, true)?;
        rest = rest.get(4..)?;
    }
    match ethertype {
        0x0800 => Some((4, rest)),
        0x86dd => Some((6, rest)),
        _ => None,
    }
}

type Transported<'a> = (SocketAddr, SocketAddr, Transport, &'a [u8]);

fn transport(version: u8, ip: &[u8]) -> Option<Transported<'_>> {
    let (src, dst, proto, seg): (IpAddr, IpAddr, u8, &[u8]) = match version {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16_at(ip, 2, true)?);
            // A fragment after the first has no transport header.
            if u16_at(ip, 6, true)? & 0x1fff != 0 {
                return None;
            }
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let end = total.clamp(ihl, ip.len());
            (
                Ipv4Addr::from(src).into(),
                Ipv4Addr::from(dst).into(),
                *ip.get(9)?,
                ip.get(ihl..end)?,
            )
        }
        6 => {
            let len = usize::from(u16_at(ip, 4, true)?);
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let end = (40 + len).min(ip.len());
            (
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                *ip.get(6)?,
                ip.get(40..end)?,
            )
        }
        _ => return None,
    };
    let port = |at| u16_at(seg, at, true);
    let (sport, dport) = (port(0)?, port(2)?);
    let (transport, payload) = match proto {
        17 => (Transport::Udp, seg.get(8..)?),
        6 => (
            Transport::Tcp,
            seg.get(usize::from(seg.get(12)? >> 4) * 4..)?,
        ),
        _ => return None,
    };
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        transport,
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Packet, pcap as write_pcap};

    fn sample() -> Vec<Packet<'static>> {
        vec![
            Packet {
                time_micros: 1_700_000_000_000_001,
                src: "10.0.0.1:5060".parse().unwrap(),
                dst: "10.0.0.2:5060".parse().unwrap(),
                transport: Transport::Udp,
                payload: b"INVITE sip:b@h SIP/2.0\r\n\r\n",
            },
            Packet {
                time_micros: 1_700_000_000_500_000,
                src: "[2001:db8::2]:5061".parse().unwrap(),
                dst: "[2001:db8::1]:5062".parse().unwrap(),
                transport: Transport::Tcp,
                payload: b"SIP/2.0 200 OK\r\n\r\n",
            },
        ]
    }

    #[test]
    fn what_the_writer_writes_reads_back() {
        let file = write_pcap(sample());
        let c = read(&file).unwrap();
        assert_eq!(c.skipped, 0);
        let back: Vec<_> = c
            .packets
            .iter()
            .map(|p| {
                (
                    p.time_micros,
                    p.src,
                    p.dst,
                    p.transport,
                    p.payload.as_slice(),
                )
            })
            .collect();
        let want: Vec<_> = sample()
            .into_iter()
            .map(|p| (p.time_micros, p.src, p.dst, p.transport, p.payload))
            .collect();
        assert_eq!(back, want);
        assert_eq!(
            read(&file[..file.len() - 3]),
            Err(ReadError::Truncated(24 + 16 + 14 + 20 + 8 + 26))
        );
        assert!(matches!(read(b"GIF89a.."), Err(ReadError::NotACapture(_))));
    }

    /// The same two frames as pcapng (nanosecond resolution), behind a VLAN
    /// tag and a Linux cooked header.
    #[test]
    fn pcapng_vlan_and_linux_cooked_frames() {
        let frames: Vec<Vec<u8>> = {
            let file = write_pcap(sample());
            let c = read(&file).unwrap();
            assert_eq!(c.packets.len(), 2);
            // The raw frames, from the pcap records.
            let mut at = 24;
            let mut v = Vec::new();
            while at < file.len() {
                let n = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
                v.push(file[at + 16..at + 16 + n].to_vec());
                at += 16 + n;
            }
            v
        };
        // Frame 1 with an 802.1Q tag; frame 2 as Linux cooked (SLL): 16-byte header.
        let mut tagged = frames[0][..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged.extend_from_slice(&frames[0][12..]);
        let mut cooked = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0, 0, 0];
        cooked.extend_from_slice(&frames[1][12..]);
        let block = |kind: u32, body: Vec<u8>| {
            let len = (12 + body.len() + 3) & !3;
            let mut b = kind.to_le_bytes().to_vec();
            b.extend_from_slice(&(len as u32).to_le_bytes());
            b.extend_from_slice(&body);
            b.resize(len - 4, 0);
            b.extend_from_slice(&(len as u32).to_le_bytes());
            b
        };
        let iface = |link: u16| {
            let mut b = link.to_le_bytes().to_vec();
            b.extend_from_slice(&[0, 0, 0, 0, 4, 0]);
            b.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]); // if_tsresol = 9 (ns), end
            b
        };
        let epb = |iface: u32, micros: i64, frame: &[u8]| {
            let ns = micros as u64 * 1_000;
            let mut b = iface.to_le_bytes().to_vec();
            b.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(ns as u32).to_le_bytes());
            b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            b.extend_from_slice(frame);
            b
        };
        let mut file = block(
            0x0a0d_0d0a,
            [
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255,
            ]
            .to_vec(),
        );
        file.extend(block(1, iface(1)));
        file.extend(block(1, iface(113)));
        let s = sample();
        file.extend(block(6, epb(0, s[0].time_micros, &tagged)));
        file.extend(block(6, epb(1, s[1].time_micros, &cooked)));
        let c = read(&file).unwrap();
        assert_eq!(c.skipped, 0);
        assert_eq!(c.packets.len(), 2);
        for (got, want) in c.packets.iter().zip(s) {
            assert_eq!(
                (got.time_micros, got.src, got.dst, got.payload.as_slice()),
                (want.time_micros, want.src, want.dst, want.payload)
            );
        }
    }
}
